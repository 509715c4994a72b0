"""The README's curl examples work as written (run here through the app, on a 640x480 JPEG)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sam2_inference import InferenceSettings, Sam2Engine, create_app
from support import b64, encode, fresh_engine, scene

README = (Path(__file__).parents[2] / "README.md").read_text()
EXAMPLE = re.compile(
    r"printf '(\{.*?\})' \"\$\(base64 -w0 photo\.jpg\)\" \\\n\s+\| curl -s localhost:8081(/\S+)"
)
EXAMPLES = EXAMPLE.findall(README)


@pytest.fixture(scope="module")
def shared_client(loaded_engine: Sam2Engine, settings: InferenceSettings) -> Iterator[TestClient]:
    """One cache for all examples, as for a user trying them one after another."""
    with TestClient(create_app(settings, engine=fresh_engine(loaded_engine))) as client:
        yield client


def test_the_readme_has_an_example_for_every_mode() -> None:
    bodies = [json.loads(body.replace("%s", "x")) for body, _ in EXAMPLES]
    modes = {b.get("mode", "point") for b in bodies if "requests" not in b}
    assert modes == {"point", "box", "auto"}
    assert any(route.endswith("/batch") for _, route in EXAMPLES)


@pytest.mark.parametrize(
    ("body", "route"), EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))]
)
def test_readme_example_succeeds(shared_client: TestClient, body: str, route: str) -> None:
    photo = b64(encode(scene(480, 640, seed=5), "JPEG"))
    response = shared_client.post(
        route, content=body.replace("%s", photo), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    for result in answer.get("results", [{"status": 200, "result": answer}]):
        assert result["status"] == 200, result
        assert result["result"]["image_shape"] == [480, 640]
