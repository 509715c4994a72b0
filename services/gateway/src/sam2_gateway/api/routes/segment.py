"""POST /v1/segment and /v1/segment/batch: check, decode once, forward, meter."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sam2_contract.errors import ErrorCode, InvalidRequestError, Sam2ServiceError
from sam2_contract.images import decode_base64, image_id_for_file, probe_image
from sam2_contract.masks import answer_mask_bytes
from sam2_contract.models import (
    BatchSegmentRequest,
    BatchSegmentResponse,
    SegmentRequest,
    SegmentResponse,
)
from sam2_contract.problems import read_body, unless_abandoned
from sam2_contract.validation import (
    BatchEnvelope,
    parse_batch,
    parse_json,
    parse_segment_request,
)
from sam2_contract.wire import routing_key
from starlette.concurrency import run_in_threadpool

from sam2_gateway.api.deps import Gateway, GatewayDep, Principal, PrincipalDep
from sam2_gateway.api.openapi import request_body
from sam2_gateway.core.answers import (
    PartsResponse,
    Rendered,
    answer_size,
    render_parts,
    rle_answer,
)
from sam2_gateway.core.multipart import MULTIPART, is_multipart, read_multipart
from sam2_gateway.core.ratelimit import RateState
from sam2_gateway.hop import Hop, InferenceError, InferenceResult

router = APIRouter(prefix="/v1/segment", tags=["segment"])
log = logging.getLogger(__name__)


@router.post(
    "", response_model=SegmentResponse, openapi_extra=request_body(SegmentRequest, multipart=True)
)
async def segment(request: Request, principal: PrincipalDep, gateway: GatewayDep) -> Response:
    """Segment one image (base64 `image`, a multipart file, `image_url` or `image_id`) with
    points, boxes, or everything."""
    async with _limited(gateway, principal) as rate:
        raw, file = await _read(request, gateway)
        parsed = parse_segment_request(_naming_file(raw, file))
        upload = await _source(gateway, parsed, file)
        _answer_fits(gateway, parsed, upload)
        result = await _forward(gateway, principal, parsed, request, upload)
    rendered = await _render(gateway, result.body, parsed)
    return PartsResponse(rendered, headers=rate.headers() | result.headers)


@router.post(
    "/batch",
    response_model=BatchSegmentResponse,
    openapi_extra=request_body(BatchSegmentRequest, multipart=True),
)
async def segment_batch(request: Request, principal: PrincipalDep, gateway: GatewayDep) -> Response:
    """Up to 16 requests in order, sharing one uploaded image; each succeeds or fails alone."""
    async with _limited(gateway, principal) as rate:
        raw, file = await _read(request, gateway)
        batch = parse_batch(_naming_file(raw, file))
        shared = await _source(gateway, batch, file)
        if shared is not None:  # one upload (or fetch), metered once, however many items use it
            shared = replace(shared, metered=True)
            await gateway.meter.add(principal.key_id, requests=0, images=1, masks=0, gpu_ms=0.0)
            batch = batch.model_copy(
                update={"image": None, "image_url": None, "image_id": shared.image_id}
            )
        fetched: dict[str, _Upload] = {}
        answer = Rendered([b'{"results":['])
        releases: list[Callable[[], None]] = []

        def release_all() -> None:
            for release in releases:
                release()

        forwarded: dict[str, str] = {}
        try:
            for index, item in enumerate(batch.items()):
                comma = b"," if index else b""
                try:
                    parsed = parse_segment_request(item)
                    shares = shared is not None and parsed.image_id == shared.image_id
                    own = shared if shares else await _source(gateway, parsed, None, fetched)
                    _answer_fits(gateway, parsed, own)
                    result = await _forward(gateway, principal, parsed, request, own)
                    if own is shared and shared is not None:
                        # The embedding is there: later items send the id.
                        shared = shared.delivered()
                    forwarded = forwarded or result.headers
                    # The bound is on the whole answer: an item that would pass it fails alone.
                    rendered = await _render(gateway, result.body, parsed, already=answer.size)
                    releases.append(rendered.release)
                    answer.parts += [
                        b'%s{"index":%d,"status":200,"result":' % (comma, index),
                        *rendered.parts,
                        b"}",
                    ]
                except Sam2ServiceError as exc:
                    problem = exc.to_problem(instance=f"#/requests/{index}")
                    error = problem.model_dump_json(exclude_none=True).encode()
                    answer.parts.append(
                        b'%s{"index":%d,"status":%d,"error":%s}' % (comma, index, exc.status, error)
                    )
            answer.parts.append(b'],"count":%d}' % len(batch.items()))
        except BaseException:
            release_all()
            raise
    answer.release = release_all
    return PartsResponse(answer, headers=rate.headers() | forwarded)


@dataclass(frozen=True, slots=True)
class _Upload:
    """An uploaded image checked at the gateway: its file bytes (None once the inference side
    holds its embedding) and the id its file hash gives it."""

    image_id: str
    file: bytes | None
    metered: bool
    size: tuple[int, int] | None = None  # (height, width) as the file's header says

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
    body, hop = segment_hop(gateway, principal.key_id, request, upload, _request_id(client))
    return await send_segment(
        gateway,
        body,
        upload,
        hop,
        guard=lambda call: unless_abandoned(client, call, partial(_cancel, gateway, hop)),
    )


def segment_hop(
    gateway: Gateway,
    key_id: str,
    request: SegmentRequest,
    upload: _Upload | None,
    request_id: str,
) -> tuple[bytes, Hop]:
    """The request as inference takes it (by image_id, masks as RLE) and its hop: this key's
    tenant, routed by the image, with the answer's bound for bool2d and PNG."""
    image_id = upload.image_id if upload is not None else request.image_id
    assert image_id is not None  # the model validator guarantees image or image_id
    forwarded = request.model_copy(
        update={"image": None, "image_url": None, "image_id": image_id, "mask_format": "rle"}
    )
    limit = None  # bool2d and PNG answers are sized by their pixels: inference checks first
    if request.mode != "auto" and request.mask_format in ("bool2d", "png"):
        limit = f"{request.mask_format}:{gateway.answers.per_answer}"
    hop = Hop(key_id, request_id, routing_key(key_id, image_id), limit)
    return forwarded.model_dump_json(exclude_none=True, exclude_unset=True).encode(), hop


async def send_segment(
    gateway: Gateway,
    body: bytes,
    upload: _Upload | None,
    hop: Hop,
    guard: Callable[[Awaitable[InferenceResult]], Awaitable[InferenceResult]] | None = None,
) -> InferenceResult:
    """Send one segment request over the hop and meter it (an upload as an image, the masks,
    the model time, also of a call that fails); `guard` wraps the call (a client's going)."""
    call = gateway.backend.segment(body, upload.file if upload is not None else None, hop)
    try:
        result = await (guard(call) if guard is not None else call)
    except InferenceError as exc:
        if exc.model_ms:
            await gateway.meter.add(hop.namespace, images=0, masks=0, gpu_ms=exc.model_ms)
        raise
    uploaded = upload is not None and not upload.metered
    await gateway.meter.add(
        hop.namespace, images=int(uploaded), masks=result.masks, gpu_ms=result.model_ms
    )
    return result


async def _cancel(gateway: Gateway, hop: Hop) -> None:
    """Ask inference to stop the work of a request whose client went away (best effort: the
    call itself still ends, at the latest at its deadline)."""
    log.info("client went away: stopping %s", hop.request_id)
    with contextlib.suppress(Sam2ServiceError):
        await gateway.backend.cancel(hop)


async def _read(request: Request, gateway: Gateway) -> tuple[Any, bytes | None]:
    """The body's JSON, and the image file when it came as `multipart/form-data` (an `image`
    file part and a `request` part holding the JSON): no base64, a third less to upload."""
    limit = gateway.settings.max_body_bytes
    if not is_multipart(request.headers.get("content-type", "")):
        return parse_json(await read_body(request, limit)), None
    body = await read_body(request, limit, content_type=MULTIPART)
    fields, file = await read_multipart(request.headers, body)
    return parse_json(fields), file


def _naming_file(raw: Any, file: bytes | None) -> Any:
    """A multipart body's request, its image named by the file's id (as the file is
    forwarded); the request part itself must then name no other image."""
    if file is None or not isinstance(raw, dict):
        return raw
    named = sorted({"image", "image_url", "image_id"} & set(raw))
    if named:
        raise InvalidRequestError(
            f"the body has an image file part and the request names {' and '.join(named)} too",
            code=ErrorCode.IMAGE_AND_IMAGE_ID,
        )
    return raw | {"image_id": image_id_for_file(file)}


async def _source(
    gateway: Gateway,
    parsed: SegmentRequest | BatchEnvelope,
    file: bytes | None,
    fetched: dict[str, _Upload] | None = None,
) -> _Upload | None:
    """The request's image file, checked (format and pixel limit from its header, without
    decoding pixels: the inference service decodes it): a multipart file, base64 `image`, or
    `image_url` fetched (once per batch); None for an `image_id` alone."""
    if file is None and parsed.image_url is not None:
        url = parsed.image_url
        if fetched is not None and url in fetched:
            return fetched[url]
        file = await gateway.fetcher.fetch(url)
    elif file is None and parsed.image is None:
        return None
    image = parsed.image

    def check(data: bytes | None) -> _Upload:
        data = data if data is not None else decode_base64(image or "")
        header = probe_image(data, max_pixels=gateway.settings.max_pixels)
        return _Upload(
            image_id=image_id_for_file(data),
            file=data,
            metered=False,
            size=(header.height, header.width),
        )

    upload = await run_in_threadpool(check, file)
    if fetched is not None and parsed.image_url is not None:
        fetched[parsed.image_url] = upload
    return upload


def _answer_fits(gateway: Gateway, parsed: SegmentRequest, upload: _Upload | None) -> None:
    """Refuse, before any model work, an answer the upload's size already shows to be over
    the bound: at least one mask for each prompt set (point and box mode; automatic mode's
    count is known only once inference answers, and is checked then; by `image_id` inference
    checks it, from ANSWER_LIMIT_HEADER)."""
    if upload is None or upload.size is None or parsed.mode == "auto":
        return
    height, width = upload.size
    per_mask = min(  # the EXIF orientation may turn the image
        answer_mask_bytes(parsed.mask_format, height, width),
        answer_mask_bytes(parsed.mask_format, width, height),
    )
    masks = len(parsed.prompt_sets())
    gateway.answers.check(per_mask * masks, parsed.mask_format, masks)


async def _render(
    gateway: Gateway, body: bytes, parsed: SegmentRequest, already: int = 0
) -> Rendered:
    """The client's mask format from the hop's RLE: RLE passes through untouched; bool2d, PNG
    and polygons are rendered here, on the gateway's CPU rather than the GPU container's, and
    that time is added to the answer's `encode_ms` and `total_ms`. The answer's size is known
    (and bounded: core/answers.py) before any of it is built."""
    if parsed.mask_format == "rle":
        return Rendered([body])
    answer = await run_in_threadpool(rle_answer, body)
    needed, masks = answer_size(answer, len(body), parsed.mask_format)
    gateway.answers.check(already + needed, parsed.mask_format, masks)
    release = await gateway.answers.take(needed)
    try:
        parts = await run_in_threadpool(
            render_parts, answer, parsed.mask_format, parsed.polygon_tolerance
        )
    except BaseException:
        release()
        raise
    return Rendered(parts, release)


def _request_id(request: Request) -> str:
    rid: Any = getattr(request.state, "request_id", "")
    return str(rid)
