"""The video routes of the inference service: clips, sessions, prompts, the propagation stream.

The video model (`SAM2VideoPredictor`, its own copy of the weights) loads on the first session.
One lock serialises its use; a propagation takes it for one frame at a time, so other sessions'
prompts are answered between its frames. Closing the propagation stream stops it after the
frame in flight.
"""

from __future__ import annotations

import base64
import contextlib
import io
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from functools import partial
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from PIL import Image
from pydantic import BaseModel
from sam2_contract.errors import ErrorCode, InvalidRequestError
from sam2_contract.masks import decode_mask, encode_mask
from sam2_contract.models import PolygonMask, RLEMask
from sam2_contract.problems import StreamWithCleanup, read_body
from sam2_contract.validation import parse_json, parse_model
from sam2_contract.video import (
    NDJSON,
    ClearPromptsRequest,
    FrameResult,
    PropagateRequest,
    PropagationSummary,
    SessionInfo,
    TrackedObject,
    VideoInfo,
    VideoPrompt,
    path_index,
)
from sam2_contract.wire import MODEL_MS_HEADER, NAMESPACE_HEADER, SESSION_LIMIT_HEADER
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from sam2_inference.bounded import run_bounded
from sam2_inference.config import InferenceSettings
from sam2_inference.device import pick_device
from sam2_inference.memory import give_back_freed_memory
from sam2_inference.video import FrameMasks, VideoSession, load_video_model
from sam2_inference.videos import (
    Cut,
    Session,
    SessionStore,
    VideoLimits,
    VideoStore,
    check_frames,
    decode_clip,
    frames_of,
)
from sam2_inference.weights import resolve_checkpoint

T = TypeVar("T")
MULTIPART = "multipart/form-data"


class VideoService:
    """Clips, sessions and the lazily loaded video model of one inference process."""

    def __init__(
        self,
        settings: InferenceSettings,
        *,
        predictor: Any = None,
        clock: Callable[[], float] = time.monotonic,
        store: VideoStore | None = None,
    ) -> None:
        self.settings = settings
        self.limits = VideoLimits.from_settings(settings)
        self.store = store or VideoStore(settings.video_dir)
        self.sessions = SessionStore(self.limits, clock)
        self._predictor = predictor
        self.model_lock = threading.Lock()

    @property
    def predictor(self) -> Any:
        with self.model_lock:
            if self._predictor is None:
                device = pick_device(self.settings.device)
                checkpoint = resolve_checkpoint(self.settings)
                self._predictor = load_video_model(self.settings.model, checkpoint, device)
            return self._predictor

    def timed(self, call: Callable[[], T]) -> tuple[T, float]:
        """`call` holding the video model, and its milliseconds."""
        with self.model_lock:
            started = time.perf_counter()
            result = call()
            return result, (time.perf_counter() - started) * 1000


def _videos(request: Request) -> VideoService:
    videos: VideoService = request.app.state.videos
    return videos


def _tenant(request: Request) -> str:
    """The tenant the gateway says this call is for; nothing crosses tenants."""
    return request.headers.get(NAMESPACE_HEADER) or "default"


def _session(session_id: str, request: Request) -> Session:
    return _videos(request).sessions.get(_tenant(request), session_id)


async def _json_body(request: Request) -> Any:
    return parse_json(await read_body(request, _videos(request).settings.max_body_bytes))


Videos = Annotated[VideoService, Depends(_videos)]
Tenant = Annotated[str, Depends(_tenant)]
SessionDep = Annotated[Session, Depends(_session)]
Body = Annotated[Any, Depends(_json_body)]
router = APIRouter(tags=["video"])


@router.post("/v1/videos", response_model=VideoInfo)
async def upload(request: Request, tenant: Tenant, videos: Videos) -> VideoInfo:
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
async def video(video_id: str, tenant: Tenant, videos: Videos) -> VideoInfo:
    info, _ = await run_in_threadpool(videos.store.get, tenant, video_id)
    return info


@router.get("/v1/videos/{video_id}/frames/{frame_index}")
async def frame(video_id: str, frame_index: str, tenant: Tenant, videos: Videos) -> Response:
    """One stored frame as its image file (what a page shows while tracking)."""
    index = path_index(frame_index, "frame_index")
    data = await run_in_threadpool(videos.store.frame, tenant, video_id, index)
    media = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
    return Response(data, media_type=media, headers={"cache-control": "private, max-age=3600"})


@router.post("/v1/videos/{video_id}/sessions", response_model=SessionInfo)
async def new_session(
    video_id: str, request: Request, tenant: Tenant, videos: Videos
) -> SessionInfo:
    """A session on the clip; at most the tier's sessions (the gateway's header) and this
    process's cap (`SAM2_VIDEO_SESSIONS_PER_TENANT`) per tenant."""
    given = request.headers.get(SESSION_LIMIT_HEADER, "")
    limit = int(given) if given.isdigit() and len(given) < 6 else None
    clip, files = await run_in_threadpool(videos.store.get, tenant, video_id)

    def start() -> VideoSession:
        frames = frames_of(files)
        predictor = videos.predictor
        offload = videos.settings.video_offload
        session, _ = videos.timed(lambda: VideoSession(predictor, frames, offload=offload))
        frames.clear()  # the decoded frames: no longer needed once the session holds its input
        give_back_freed_memory()  # the decoded frames (GiBs for a long clip): see memory.py
        return session

    session = await run_in_threadpool(videos.sessions.create, tenant, video_id, start, limit, clip)
    return videos.sessions.info(session)


@router.get("/v1/sessions/{session_id}", response_model=SessionInfo)
async def get_session(session: SessionDep, videos: Videos) -> SessionInfo:
    return videos.sessions.info(session)


@router.delete("/v1/sessions/{session_id}", status_code=204)
async def delete_session(session_id: str, tenant: Tenant, videos: Videos) -> Response:
    videos.sessions.delete(tenant, session_id)
    return Response(status_code=204)


@router.post("/v1/sessions/{session_id}/prompts", response_model=FrameResult)
async def prompt(session: SessionDep, body: Body, videos: Videos) -> Response:
    parsed = parse_model(VideoPrompt, body)
    tracker = session.tracker
    videos.sessions.check_objects(session, parsed.object_id)

    def run() -> tuple[FrameMasks, float]:
        if parsed.mask is not None:
            mask = _mask_prompt(parsed, tracker)
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
    return _json(_frame_result(masks, parsed.mask_format), model_ms)


@router.post("/v1/sessions/{session_id}/clear", response_model=FrameResult)
async def clear(session: SessionDep, body: Body, videos: Videos) -> Response:
    parsed = parse_model(ClearPromptsRequest, body)
    with videos.sessions.exclusive(session):
        masks, model_ms = await run_in_threadpool(
            videos.timed,
            lambda: session.tracker.clear_prompts(parsed.frame_index, parsed.object_id),
        )
    return _json(_frame_result(masks, parsed.mask_format), model_ms)


@router.delete("/v1/sessions/{session_id}/objects/{object_id}", response_model=SessionInfo)
async def remove_object(session: SessionDep, object_id: str, videos: Videos) -> SessionInfo:
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
async def reset(session: SessionDep, videos: Videos) -> SessionInfo:
    with videos.sessions.exclusive(session):
        await run_in_threadpool(videos.timed, session.tracker.reset)
    return videos.sessions.info(session)


@router.post("/v1/sessions/{session_id}/propagate")
async def propagate(session: SessionDep, body: Body, videos: Videos) -> StreamingResponse:
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
        yield _frame_result(masks, request.mask_format).model_dump_json().encode() + b"\n"
        sent += 1
        masks, step_ms = await run_in_threadpool(_step, videos, frames)
    summary = PropagationSummary(
        frames=sent, object_ids=tracker.object_ids, model_ms=round(model_ms, 1)
    )
    yield summary.model_dump_json().encode() + b"\n"


async def _parse_upload(request: Request, body: bytes) -> tuple[list[bytes], bytes | None, Cut]:
    """`video` (one MP4/WebM file) or `frames` (image files, in order), and the cut fields."""

    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(
        request.headers, stream(), max_files=100_000, max_fields=8, max_part_size=len(body) + 1
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidRequestError(
            f"the multipart body is malformed: {exc.message}", code=ErrorCode.INVALID_VIDEO
        ) from None
    try:
        unknown = sorted(set(form.keys()) - {"video", "frames", "start", "duration", "fps"})
        if unknown:
            raise InvalidRequestError(
                f"unexpected part(s) {', '.join(unknown)}; send `video` or `frames`, and "
                "optionally `start`, `duration`, `fps`",
                code=ErrorCode.UNKNOWN_FIELD,
            )
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
    finally:
        await form.close()


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


def _mask_prompt(prompt: VideoPrompt, tracker: VideoSession) -> np.ndarray:
    """The mask prompt decoded, its size checked first: a few bytes of RLE or a PNG header
    can claim billions of pixels."""
    assert prompt.mask is not None
    height, width = tracker.state["video_height"], tracker.state["video_width"]
    claimed = _claimed_size(prompt.mask)
    if claimed is not None and claimed != (height, width):
        raise InvalidRequestError(
            f"`mask` is {claimed[1]}x{claimed[0]}; the clip is {width}x{height}",
            code=ErrorCode.INVALID_PARAMETER,
        )
    try:
        mask = decode_mask(prompt.mask)
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidRequestError(
            f"`mask` could not be decoded: {exc}", code=ErrorCode.INVALID_PARAMETER
        ) from None
    if mask.shape != (height, width):
        raise InvalidRequestError(
            f"`mask` is {mask.shape[1]}x{mask.shape[0]}; the clip is {width}x{height}",
            code=ErrorCode.INVALID_PARAMETER,
        )
    return mask


def _claimed_size(mask: Any) -> tuple[int, int] | None:
    """The (height, width) an encoded mask says it has, read without decoding it."""
    if isinstance(mask, RLEMask | PolygonMask):
        return mask.size[0], mask.size[1]
    if isinstance(mask, str):
        head = mask.split(",", 1)[-1][:4096]  # a data: URL's prefix off; the header is early
        try:
            with Image.open(io.BytesIO(base64.b64decode(head[: len(head) // 4 * 4]))) as header:
                return header.size[1], header.size[0]
        except (OSError, ValueError):
            return None  # decoding then says what is wrong with it
    return None  # rows of booleans: as large as the body, which is bounded


def _frame_result(masks: FrameMasks, mask_format: Any) -> FrameResult:
    return FrameResult(
        frame_index=masks.frame_index,
        objects=[_tracked(i, mask, mask_format) for i, mask in sorted(masks.masks.items())],
        final=masks.final,
    )


def _tracked(object_id: int, mask: np.ndarray, mask_format: Any) -> TrackedObject:
    ys, xs = np.nonzero(mask)
    bbox = (
        [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        if len(xs)
        else [0, 0, 0, 0]
    )
    return TrackedObject(
        object_id=object_id,
        mask=encode_mask(mask, mask_format),
        area=len(xs),
        bbox=bbox,
        visible=bool(len(xs)),
    )


def _json(model: BaseModel, model_ms: float) -> Response:
    return Response(
        content=model.model_dump_json(),
        media_type="application/json",
        headers={MODEL_MS_HEADER: f"{model_ms:.1f}"},
    )
