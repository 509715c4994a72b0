"""The Python SDK's README as a user pastes it: its quick start runs against a real gateway on
ordinary photo sizes, and no snippet uses a name it never defined."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import GatewayServer, encode, scene

ROOT = Path(__file__).parents[2]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "sdk-python" / "README.md").read_text(), re.S)
SIZES = {"451x300": (300, 451), "600x400": (400, 600)}


def test_no_snippet_uses_an_undefined_name(tmp_path: Path) -> None:
    """Read in order, as the page is: a later snippet may use an earlier one's import."""
    snippet = tmp_path / "snippets.py"
    snippet.write_text("\n".join(BLOCKS))
    ruff = str(Path(sys.executable).parent / "ruff")
    done = subprocess.run(
        [ruff, "check", "--no-cache", "--isolated", "--select", "F821,F401", str(snippet)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("size", list(SIZES))
def test_the_quick_start_runs_as_pasted(
    gateway_server: GatewayServer, tmp_path: Path, size: str
) -> None:
    height, width = SIZES[size]
    (tmp_path / "photo.jpg").write_bytes(encode(scene(height, width, seed=7), "JPEG"))
    (tmp_path / "quickstart.py").write_text(BLOCKS[0])
    env = os.environ | {"SAM2_API_KEY": gateway_server.key, "SAM2_BASE_URL": gateway_server.url}
    done = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "quickstart.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
