"""The Python SDK installs with one pip command into a clean virtual environment, without torch:
from the source tree, and from its sdist alone (no checkout beside it), which carries the
vendored contract. Its README's install lines are the ones run here, and its example runs as
pasted, in a fresh project with nothing but that install, against a running gateway."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from support import GatewayServer, encode, scene

ROOT = Path(__file__).parents[2]
PROBE = (
    "import importlib.util, sam2_sdk, sam2_contract; "
    "assert importlib.util.find_spec('torch') is None, 'torch was installed'; "
    "from sam2_contract.masks import decode_mask, encode_mask; import numpy as np; "
    "m = np.eye(3, dtype=bool); assert (decode_mask(encode_mask(m, 'rle')) == m).all(); "
    "print(sorted(n for n in sam2_sdk.__all__ if n.endswith('Client')))"
)


def _venv(where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    return where / "bin" / "python"


def _pip(python: Path, *args: str, cwd: Path | None = None) -> None:
    done = subprocess.run(
        [str(python), "-m", "pip", "-q", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _probe(python: Path) -> None:
    done = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['AsyncSam2Client', 'Sam2Client']"


def test_one_pip_command_installs_the_sdk_from_the_tree_and_from_its_sdist(
    tmp_path: Path, gateway_server: GatewayServer
) -> None:
    readme = (ROOT / "sdk-python" / "README.md").read_text()
    assert "pip install ./sdk-python " in readme
    # From the source tree, exactly as the README says (run at the repository root).
    tree = _venv(tmp_path / "tree")
    _pip(tree, "install", "./sdk-python", cwd=ROOT)
    _probe(tree)
    # An sdist, built from the tree, then installed from a directory with nothing else in it:
    # the wheel pip builds from it must find the vendored contract inside.
    _pip(tree, "install", "hatchling>=1.25")
    dist = tmp_path / "dist"
    subprocess.run(
        [str(tree), "-m", "hatchling", "build", "-t", "sdist", "-d", str(dist)],
        cwd=ROOT / "sdk-python",
        check=True,
        capture_output=True,
    )
    [sdist] = dist.glob("sam2_sdk-*.tar.gz")
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(sdist, alone)
    fresh = _venv(tmp_path / "fresh")
    _pip(fresh, "install", sdist.name, cwd=alone)
    _probe(fresh)
    # The install puts the `sam2` command on the venv's PATH (without tqdm: no `cli` extra).
    command = subprocess.run(
        [str(fresh.parent / "sam2"), "segment-dir", "--help"], capture_output=True, text=True
    )
    assert command.returncode == 0, command.stderr
    assert "--chunk-items" in command.stdout
    # The README's example, pasted into a fresh project that has only that install.
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "sdk-python" / "client_example.py", project / "example.py")
    (project / "photo.jpg").write_bytes(encode(scene(480, 640, seed=9), "JPEG"))
    env = {"PATH": os.environ["PATH"], "HOME": str(project)}
    env |= {"SAM2_API_KEY": gateway_server.key, "SAM2_BASE_URL": gateway_server.url}
    done = subprocess.run(
        [str(fresh), "example.py", "photo.jpg"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "refining click reused the embedding: True" in done.stdout
    assert "warning: random weights" in done.stdout  # the parsed answer's warnings
    assert "segment_image (original helper): mask 480 rows" in done.stdout
