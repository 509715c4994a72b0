"""The README's curl examples work as written: through the real gateway, with an API key, to
the real inference service (on a 640x480 JPEG standing in for photo.jpg)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sam2_gateway import GatewaySettings, create_app
from sam2_gateway.store import KeyStore
from support import PEPPER, RunningServer, b64, bearer, encode, scene

README = (Path(__file__).parents[2] / "README.md").read_text()
EXAMPLE = re.compile(
    r"printf '(\{.*?\})' \"\$\(base64 -w0 photo\.jpg\)\" \\\n\s+"
    r"\| curl -s localhost:8080(/\S+) -H \"authorization: Bearer \$SAM2_API_KEY\""
)
EXAMPLES = EXAMPLE.findall(README)


@pytest.fixture(scope="module")
def readme_client(
    tmp_path_factory: pytest.TempPathFactory, inference_server: RunningServer, signing_key: str
) -> Iterator[tuple[TestClient, str]]:
    """One gateway and one key for all examples, as for a user trying them in turn."""
    database = f"sqlite:///{tmp_path_factory.mktemp('readme') / 'gw.db'}"
    settings = GatewaySettings(
        database_url=database,
        key_pepper=SecretStr(PEPPER),
        jwt_private_key=SecretStr(signing_key),
        inference_url=inference_server.url,
    )
    with TestClient(create_app(settings)) as client:
        key, _ = KeyStore(database, PEPPER).create(
            "readme", frozenset({"segment", "auto"}), rate_tier="dev"
        )
        yield client, key.full


def test_the_readme_has_an_example_for_every_mode() -> None:
    bodies = [json.loads(body.replace("%s", "x")) for body, _ in EXAMPLES]
    modes = {b.get("mode", "point") for b in bodies if "requests" not in b}
    assert modes == {"point", "box", "auto"}
    assert any(route.endswith("/batch") for _, route in EXAMPLES)


@pytest.mark.parametrize(
    ("body", "route"), EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))]
)
def test_readme_example_succeeds(
    readme_client: tuple[TestClient, str], body: str, route: str
) -> None:
    client, key = readme_client
    photo = b64(encode(scene(480, 640, seed=5), "JPEG"))
    response = client.post(
        route,
        content=body.replace("%s", photo),
        headers=bearer(key) | {"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    for result in answer.get("results", [{"status": 200, "result": answer}]):
        assert result["status"] == 200, result
        assert result["result"]["image_shape"] == [480, 640]
