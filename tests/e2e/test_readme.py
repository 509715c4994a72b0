"""The README's curl examples work as pasted: each bash block runs in a real shell (bash, curl,
base64, jq) against a real gateway on a real socket, with an API key, in front of the real
inference service, on ordinary photo sizes (451x300 and 600x400 JPEGs standing in for
photo.jpg). Only `localhost:8080` is changed, to the test gateway's address."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import GatewayServer, RunningServer, encode, running_gateway, scene

README = (Path(__file__).parents[2] / "README.md").read_text()
BLOCKS = [
    block
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.DOTALL)
    if "localhost:8080" in block
]
OFFLINE = [block for block in BLOCKS if "image_url" not in block]
"""The image_url example fetches a public https address, which this machine cannot reach
(tests/gateway/test_image_sources.py covers fetching)."""
SIZES = {"451x300": (300, 451), "600x400": (400, 600)}


@pytest.fixture(scope="module")
def readme_gateway(
    tmp_path_factory: pytest.TempPathFactory, inference_server: RunningServer
) -> Iterator[GatewayServer]:
    """One gateway and one key for all examples, as for a user trying them in turn."""
    database = f"sqlite:///{tmp_path_factory.mktemp('readme') / 'gw.db'}"
    with running_gateway(database, inference_server.url) as gateway:
        yield gateway


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
    readme_gateway: GatewayServer, tmp_path: Path, block: str, size: str
) -> None:
    height, width = SIZES[size]
    (tmp_path / "photo.jpg").write_bytes(encode(scene(height, width, seed=5), "JPEG"))
    script = block.replace("localhost:8080", readme_gateway.url.removeprefix("http://"))
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "SAM2_API_KEY": readme_gateway.key},
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


def _documented_variables() -> set[str]:
    """Every variable the README's configuration tables name, `..._SUFFIX` shorthands expanded
    against the row's first full name (`SAM2_GATEWAY_INFERENCE_TIMEOUT_S`, `..._CONNECT_TIMEOUT_S`
    is also read as `SAM2_GATEWAY_INFERENCE_CONNECT_TIMEOUT_S`)."""
    names: set[str] = set()
    for row in README.splitlines():
        full = re.findall(r"`(SAM2_[A-Z0-9_]+)`", row.split(" | ")[0])
        names.update(full)
        for suffix in re.findall(r"`\.\.\._([A-Z0-9_]+)`", row.split(" | ")[0]):
            words = full[0].split("_")
            names.update("_".join([*words[:k], suffix]) for k in range(2, len(words)))
    return names


def test_every_gateway_setting_is_in_the_readme_configuration_table() -> None:
    """A setting added to GatewaySettings without a row is a setting no operator can find."""
    from sam2_gateway import GatewaySettings

    documented = _documented_variables()
    missing = [
        f"SAM2_GATEWAY_{name.upper()}"
        for name in GatewaySettings.model_fields
        if f"SAM2_GATEWAY_{name.upper()}" not in documented
    ]
    assert missing == []


def test_the_route_table_is_generated_from_the_openapi_document() -> None:
    """Every route the gateway serves is in the README, as scripts/routes.py writes it from the
    committed openapi.json (which test_openapi.py holds to what the gateway serves)."""
    root = Path(__file__).parents[2]
    done = subprocess.run(
        [sys.executable, str(root / "scripts" / "routes.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    spec = json.loads((root / "openapi.json").read_text())
    readme = (root / "README.md").read_text()
    for path, operations in spec["paths"].items():
        for method in operations:
            assert f"`{method.upper()} {path}`" in readme
