"""The video API (scope `video`): clips, tracking sessions, prompts and the propagation stream,
passed on to the inference service that holds the session.

Routing: a session lives in one inference process. Its id carries its video's id, so every
request of a session is routed by (key, video) as its creation was, and on Modal reaches the
container that holds it; if that container is gone the answer is `session_not_found`, and the
SDKs create a new session and replay its prompts. Uploads go anywhere: clips are stored by
content hash where every container reads them.

Metering: GPU milliseconds, and masks as frames x objects (one per object on each frame sent).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from sam2_contract.errors import ErrorCode, NotFoundError
from sam2_contract.problems import StreamWithCleanup, read_body, unless_abandoned
from sam2_contract.validation import parse_json, parse_model
from sam2_contract.video import (
    NDJSON,
    ClearPromptsRequest,
    FrameResult,
    PropagateRequest,
    SessionInfo,
    VideoInfo,
    VideoPrompt,
    path_index,
    video_of_session,
)
from sam2_contract.wire import SESSION_LIMIT_HEADER, routing_key

from sam2_gateway.api.deps import Gateway, GatewayDep, Principal, PrincipalDep
from sam2_gateway.api.openapi import LAST_LINE, VIDEO_UPLOAD, NdjsonStream, request_body
from sam2_gateway.api.routes.segment import _cancel, _limited, _request_id
from sam2_gateway.core.multipart import MULTIPART
from sam2_gateway.hop import Forwarded, Hop

router = APIRouter(tags=["video"])


@router.post("/v1/videos", response_model=VideoInfo, openapi_extra=VIDEO_UPLOAD)
async def upload_video(request: Request, principal: PrincipalDep, gateway: GatewayDep) -> Response:
    """A clip (`video`: MP4 or WebM) or its frames (`frames`: JPEG/PNG files, in order) as
    `multipart/form-data`, with optional `start`, `duration` (seconds) and `fps`."""
    principal.require("video")
    async with _limited(gateway, principal) as rate:
        body = await read_body(request, gateway.settings.video_max_bytes, content_type=MULTIPART)
        hop = Hop(principal.key_id, _request_id(request))
        call = gateway.backend.forward(
            "POST", "/v1/videos", hop, body, request.headers["content-type"], deadline=True
        )  # a clip is decoded within the request's deadline, and stopped if its client goes
        answer = await unless_abandoned(request, call, partial(_cancel, gateway, hop))
        await gateway.meter.add(principal.key_id, images=1, masks=0, gpu_ms=answer.model_ms)
    return _passed_on(answer, rate.headers())


@router.get("/v1/videos/{video_id}", response_model=VideoInfo)
async def get_video(
    video_id: str, request: Request, principal: PrincipalDep, gateway: GatewayDep
) -> Response:
    """An uploaded clip's description: frames, size and frame rate."""
    principal.require("video")
    async with _limited(gateway, principal) as rate:
        hop = Hop(principal.key_id, _request_id(request), routing_key(principal.key_id, video_id))
        answer = await gateway.backend.forward("GET", f"/v1/videos/{video_id}", hop)
    return _passed_on(answer, rate.headers())


@router.get(
    "/v1/videos/{video_id}/frames/{frame_index}",
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}},
)
async def get_frame(
    video_id: str, frame_index: str, request: Request, principal: PrincipalDep, gateway: GatewayDep
) -> Response:
    """One frame of an uploaded clip, as the image file it is stored as."""
    principal.require("video")
    frame_index = str(path_index(frame_index, "frame_index"))
    async with _limited(gateway, principal) as rate:
        hop = Hop(principal.key_id, _request_id(request), routing_key(principal.key_id, video_id))
        answer = await gateway.backend.forward(
            "GET", f"/v1/videos/{video_id}/frames/{frame_index}", hop
        )
    return _passed_on(answer, rate.headers() | {"cache-control": "private, max-age=3600"})


@router.post("/v1/videos/{video_id}/sessions", response_model=SessionInfo)
async def create_session(
    video_id: str, request: Request, principal: PrincipalDep, gateway: GatewayDep
) -> Response:
    """A tracking session over the clip (its first frame is encoded now)."""
    principal.require("video")
    async with _limited(gateway, principal) as rate:
        hop = Hop(principal.key_id, _request_id(request), routing_key(principal.key_id, video_id))
        limit = gateway.settings.video_sessions(principal.rate_tier)
        answer = await gateway.backend.forward(
            "POST",
            f"/v1/videos/{video_id}/sessions",
            hop,
            headers={SESSION_LIMIT_HEADER: str(limit)},
        )
        await gateway.meter.add(principal.key_id, images=0, masks=0, gpu_ms=answer.model_ms)
    return _passed_on(answer, rate.headers())


@router.get("/v1/sessions/{session_id}", response_model=SessionInfo)
async def get_session(
    session_id: str, request: Request, principal: PrincipalDep, gateway: GatewayDep
) -> Response:
    """A session's objects, prompted frames, whether it is propagating, and when it expires."""
    return await _call(gateway, principal, request, "GET", session_id, "")


@router.delete("/v1/sessions/{session_id}", status_code=204)
async def delete_session(
    session_id: str, request: Request, principal: PrincipalDep, gateway: GatewayDep
) -> Response:
    """End a session now: its memory is given back."""
    return await _call(gateway, principal, request, "DELETE", session_id, "")


@router.post(
    "/v1/sessions/{session_id}/prompts",
    response_model=FrameResult,
    openapi_extra=request_body(VideoPrompt),
)
async def add_prompt(
    session_id: str, request: Request, principal: PrincipalDep, gateway: GatewayDep
) -> Response:
    """Points and/or a box, or a mask, for one object on one frame: every object's mask there."""
    return await _model_call(gateway, principal, request, session_id, "/prompts", VideoPrompt)


@router.post(
    "/v1/sessions/{session_id}/clear",
    response_model=FrameResult,
    openapi_extra=request_body(ClearPromptsRequest),
)
async def clear_prompts(
    session_id: str, request: Request, principal: PrincipalDep, gateway: GatewayDep
) -> Response:
    """One object's prompts on one frame removed: every object's mask there."""
    return await _model_call(gateway, principal, request, session_id, "/clear", ClearPromptsRequest)


@router.post("/v1/sessions/{session_id}/reset", response_model=SessionInfo)
async def reset_session(
    session_id: str, request: Request, principal: PrincipalDep, gateway: GatewayDep
) -> Response:
    """Every prompt and result of the session dropped; the clip stays."""
    return await _call(gateway, principal, request, "POST", session_id, "/reset")


@router.delete("/v1/sessions/{session_id}/objects/{object_id}", response_model=SessionInfo)
async def remove_object(
    session_id: str, object_id: str, request: Request, principal: PrincipalDep, gateway: GatewayDep
) -> Response:
    """One object and its prompts and masks removed from the session."""
    principal.require("video")
    path = f"/objects/{path_index(object_id, 'object_id')}"
    return await _call(gateway, principal, request, "DELETE", session_id, path)


@router.post(
    "/v1/sessions/{session_id}/propagate",
    response_model=FrameResult,
    response_class=NdjsonStream,
    openapi_extra=request_body(PropagateRequest) | LAST_LINE,
)
async def propagate(
    session_id: str, request: Request, principal: PrincipalDep, gateway: GatewayDep
) -> StreamingResponse:
    """Track every prompted object through the clip: one NDJSON line per frame as it is
    tracked, then a summary line. Closing the stream stops the tracking."""
    principal.require("video")
    raw = parse_json(await read_body(request, gateway.settings.max_body_bytes))
    parse_model(PropagateRequest, raw)
    hop = _session_hop(principal, request, session_id)
    path = f"/v1/sessions/{session_id}/propagate"
    held = AsyncExitStack()  # the concurrency slot and the upstream stream, while it runs
    masks, gpu_ms = 0, 0.0  # what the stream sent: metered when it is over

    async def cleanup() -> None:
        """The stream is over (sent, cut off, or never started): close the upstream (which
        stops the tracking), free the slot, meter what was sent."""
        await held.aclose()
        await gateway.meter.add(principal.key_id, images=0, masks=masks, gpu_ms=gpu_ms)

    try:
        rate = await held.enter_async_context(_limited(gateway, principal))
        lines = await held.enter_async_context(
            gateway.backend.stream(path, hop, json.dumps(raw).encode())
        )  # errors before the first line are problem responses
    except BaseException:
        await held.aclose()
        raise

    async def relay() -> AsyncIterator[bytes]:
        nonlocal masks, gpu_ms
        async for line in lines:
            masks += _objects_on(line)
            gpu_ms = _summary_ms(line, gpu_ms)
            yield line

    return StreamWithCleanup(relay(), cleanup=cleanup, media_type=NDJSON, headers=rate.headers())


async def _model_call(
    gateway: Gateway,
    principal: Principal,
    request: Request,
    session_id: str,
    suffix: str,
    model: type[Any],
) -> Response:
    """A prompt-like call: validated here, forwarded, metered (its objects and GPU time)."""
    principal.require("video")
    async with _limited(gateway, principal) as rate:
        body = await read_body(request, gateway.settings.max_body_bytes)
        parse_model(model, parse_json(body))
        answer = await gateway.backend.forward(
            "POST",
            f"/v1/sessions/{session_id}{suffix}",
            _session_hop(principal, request, session_id),
            body,
            "application/json",
        )
        masks = len(json.loads(answer.body).get("objects", []))
        await gateway.meter.add(principal.key_id, images=0, masks=masks, gpu_ms=answer.model_ms)
    return _passed_on(answer, rate.headers())


async def _call(
    gateway: Gateway,
    principal: Principal,
    request: Request,
    method: str,
    session_id: str,
    suffix: str,
) -> Response:
    """A session call with no body: forwarded, its GPU time metered, the rate headers on."""
    principal.require("video")
    async with _limited(gateway, principal) as rate:
        hop = _session_hop(principal, request, session_id)
        answer = await gateway.backend.forward(method, f"/v1/sessions/{session_id}{suffix}", hop)
        if answer.model_ms:
            await gateway.meter.add(principal.key_id, images=0, masks=0, gpu_ms=answer.model_ms)
    return _passed_on(answer, rate.headers())


def _session_hop(principal: Principal, request: Request, session_id: str) -> Hop:
    video_id = video_of_session(session_id)
    if video_id is None:
        raise NotFoundError(
            f"no session {session_id!r} for this API key", code=ErrorCode.SESSION_NOT_FOUND
        )
    return Hop(principal.key_id, _request_id(request), routing_key(principal.key_id, video_id))


def _passed_on(answer: Forwarded, headers: dict[str, str] | None = None) -> Response:
    if answer.status == 204:
        return Response(status_code=204, headers=headers)
    return Response(
        answer.body, status_code=answer.status, media_type=answer.content_type, headers=headers
    )


def _objects_on(line: bytes) -> int:
    """Objects on a frame line (0 for the summary line)."""
    return line.count(b'"object_id"')


def _summary_ms(line: bytes, so_far: float) -> float:
    if not line.startswith(b'{"done"'):
        return so_far
    return float(json.loads(line).get("model_ms", so_far))
