"""The reference docs match the code: every request field and error code in docs/api.md, the
route table and docs/configuration.md generated, and a stale one caught."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sam2_contract import CATALOG, SegmentRequest
from sam2_gateway import GatewaySettings
from sam2_inference import InferenceSettings
from support import load_script

from infra.settings import DeploySettings

ROOT = Path(__file__).parents[2]
API_DOC = (ROOT / "docs" / "api.md").read_text()


@pytest.mark.parametrize("field", list(SegmentRequest.model_fields))
def test_every_request_field_is_documented(field: str) -> None:
    assert f"| `{field}` |" in API_DOC


@pytest.mark.parametrize("code", list(CATALOG), ids=lambda c: c.value)
def test_every_error_code_is_documented_with_its_status_and_hint(code: object) -> None:
    spec = CATALOG[code]  # type: ignore[index]
    assert f"| `{code}` | {spec.status} | {spec.title} | {spec.hint} |" in API_DOC


def _script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args], capture_output=True, text=True
    )


def test_the_route_table_is_generated_from_the_openapi_document() -> None:
    """Every route the gateway serves is in docs/api.md, as scripts/routes.py writes it from
    the committed openapi.json (which tests/gateway/test_openapi.py holds to what is served)."""
    done = _script("routes.py", "--check")
    assert done.returncode == 0, done.stderr
    spec = json.loads((ROOT / "openapi.json").read_text())
    for path, operations in spec["paths"].items():
        for method in operations:
            assert f"`{method.upper()} {path}`" in API_DOC


def test_the_configuration_doc_is_generated_from_the_settings_classes() -> None:
    """docs/configuration.md is what scripts/configuration.py writes: every field of the three
    settings classes, with its variable, default and description."""
    done = _script("configuration.py", "--check")
    assert done.returncode == 0, done.stderr
    page = (ROOT / "docs" / "configuration.md").read_text()
    for cls, prefix in (
        (InferenceSettings, "SAM2_"),
        (GatewaySettings, "SAM2_GATEWAY_"),
        (DeploySettings, "SAM2_DEPLOY_"),
    ):
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name} has no description"
            assert f"`{prefix}{name.upper()}`" in page
            assert " ".join(field.description.split()).replace("|", "\\|") in page


def test_a_stale_configuration_doc_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A description changed in the code and not regenerated makes the check fail."""
    configuration = load_script("configuration")
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert configuration.rendered() == committed
    field = GatewaySettings.model_fields["port"]
    monkeypatch.setattr(field, "description", "The port, described anew.")
    assert configuration.rendered() != committed
