"""The Python SDK installs into a clean virtual environment, without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_sdk_installs_into_a_clean_venv_without_torch(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            str(ROOT / "shared"),
            str(ROOT / "sdk-python"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    probe = (
        "import importlib.util, sam2_sdk; "
        "assert importlib.util.find_spec('torch') is None, 'torch was installed'; "
        "print(sorted(n for n in sam2_sdk.__all__ if n.endswith('Client')))"
    )
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['AsyncSam2Client', 'Sam2Client']"
