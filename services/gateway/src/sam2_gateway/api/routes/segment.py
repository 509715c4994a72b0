"""POST /v1/segment and /v1/segment/batch: check, decode once, forward, meter."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from time import perf_counter
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic_core import to_json
from sam2_contract.errors import Sam2ServiceError
from sam2_contract.images import decode_base64, image_id_for_file, probe_image
from sam2_contract.masks import render_answer
from sam2_contract.models import (
    BatchSegmentResponse,
    SegmentRequest,
    SegmentResponse,
)
from sam2_contract.problems import read_body, unless_abandoned
from sam2_contract.validation import parse_batch, parse_json, parse_segment_request
from sam2_contract.wire import routing_key
from starlette.concurrency import run_in_threadpool

from sam2_gateway.api.deps import Gateway, GatewayDep, Principal, PrincipalDep
from sam2_gateway.backends import Hop, InferenceError, InferenceResult
from sam2_gateway.core.ratelimit import RateState

router = APIRouter(prefix="/v1/segment", tags=["segment"])
log = logging.getLogger(__name__)


@router.post("", response_model=SegmentResponse)
async def segment(request: Request, principal: PrincipalDep, gateway: GatewayDep) -> Response:
    """Segment one image (or `image_id`) with points, boxes, or everything."""
    async with _limited(gateway, principal) as rate:
        raw = parse_json(await read_body(request, gateway.settings.max_body_bytes))
        parsed = parse_segment_request(raw)
        upload = await _check(gateway, parsed.image) if parsed.image is not None else None
        result = await _forward(gateway, principal, parsed, request, upload)
    body = await _render(result.body, parsed)
    return Response(body, media_type="application/json", headers=rate.headers() | result.headers)


@router.post("/batch", response_model=BatchSegmentResponse)
async def segment_batch(request: Request, principal: PrincipalDep, gateway: GatewayDep) -> Response:
    """Up to 16 requests in order, sharing one uploaded image; each succeeds or fails alone."""
    async with _limited(gateway, principal) as rate:
        batch = parse_batch(parse_json(await read_body(request, gateway.settings.max_body_bytes)))
        shared = None
        if batch.image is not None:  # one upload, metered once, however many items use it
            shared = replace(await _check(gateway, batch.image), metered=True)
            await gateway.meter.add(principal.key_id, requests=0, images=1, masks=0, gpu_ms=0.0)
        parts = []
        forwarded: dict[str, str] = {}
        for index, item in enumerate(batch.items()):
            try:
                parsed = parse_segment_request(item)
                own = None
                if parsed.image is not None:
                    own = shared if shared is not None and parsed.image == batch.image else None
                    own = own or await _check(gateway, parsed.image)
                result = await _forward(gateway, principal, parsed, request, own)
                if own is shared and shared is not None:
                    shared = shared.delivered()  # the embedding is there: later items send the id
                forwarded = forwarded or result.headers
                rendered = await _render(result.body, parsed)
                parts.append(b'{"index":%d,"status":200,"result":%s}' % (index, rendered))
            except Sam2ServiceError as exc:
                problem = exc.to_problem(instance=f"#/requests/{index}")
                error = problem.model_dump_json(exclude_none=True).encode()
                parts.append(b'{"index":%d,"status":%d,"error":%s}' % (index, exc.status, error))
    body = b'{"results":[%s],"count":%d}' % (b",".join(parts), len(parts))
    return Response(body, media_type="application/json", headers=rate.headers() | forwarded)


@dataclass(frozen=True, slots=True)
class _Upload:
    """An uploaded image checked at the gateway: its file bytes (None once the inference side
    holds its embedding) and the id its file hash gives it."""

    image_id: str
    file: bytes | None
    metered: bool

    def delivered(self) -> _Upload:
        return replace(self, file=None)


@asynccontextmanager
async def _limited(gateway: Gateway, principal: Principal) -> AsyncIterator[RateState]:
    """Count the call and hold a concurrency slot; errors carry the rate-limit headers too."""
    rate = await gateway.limiter.hit(principal.key_id, principal.rate_tier)
    try:
        async with gateway.limiter.slot(principal.key_id, principal.rate_tier):
            yield rate
    except Sam2ServiceError as exc:
        exc.headers |= rate.headers()
        raise


async def _forward(
    gateway: Gateway,
    principal: Principal,
    request: SegmentRequest,
    client: Request,
    upload: _Upload | None,
) -> InferenceResult:
    """Check scope, send the request (and its image file, if it uploads one) to inference,
    routed to the container that holds the image, with masks as RLE; meter the model time it
    used, whether it answers, fails or is stopped because its client went away."""
    principal.require("auto" if request.mode == "auto" else "segment")
    image_id = upload.image_id if upload is not None else request.image_id
    assert image_id is not None  # the model validator guarantees image or image_id
    forwarded = request.model_copy(
        update={"image": None, "image_id": image_id, "mask_format": "rle"}
    )
    hop = Hop(principal.key_id, _request_id(client), routing_key(principal.key_id, image_id))
    call = gateway.backend.segment(
        forwarded.model_dump_json(exclude_none=True).encode(),
        upload.file if upload is not None else None,
        hop,
    )
    try:
        result = await unless_abandoned(client, call, partial(_cancel, gateway, hop))
    except InferenceError as exc:
        if exc.model_ms:
            await gateway.meter.add(principal.key_id, images=0, masks=0, gpu_ms=exc.model_ms)
        raise
    uploaded = upload is not None and not upload.metered
    await gateway.meter.add(
        principal.key_id, images=int(uploaded), masks=result.masks, gpu_ms=result.model_ms
    )
    return result


async def _cancel(gateway: Gateway, hop: Hop) -> None:
    """Ask inference to stop the work of a request whose client went away (best effort: the
    call itself still ends, at the latest at its deadline)."""
    log.info("client went away: stopping %s", hop.request_id)
    with contextlib.suppress(Sam2ServiceError):
        await gateway.backend.cancel(hop)


async def _check(gateway: Gateway, image: str) -> _Upload:
    """Base64-decode an upload and check its header (format, pixel limit) without decoding
    pixels; the inference service decodes it."""

    def check() -> _Upload:
        data = decode_base64(image)
        probe_image(data, max_pixels=gateway.settings.max_pixels)
        return _Upload(image_id=image_id_for_file(data), file=data, metered=False)

    return await run_in_threadpool(check)


async def _render(body: bytes, parsed: SegmentRequest) -> bytes:
    """The client's mask format from the hop's RLE: RLE passes through untouched; bool2d, PNG
    and polygons are rendered here, on the gateway's CPU rather than the GPU container's, and
    that time is added to the answer's `encode_ms` and `total_ms`."""
    if parsed.mask_format == "rle":
        return body

    def render() -> bytes:
        started = perf_counter()
        answer = render_answer(
            json.loads(body), parsed.mask_format, tolerance=parsed.polygon_tolerance
        )
        timings = answer["timings_ms"]
        spent = (perf_counter() - started) * 1000
        timings["encode_ms"] += spent
        timings["total_ms"] += spent
        return to_json(answer)

    return await run_in_threadpool(render)


def _request_id(request: Request) -> str:
    rid: Any = getattr(request.state, "request_id", "")
    return str(rid)
