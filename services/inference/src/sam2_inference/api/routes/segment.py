"""The gateway's one model route: the request line and the image file as sent (sam2_contract.wire),
answered as the engine answers; and the gateway's call to stop a request nobody waits for."""

from __future__ import annotations

import logging
from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sam2_contract.problems import REQUEST_ID_HEADER, read_body
from sam2_contract.validation import parse_json, parse_segment_request
from sam2_contract.wire import ANSWER_LIMIT_HEADER, FRAME_CONTENT_TYPE, unpack_frame

from sam2_inference.api.answers import segment_answer
from sam2_inference.api.bounded import run_bounded
from sam2_inference.api.deps import EngineDep, NamespaceDep, SettingsDep

log = logging.getLogger(__name__)

router = APIRouter(prefix="/internal", include_in_schema=False)


@router.post("/segment")
async def segment(
    request: Request, engine: EngineDep, namespace: NamespaceDep, settings: SettingsDep
) -> Response:
    """The request JSON, then the image file (see sam2_contract.wire)."""
    body = await read_body(request, settings.max_body_bytes, content_type=FRAME_CONTENT_TYPE)
    raw_json, image_file = unpack_frame(body)
    parsed = parse_segment_request(parse_json(raw_json))
    call = partial(
        engine.segment,
        parsed,
        namespace=namespace,
        image_file=image_file,
        answer_limit=answer_limit(request.headers.get(ANSWER_LIMIT_HEADER, "")),
    )
    return segment_answer(await run_bounded(request, namespace, call), engine)


@router.post("/cancel")
async def cancel(request: Request, namespace: NamespaceDep) -> dict[str, int]:
    """The gateway's call when its client went away: stop that request's work here (the
    request it names answers 503 with the model time it used, which the gateway meters)."""
    request_id = request.headers.get(REQUEST_ID_HEADER)
    work = request.app.state.running.get((namespace, request_id))
    if work is None:
        return {"stopped": 0}
    work.cancelled.set()
    log.info("cancelled by the gateway: stopping %s", request_id)
    return {"stopped": 1}


def answer_limit(header: str) -> tuple[str, int] | None:
    """ANSWER_LIMIT_HEADER's `<mask_format>:<bytes>` (None: absent or not understood)."""
    fmt, _, size = header.partition(":")
    if fmt not in ("bool2d", "png") or not size.isdigit() or len(size) > 15:
        return None
    return fmt, int(size)
