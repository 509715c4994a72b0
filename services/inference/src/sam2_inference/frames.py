"""Answering a gateway frame without HTTP: what the Modal inference class returns.

The answer is what the HTTP app would have sent for the same frame on /internal/segment:
the status, the JSON body (a response, or the problem), the metering numbers and Retry-After.
Both gateway backends therefore see the same bytes and map them the same way.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sam2_contract.errors import InternalServiceError, Sam2ServiceError
from sam2_contract.images import DecodedImage, image_id_for
from sam2_contract.models import mask_count
from sam2_contract.validation import parse_json, parse_segment_request

from sam2_inference.engine import Sam2Engine

log = logging.getLogger(__name__)


def answer_frame(
    engine: Sam2Engine,
    request_json: bytes,
    pixels: bytes | None,
    shape: list[int] | None,
    *,
    namespace: str,
    request_id: str,
) -> dict[str, Any]:
    """{status, body, masks, model_ms, retry_after} for one framed request."""
    try:
        request = parse_segment_request(parse_json(request_json))
        image = None
        if pixels is not None and shape is not None:
            array = np.frombuffer(pixels, dtype=np.uint8).reshape(shape[0], shape[1], 3).copy()
            image = DecodedImage(pixels=array, format="raw", image_id=image_id_for(array))
        result = engine.segment(request, namespace=namespace, image=image)
    except Sam2ServiceError as exc:
        return _problem(exc, request_id)
    except Exception:
        log.exception("unhandled error answering a frame (request %s)", request_id)
        return _problem(InternalServiceError("an unexpected error occurred"), request_id)
    timings = result.timings_ms
    return {
        "status": 200,
        "body": result.model_dump_json(exclude_none=True).encode(),
        "masks": mask_count(result),
        "model_ms": timings.embed_ms + timings.predict_ms,
        "retry_after": None,
    }


def _problem(exc: Sam2ServiceError, request_id: str) -> dict[str, Any]:
    problem = exc.to_problem(instance="/internal/segment", request_id=request_id)
    return {
        "status": exc.status,
        "body": problem.model_dump_json(exclude_none=True).encode(),
        "masks": 0,
        "model_ms": 0.0,
        "retry_after": exc.retry_after,
    }
