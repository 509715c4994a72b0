"""POST /v1/segment and /v1/segment/batch: check, decode once, forward, meter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sam2_contract.errors import Sam2ServiceError
from sam2_contract.images import DecodedImage, decode_base64, load_image
from sam2_contract.models import BatchSegmentResponse, SegmentRequest, SegmentResponse
from sam2_contract.problems import read_body
from sam2_contract.validation import parse_batch, parse_json, parse_segment_request
from starlette.concurrency import run_in_threadpool

from sam2_gateway.api.deps import Gateway, GatewayDep, Principal, PrincipalDep
from sam2_gateway.backends import InferenceResult
from sam2_gateway.core.ratelimit import RateState

router = APIRouter(prefix="/v1/segment", tags=["segment"])


@router.post("", response_model=SegmentResponse)
async def segment(request: Request, principal: PrincipalDep, gateway: GatewayDep) -> Response:
    """Segment one image (or `image_id`) with points, boxes, or everything."""
    async with _limited(gateway, principal) as rate:
        raw = parse_json(await read_body(request, gateway.settings.max_body_bytes))
        parsed = parse_segment_request(raw)
        result = await _forward(gateway, principal, parsed, _request_id(request), None)
    return Response(result.body, media_type="application/json", headers=rate.headers())


@router.post("/batch", response_model=BatchSegmentResponse)
async def segment_batch(request: Request, principal: PrincipalDep, gateway: GatewayDep) -> Response:
    """Up to 16 requests in order, sharing one uploaded image; each succeeds or fails alone."""
    async with _limited(gateway, principal) as rate:
        batch = parse_batch(parse_json(await read_body(request, gateway.settings.max_body_bytes)))
        shared = await _decode(gateway, batch.image) if batch.image is not None else None
        if shared is not None:  # one upload, however many items use it
            gateway.meter.add(principal.key_id, requests=0, images=1, masks=0, gpu_ms=0.0)
        parts = []
        for index, item in enumerate(batch.items()):
            try:
                parsed = parse_segment_request(item)
                own = shared if shared is not None and parsed.image == batch.image else None
                result = await _forward(gateway, principal, parsed, _request_id(request), own)
                parts.append(b'{"index":%d,"status":200,"result":%s}' % (index, result.body))
            except Sam2ServiceError as exc:
                problem = exc.to_problem(instance=f"#/requests/{index}")
                error = problem.model_dump_json(exclude_none=True).encode()
                parts.append(b'{"index":%d,"status":%d,"error":%s}' % (index, exc.status, error))
    body = b'{"results":[%s],"count":%d}' % (b",".join(parts), len(parts))
    return Response(body, media_type="application/json", headers=rate.headers())


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
    request_id: str,
    decoded: DecodedImage | None,
) -> InferenceResult:
    """Check scope, decode the upload once (unless given), send pixels on, meter the answer.
    A `decoded` image that is passed in (a batch's shared one) was metered where it arrived."""
    principal.require("auto" if request.mode == "auto" else "segment")
    uploaded = request.image is not None and decoded is None
    if uploaded:
        assert request.image is not None
        decoded = await _decode(gateway, request.image)
    if decoded is not None:
        request = request.model_copy(update={"image": None, "image_id": decoded.image_id})
    result = await gateway.backend.segment(
        request.model_dump_json(exclude_none=True).encode(),
        decoded.pixels if decoded is not None else None,
        namespace=principal.key_id,
        request_id=request_id,
    )
    gateway.meter.add(
        principal.key_id, images=int(uploaded), masks=result.masks, gpu_ms=result.model_ms
    )
    return result


async def _decode(gateway: Gateway, image: str) -> DecodedImage:
    def decode() -> DecodedImage:
        return load_image(decode_base64(image), max_pixels=gateway.settings.max_pixels)

    return await run_in_threadpool(decode)


def _request_id(request: Request) -> str:
    rid: Any = getattr(request.state, "request_id", "")
    return str(rid)
