"""JSON answers of the inference routes, with the headers the gateway meters by (so that it
never has to parse a large body)."""

from __future__ import annotations

from fastapi.responses import Response
from pydantic import BaseModel
from sam2_contract.models import SegmentResponse, mask_count
from sam2_contract.wire import MASKS_HEADER, MODEL_MS_HEADER, WEIGHTS_HEADER

from sam2_inference.image.engine import Sam2Engine


def json_answer(
    model: BaseModel, *, model_ms: float | None = None, exclude_none: bool = False
) -> Response:
    """`model` as JSON, with the model time it took (`MODEL_MS_HEADER`) when given."""
    headers = {} if model_ms is None else {MODEL_MS_HEADER: f"{model_ms:.1f}"}
    return Response(
        content=model.model_dump_json(exclude_none=exclude_none),
        media_type="application/json",
        headers=headers,
    )


def segment_answer(model: SegmentResponse, engine: Sam2Engine) -> Response:
    """A segment answer, with the weights it came from, its masks and its model time."""
    timings = model.timings_ms
    response = json_answer(model, model_ms=timings.embed_ms + timings.predict_ms, exclude_none=True)
    info = engine.info
    response.headers[WEIGHTS_HEADER] = "random" if info.random_weights else info.weights
    response.headers[MASKS_HEADER] = str(mask_count(model))
    return response
