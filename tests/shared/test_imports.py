"""The import graph has no cycle and keeps its layers (scripts/imports.py), and the checker
catches a violation of each rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import load_script

ROOT = Path(__file__).parents[2]


def test_the_repository_has_no_import_cycle_and_keeps_its_layers() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "imports.py")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout
    assert "0 problem(s)" in done.stdout


def test_the_checker_catches_cycles_and_upward_imports() -> None:
    imports = load_script("imports")
    assert imports.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = {
        "sam2_inference.scheduling.lock": {"sam2_inference.image.engine"},
        "sam2_inference.image.engine": {"sam2_inference.video.tracker"},
        "sam2_inference.video.tracker": set(),
        "sam2_inference.runtime.weights": set(),
        "sam2_gateway.core.metering": {"sam2_gateway.backends"},
        "sam2_gateway.api.deps": {"sam2_gateway.main"},
        "sam2_contract.masks": set(),
    }
    external = {name: set() for name in graph} | {
        "sam2_inference.runtime.weights": {"fastapi"},
        "sam2_contract.masks": {"starlette"},
    }
    found = list(imports.layer_problems(graph, external))
    assert len(found) == 6, found
    assert any("scheduling/ may import only" in problem for problem in found)
    assert any("image/ may import only" in problem for problem in found)  # sideways to video
    assert any("core/ imports nothing above it" in problem for problem in found)
    assert any("api/ imports nothing of the process" in problem for problem in found)
    assert any("web framework below api/" in problem for problem in found)
    assert any("outside the HTTP edge" in problem for problem in found)
