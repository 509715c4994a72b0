"""The curl examples of the README and docs/examples.md work as pasted: each bash block runs in a
real shell (bash, curl, base64, jq) against a real gateway on a real socket, with an API key, in
front of the real inference service, on ordinary photo sizes (451x300 and 600x400 JPEGs standing
in for photo.jpg). Only `localhost:8080` is changed, to the test gateway's address."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support import GatewayServer, encode, scene

ROOT = Path(__file__).parents[2]
PAGES = [(ROOT / name).read_text() for name in ("README.md", "docs/examples.md")]
BLOCKS = [
    block
    for page in PAGES
    for block in re.findall(r"```bash\n(.*?)```", page, flags=re.DOTALL)
    if "localhost:8080" in block
]
OFFLINE = [block for block in BLOCKS if "image_url" not in block]
"""The image_url example fetches a public https address, which this machine cannot reach
(tests/gateway/test_image_sources.py covers fetching)."""
SIZES = {"451x300": (300, 451), "600x400": (400, 600)}


def _answers(output: str) -> list[dict[str, Any]]:
    """The JSON documents curl printed, one after another."""
    decoder, answers, position = json.JSONDecoder(), [], 0
    while position < len(output.rstrip()):
        answer, position = decoder.raw_decode(output, position)
        answers.append(answer)
        while position < len(output) and output[position].isspace():
            position += 1
    return answers


def _mode(block: str) -> set[str]:
    bodies = re.findall(r"printf '(\{.*?\})'", block) + re.findall(r"request=(\{.*?\});", block)
    parsed = [json.loads(body.replace('"%s"', "%s").replace("%s", '"x"')) for body in bodies]
    return {b.get("mode", "batch" if "requests" in b else "point") for b in parsed}


def test_the_readme_has_an_example_for_every_mode_and_they_are_all_run() -> None:
    modes = set().union(*map(_mode, BLOCKS))
    assert modes >= {"point", "box", "auto", "batch"}
    assert len(OFFLINE) == len(BLOCKS) - 1  # only the image_url one needs the internet
    assert any("jq .image_id" in block for block in OFFLINE)
    assert any('"box_coords":[[' in block for block in OFFLINE)  # several boxes


@pytest.fixture(scope="module")
def jq() -> None:
    """The examples use jq: CI must have it (scripts/test-services installs it)."""
    if shutil.which("jq") is None:
        if os.environ.get("CI"):
            pytest.fail("jq is not installed: .ci/run must install it (scripts/test-services)")
        pytest.skip('jq not installed; run: eval "$(scripts/test-services)" or apt-get install jq')


@pytest.mark.usefixtures("jq")
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("block", OFFLINE, ids=[f"example{i}" for i in range(len(OFFLINE))])
def test_readme_example_runs_as_pasted(
    gateway_server: GatewayServer, tmp_path: Path, block: str, size: str
) -> None:
    height, width = SIZES[size]
    (tmp_path / "photo.jpg").write_bytes(encode(scene(height, width, seed=5), "JPEG"))
    script = block.replace("localhost:8080", gateway_server.url.removeprefix("http://"))
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "SAM2_API_KEY": gateway_server.key},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    answers = _answers(done.stdout)
    assert answers, "the example printed nothing"
    for answer in answers:
        assert "code" not in answer, answer  # a problem document
        for result in answer.get("results", [{"status": 200, "result": answer}]):
            assert result["status"] == 200, result
            assert result["result"]["image_shape"] == [height, width]
    if "jq .image_id" in block:  # the click by image_id reused the first call's embedding
        assert answers[-1]["cached"] is True
