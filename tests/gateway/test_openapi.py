"""The committed openapi.json is what the gateway serves, and is usable by generated clients."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sam2_gateway.api.routes import auth, health, jobs, segment, usage, video
from sam2_gateway.cli import main

COMMITTED = Path(__file__).parents[2] / "openapi.json"


def test_committed_openapi_is_current(gateway: TestClient) -> None:
    served = gateway.get("/openapi.json").json()
    assert json.loads(COMMITTED.read_text()) == served, (
        "openapi.json is stale: run `.venv/bin/sam2-gateway openapi --out openapi.json`"
    )


def test_openapi_is_correct_for_clients() -> None:
    spec = json.loads(COMMITTED.read_text())
    segment = spec["paths"]["/v1/segment"]["post"]
    assert segment["operationId"] == "segment"
    body = segment["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/SegmentRequest"}
    assert segment["responses"]["422"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"
    }
    assert "application/json" not in segment["responses"]["422"]["content"]
    for path, model in (
        ("/v1/segment", "SegmentRequest"),
        ("/v1/segment/batch", "BatchSegmentRequest"),
    ):
        upload = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
        assert upload["schema"]["required"] == ["image", "request"]
        assert upload["schema"]["properties"]["image"]["format"] == "binary"
        assert upload["schema"]["properties"]["request"]["$ref"] == f"#/components/schemas/{model}"
        assert upload["encoding"]["request"]["contentType"] == "application/json"
    request = spec["components"]["schemas"]["SegmentRequest"]["properties"]
    assert request["image"]["contentEncoding"] == "base64"
    assert "COCO RLE" in request["mask_format"]["description"]
    assert request["image_url"]["anyOf"][0] == {"type": "string", "maxLength": 2048}
    objects = request["objects"]["anyOf"][0]
    assert objects["items"] == {"$ref": "#/components/schemas/ObjectPrompt"}
    ids = {op["operationId"] for item in spec["paths"].values() for op in item.values()}
    video = {
        "upload_video",
        "get_video",
        "get_frame",
        "create_session",
        "get_session",
        "delete_session",
        "add_prompt",
        "clear_prompts",
        "reset_session",
        "remove_object",
        "propagate",
    }
    assert ids == {
        "segment",
        "segment_batch",
        "create_token",
        "models",
        "usage",
        "healthz",
        "readyz",
    } | video | {"get_embedding", "get_decoder"} | {
        "create_job",
        "list_jobs",
        "get_job",
        "cancel_job",
        "job_results",
        "webhook_secret",
        "rotate_webhook_secret",
    }
    [days] = spec["paths"]["/v1/usage"]["get"]["parameters"]
    assert (days["name"], days["in"], days["schema"]["minimum"], days["schema"]["maximum"]) == (
        "days",
        "query",
        1,
        366,
    )
    usage = spec["paths"]["/v1/usage"]["get"]["responses"]
    assert usage["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/UsageResponse"
    }
    assert "422" in usage  # as a problem document, not FastAPI's own validation shape
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    prompt = spec["paths"]["/v1/sessions/{session_id}/prompts"]["post"]
    assert prompt["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/VideoPrompt"
    }
    stream = spec["paths"]["/v1/sessions/{session_id}/propagate"]["post"]["responses"]["200"]
    assert list(stream["content"]) == ["application/x-ndjson"]
    upload = spec["paths"]["/v1/videos"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert upload["schema"]["properties"]["frames"]["items"]["format"] == "binary"
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_the_cli_writes_the_committed_document(tmp_path: Path) -> None:
    """`sam2-gateway openapi` is how openapi.json is made: what it writes is what is committed."""
    out = tmp_path / "openapi.json"
    main(["openapi", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(COMMITTED.read_text())


def test_request_bodies_come_from_the_routes() -> None:
    """Each route declares its body (`openapi_extra`): what the document says is what they say."""
    routers = [module.router for module in (auth, health, jobs, segment, usage, video)]
    declared = {
        (route.path, method.lower())
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute)
        and route.openapi_extra
        and "requestBody" in route.openapi_extra
        for method in route.methods
    }
    spec = json.loads(COMMITTED.read_text())
    with_bodies = {
        (path, method)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation
    }
    assert with_bodies == declared
