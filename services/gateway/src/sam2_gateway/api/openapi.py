"""The gateway's OpenAPI document, as clients need it.

FastAPI alone would describe these routes without request bodies (they read the body
themselves, to enforce the byte limit and give precise error codes) and with no error
responses. Each route declares its body with `request_body()` (or `VIDEO_UPLOAD`) as its
`openapi_extra`; this adds the declared models' schemas and every error as
`application/problem+json` with the Problem model. `sam2-gateway openapi` writes it out.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from sam2_contract.errors import PROBLEM_CONTENT_TYPE
from sam2_contract.forms import MULTIPART
from sam2_contract.models import Problem
from sam2_contract.video import NDJSON, PropagationSummary
from starlette.responses import JSONResponse

REF = "#/components/schemas/{model}"
BODY_MODELS: dict[str, type[BaseModel]] = {}
"""The models routes declared as their bodies (filled as the route modules are imported)."""
_ERROR_STATUSES = {
    "400": "Malformed request (e.g. invalid JSON)",
    "401": "Missing, malformed, unknown, revoked or expired credentials",
    "403": "The credential lacks the scope, or is a browser token where an API key is needed",
    "404": "`image_id` not cached (send the image again), no such video or session, or no "
    "such route",
    "409": "The session is propagating (video routes)",
    "413": "Body or image too large",
    "415": "Neither application/json nor (segment and video upload routes) multipart/form-data",
    "422": "A field is invalid, or the work is over its memory or time budget; `code` says which",
    "429": "Over the key's rate or concurrency limit; see Retry-After",
    "431": "Request line and headers over 32 KiB",
    "503": "Inference, the key store or the rate limiter unavailable; see Retry-After",
    "504": "Inference took too long",
}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description="Segment Anything 2 over HTTP. Errors are RFC 9457 problem documents.",
        routes=app.routes,
    )
    components: dict[str, Any] = schema.setdefault("components", {}).setdefault("schemas", {})
    models: list[type[BaseModel]] = [*BODY_MODELS.values(), Problem, PropagationSummary]
    for model in models:
        _add_schema(components, model)
    for path, item in schema["paths"].items():
        for operation in item.values():
            operation["responses"].pop("422", None)  # FastAPI's own validation shape: unused
            for status, description in _ERROR_STATUSES.items():
                if path.startswith("/v1/") or (path == "/readyz" and status == "503"):
                    operation["responses"][status] = {
                        "description": description,
                        "content": {
                            PROBLEM_CONTENT_TYPE: {"schema": {"$ref": REF.format(model="Problem")}}
                        },
                    }
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    schema["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "API key or browser token"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    for path, item in schema["paths"].items():
        if path.startswith("/v1/"):
            for operation in item.values():
                operation["security"] = [{"bearer": []}, {"apiKey": []}]
    return schema


def request_body(
    model: type[BaseModel], *, multipart: bool = False, required: bool = True
) -> dict[str, Any]:
    """A route's `openapi_extra`: its JSON body is `model` (and, with `multipart`, the same
    fields beside an image file)."""
    BODY_MODELS[model.__name__] = model
    ref = {"$ref": REF.format(model=model.__name__)}
    content: dict[str, Any] = {"application/json": {"schema": ref}}
    if multipart:
        content[MULTIPART] = _multipart(ref)
    return {"requestBody": {"required": required, "content": content}}


class NdjsonStream(JSONResponse):
    """For the docs only, as a route's `response_class`: a stream of JSON lines, each one the
    route's `response_model` (FastAPI documents a JSON response class's model under its
    media type; the route itself returns its stream). `LAST_LINE` names the summary line."""

    media_type = NDJSON


LAST_LINE = {
    "responses": {
        "200": {
            "content": {NDJSON: {"x-last-line": {"$ref": REF.format(model="PropagationSummary")}}}
        }
    }
}


def _multipart(request: dict[str, str]) -> dict[str, Any]:
    """The upload form of a segment body: the image file as it is, the other fields as JSON."""
    return {
        "schema": {
            "type": "object",
            "required": ["image", "request"],
            "properties": {
                "image": {
                    "type": "string",
                    "format": "binary",
                    "description": "The image file (instead of base64 `image`, `image_url` or "
                    "`image_id`, which `request` must then not name).",
                },
                "request": request | {"description": "The other fields, as JSON."},
            },
        },
        "encoding": {"request": {"contentType": "application/json"}},
    }


def _add_schema(components: dict[str, Any], model: type[BaseModel]) -> None:
    model_schema = model.model_json_schema(ref_template=REF, mode="validation")
    components.update(model_schema.pop("$defs", {}))
    components[model.__name__] = model_schema


def _video_upload() -> dict[str, Any]:
    """A clip, or its frames, as files; where to cut it as fields."""
    number = {"type": "number", "minimum": 0}
    return {
        "requestBody": {
            "required": True,
            "content": {
                MULTIPART: {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "video": {
                                "type": "string",
                                "format": "binary",
                                "description": "One MP4 or WebM clip (instead of `frames`).",
                            },
                            "frames": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                                "description": "JPEG or PNG frames of one size, in order.",
                            },
                            "start": number | {"description": "Seconds into the clip to begin."},
                            "duration": number | {"description": "Seconds of the clip to keep."},
                            "fps": number | {"description": "At most this many frames a second."},
                        },
                    }
                }
            },
        }
    }


VIDEO_UPLOAD = _video_upload()
"""The upload route's `openapi_extra`: a clip, or its frames, as files; where to cut it."""
