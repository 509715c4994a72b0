"""The API reference lists every request field and every error code, with its status and hint."""

from __future__ import annotations

from pathlib import Path

import pytest
from sam2_contract import CATALOG, SegmentRequest

API_DOC = (Path(__file__).parents[2] / "docs" / "api.md").read_text()


@pytest.mark.parametrize("field", list(SegmentRequest.model_fields))
def test_every_request_field_is_documented(field: str) -> None:
    assert f"| `{field}` |" in API_DOC


@pytest.mark.parametrize("code", list(CATALOG), ids=lambda c: c.value)
def test_every_error_code_is_documented_with_its_status_and_hint(code: object) -> None:
    spec = CATALOG[code]  # type: ignore[index]
    assert f"| `{code}` | {spec.status} | {spec.title} | {spec.hint} |" in API_DOC
