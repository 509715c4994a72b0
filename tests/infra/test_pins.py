"""One place for the pins (constraints.txt): every installer reads it, none spells a version."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from infra.pins import pins

REPO = Path(__file__).parents[2]
PINNED = ("torch", "torchvision", "sam2")
READERS = ("scripts/bootstrap", "infra/inference_app.py", "bench/gpu-wheels.sh")


def test_constraints_pin_what_the_inference_project_requires() -> None:
    with (REPO / "services/inference/pyproject.toml").open("rb") as file:
        dependencies = tomllib.load(file)["project"]["dependencies"]
    [sam2] = [d for d in dependencies if re.split(r"[=<>]", d)[0] == "sam2"]
    assert pins("sam2") == (sam2,)
    assert all("==" in pin for pin in pins(*PINNED))
    with pytest.raises(LookupError, match="pins no numpyy"):
        pins("numpyy")


@pytest.mark.parametrize("reader", READERS)
def test_no_installer_spells_a_pinned_version_itself(reader: str) -> None:
    """A version written in an installer would drift from the others: each reads the file."""
    text = (REPO / reader).read_text()
    assert "constraints.txt" in text or "pins(" in text, reader
    for pin in pins(*PINNED):
        assert re.search(re.escape(pin) + r"\b", text) is None, (reader, pin)


def test_the_images_install_the_pins_and_carry_the_file() -> None:
    import infra.inference_app as inference_app

    assert pins("torch", "torchvision") == inference_app.TORCH
    assert pins("sam2")[0] in inference_app.PACKAGES
    source = (REPO / "infra/inference_app.py").read_text()
    assert source.count(".add_local_file(CONSTRAINTS, REMOTE_CONSTRAINTS)") == 2  # both images
