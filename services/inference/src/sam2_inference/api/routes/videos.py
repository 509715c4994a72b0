"""The video routes of the inference service: clips, sessions, prompts, the propagation stream.

Closing the propagation stream stops it after the frame in flight (video/service.py holds the
model and its lock, video/sessions.py the sessions).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from sam2_contract.errors import ErrorCode, InvalidRequestError
from sam2_contract.forms import MULTIPART, multipart_form
from sam2_contract.problems import StreamWithCleanup, read_body
from sam2_contract.validation import parse_model
from sam2_contract.video import (
    NDJSON,
    ClearPromptsRequest,
    FrameResult,
    PropagateRequest,
    PropagationSummary,
    SessionInfo,
    VideoInfo,
    VideoPrompt,
    path_index,
)
from sam2_contract.wire import SESSION_LIMIT_HEADER
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from sam2_inference.api.answers import json_answer
from sam2_inference.api.bounded import run_bounded
from sam2_inference.api.deps import BodyDep, NamespaceDep, SessionDep, VideosDep
from sam2_inference.video.clips import Cut, check_frames, decode_clip
from sam2_inference.video.service import VideoService, frame_result, mask_prompt
from sam2_inference.video.tracker import FrameMasks, VideoSession

router = APIRouter(tags=["video"])
UPLOAD_PARTS = ("video", "frames", "start", "duration", "fps")


@router.post("/v1/videos", response_model=VideoInfo)
async def upload(request: Request, tenant: NamespaceDep, videos: VideosDep) -> VideoInfo:
    body = await read_body(request, videos.settings.video_max_bytes, content_type=MULTIPART)
    files, clip, cut = await _parse_upload(request, body)
    if clip is not None:
        engine = request.app.state.holder.engine
        pause = engine.let_clicks_pass if engine is not None else None
        call = partial(decode_clip, clip, cut, videos.limits, pause=pause)
        frames, fps = await run_bounded(request, tenant, call)
    else:
        check_frames(files, videos.limits)
        frames, fps = files, cut.fps
    return await run_in_threadpool(videos.store.put, tenant, frames, fps)


@router.get("/v1/videos/{video_id}", response_model=VideoInfo)
async def video(video_id: str, tenant: NamespaceDep, videos: VideosDep) -> VideoInfo:
    info, _ = await run_in_threadpool(videos.store.get, tenant, video_id)
    return info


@router.get("/v1/videos/{video_id}/frames/{frame_index}")
async def frame(
    video_id: str, frame_index: str, tenant: NamespaceDep, videos: VideosDep
) -> Response:
    """One stored frame as its image file (what a page shows while tracking)."""
    index = path_index(frame_index, "frame_index")
    data = await run_in_threadpool(videos.store.frame, tenant, video_id, index)
    media = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
    return Response(data, media_type=media, headers={"cache-control": "private, max-age=3600"})


@router.post("/v1/videos/{video_id}/sessions", response_model=SessionInfo)
async def new_session(
    video_id: str, request: Request, tenant: NamespaceDep, videos: VideosDep
) -> SessionInfo:
    """A session on the clip; at most the tier's sessions (the gateway's header) and this
    process's cap (`SAM2_VIDEO_SESSIONS_PER_TENANT`) per tenant."""
    given = request.headers.get(SESSION_LIMIT_HEADER, "")
    limit = int(given) if given.isdigit() and len(given) < 6 else None
    clip, files = await run_in_threadpool(videos.store.get, tenant, video_id)

    start = partial(videos.start, files)
    session = await run_in_threadpool(videos.sessions.create, tenant, video_id, start, limit, clip)
    return videos.sessions.info(session)


@router.get("/v1/sessions/{session_id}", response_model=SessionInfo)
async def get_session(session: SessionDep, videos: VideosDep) -> SessionInfo:
    return videos.sessions.info(session)


@router.delete("/v1/sessions/{session_id}", status_code=204)
async def delete_session(session_id: str, tenant: NamespaceDep, videos: VideosDep) -> Response:
    videos.sessions.delete(tenant, session_id)
    return Response(status_code=204)


@router.post("/v1/sessions/{session_id}/prompts", response_model=FrameResult)
async def prompt(session: SessionDep, body: BodyDep, videos: VideosDep) -> Response:
    parsed = parse_model(VideoPrompt, body)
    tracker = session.tracker
    videos.sessions.check_objects(session, parsed.object_id)

    def run() -> tuple[FrameMasks, float]:
        if parsed.mask is not None:
            mask = mask_prompt(parsed, tracker)
            return videos.timed(
                lambda: tracker.add_mask(parsed.frame_index, parsed.object_id, mask)
            )
        return videos.timed(
            lambda: tracker.add_prompt(
                parsed.frame_index,
                parsed.object_id,
                points=parsed.point_coords,
                labels=parsed.point_labels,
                box=parsed.box_coords,
            )
        )

    with videos.sessions.exclusive(session):
        masks, model_ms = await run_in_threadpool(run)
    return json_answer(frame_result(masks, parsed.mask_format), model_ms=model_ms)


@router.post("/v1/sessions/{session_id}/clear", response_model=FrameResult)
async def clear(session: SessionDep, body: BodyDep, videos: VideosDep) -> Response:
    parsed = parse_model(ClearPromptsRequest, body)
    with videos.sessions.exclusive(session):
        masks, model_ms = await run_in_threadpool(
            videos.timed,
            lambda: session.tracker.clear_prompts(parsed.frame_index, parsed.object_id),
        )
    return json_answer(frame_result(masks, parsed.mask_format), model_ms=model_ms)


@router.delete("/v1/sessions/{session_id}/objects/{object_id}", response_model=SessionInfo)
async def remove_object(session: SessionDep, object_id: str, videos: VideosDep) -> SessionInfo:
    removed = path_index(object_id, "object_id")
    if removed not in session.tracker.object_ids:
        raise InvalidRequestError(
            f"object {object_id} is not tracked in this session",
            code=ErrorCode.INVALID_PARAMETER,
        )
    with videos.sessions.exclusive(session):
        await run_in_threadpool(videos.timed, lambda: session.tracker.remove_object(removed))
    return videos.sessions.info(session)


@router.post("/v1/sessions/{session_id}/reset", response_model=SessionInfo)
async def reset(session: SessionDep, videos: VideosDep) -> SessionInfo:
    with videos.sessions.exclusive(session):
        await run_in_threadpool(videos.timed, session.tracker.reset)
    return videos.sessions.info(session)


@router.post("/v1/sessions/{session_id}/propagate")
async def propagate(session: SessionDep, body: BodyDep, videos: VideosDep) -> StreamingResponse:
    parsed = parse_model(PropagateRequest, body)
    tracker = session.tracker
    frames = tracker.propagate(parsed.start_frame_index, parsed.direction, parsed.max_frames)
    videos.sessions.acquire(session)  # 409 now, as a problem response, if one runs already

    async def cleanup() -> None:
        """The stream is over (sent, cut off, or never started): stop tracking and free the
        session. A frame still in flight in its thread ends with that frame."""
        with contextlib.suppress(ValueError):  # "generator already executing"
            frames.close()
        videos.sessions.release(session)

    try:
        first = await run_in_threadpool(_step, videos, frames)  # errors before the stream
    except BaseException:
        await cleanup()
        raise
    lines = _lines(videos, frames, first, parsed, tracker)
    return StreamWithCleanup(lines, cleanup=cleanup, media_type=NDJSON)


def _step(videos: VideoService, frames: Iterator[FrameMasks]) -> tuple[FrameMasks | None, float]:
    return videos.timed(lambda: next(frames, None))


async def _lines(
    videos: VideoService,
    frames: Iterator[FrameMasks],
    first: tuple[FrameMasks | None, float],
    request: PropagateRequest,
    tracker: VideoSession,
) -> AsyncIterator[bytes]:
    """One NDJSON line per frame, then the summary."""
    sent, model_ms = 0, 0.0
    masks, step_ms = first
    while masks is not None:
        model_ms += step_ms
        yield frame_result(masks, request.mask_format).model_dump_json().encode() + b"\n"
        sent += 1
        masks, step_ms = await run_in_threadpool(_step, videos, frames)
    summary = PropagationSummary(
        frames=sent, object_ids=tracker.object_ids, model_ms=round(model_ms, 1)
    )
    yield summary.model_dump_json().encode() + b"\n"


async def _parse_upload(request: Request, body: bytes) -> tuple[list[bytes], bytes | None, Cut]:
    """`video` (one MP4/WebM file) or `frames` (image files, in order), and the cut fields."""
    form_parts = multipart_form(
        request.headers,
        body,
        parts=UPLOAD_PARTS,
        max_files=100_000,
        max_fields=8,
        malformed=ErrorCode.INVALID_VIDEO,
        unknown=ErrorCode.UNKNOWN_FIELD,
        hint="send `video` or `frames`, and optionally `start`, `duration`, `fps`",
    )
    async with form_parts as form:
        clips = [part for part in form.getlist("video") if isinstance(part, UploadFile)]
        frames = [part for part in form.getlist("frames") if isinstance(part, UploadFile)]
        if len(clips) > 1 or (clips and frames):
            raise InvalidRequestError(
                "send one `video` file, or `frames`, not both", code=ErrorCode.INVALID_VIDEO
            )
        cut = Cut(
            start=_number(form, "start") or 0.0,
            duration=_number(form, "duration"),
            fps=_number(form, "fps"),
        )
        clip = await clips[0].read() if clips else None
        return [await part.read() for part in frames], clip, cut


def _number(form: Any, name: str) -> float | None:
    value = form.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not number >= 0 or number == float("inf") or (name != "start" and number == 0):
        raise InvalidRequestError(
            f"`{name}` must be a {'non-negative' if name == 'start' else 'positive'} number of "
            f"{'frames per second' if name == 'fps' else 'seconds'}",
            code=ErrorCode.INVALID_PARAMETER,
        )
    return number
