"""Clips and tracking sessions at the inference service (issue 14, second slice).

- `decode_clip`: an MP4 or WebM clip decoded with PyAV, cut by `start` and `duration` and
  thinned to `fps`, the limits (frames, pixels per frame) checked before each frame is decoded.
- `VideoStore`: clips stored by content hash in a folder per tenant, as their frames' image files
  (uploaded JPEG/PNG as sent, decoded clips as PNG, lossless): a session reads them back as
  sam2's own loader would read a folder of them.
- `SessionStore`: sessions per tenant, each with an idle timeout (moved on by every request)
  and a hard lifetime, a cap per tenant, and one propagation at a time (409 otherwise). A
  session of another tenant is not found, as an expired one is.

Session state lives in this process (GPU tensors: it cannot move); a request for a session this
process does not hold is `session_not_found`, and the SDKs recreate it and replay its prompts.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image
from sam2_contract.errors import ErrorCode, InvalidRequestError, NotFoundError, Sam2ServiceError
from sam2_contract.images import probe_image
from sam2_contract.video import SessionInfo, VideoInfo, session_id

from sam2_inference.video import VideoSession
from sam2_inference.volume import VolumeGuard

VIDEO_ID = re.compile(r"^vid_[0-9a-f]{32}$")


@dataclass(frozen=True, slots=True)
class VideoLimits:
    max_frames: int
    max_frame_pixels: int
    max_objects: int
    sessions_per_tenant: int
    idle_s: float
    lifetime_s: float


@dataclass(frozen=True, slots=True)
class Cut:
    """Which part of a clip to keep: seconds from its start, at most `fps` frames a second."""

    start: float = 0.0
    duration: float | None = None
    fps: float | None = None


def decode_clip(data: bytes, cut: Cut, limits: VideoLimits) -> tuple[list[bytes], float | None]:
    """The kept frames of an MP4/WebM clip as PNG files, and their frame rate."""
    import av  # PyAV: imported here, so that the image service starts without it loaded

    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, ValueError) as exc:
        raise _invalid(f"the clip could not be opened: {exc}") from None
    with container:
        if not container.streams.video:
            raise _invalid("the clip has no video stream")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        _check_pixels(width, height, limits)
        rate = float(stream.average_rate) if stream.average_rate else None
        step = 1 / cut.fps if cut.fps else 0.0
        end = None if cut.duration is None else cut.start + cut.duration
        frames: list[bytes] = []
        next_time = cut.start
        try:
            for frame in container.decode(stream):
                seconds = _seconds(frame.pts, stream.time_base, len(frames), rate)
                if seconds < next_time - 1e-6:
                    continue
                if end is not None and seconds >= end:
                    break
                if len(frames) == limits.max_frames:
                    raise _too_large(
                        f"the part of the clip asked for has more than {limits.max_frames} frames"
                    )
                frames.append(_png(frame.to_ndarray(format="rgb24")))
                next_time = seconds + step if step else seconds
        except av.error.FFmpegError as exc:
            raise _invalid(f"the clip could not be decoded: {exc}") from None
    if not frames:
        raise _invalid("no frame of the clip falls inside `start` and `duration`")
    kept_rate = cut.fps if cut.fps and (rate is None or cut.fps < rate) else rate
    return frames, kept_rate


def check_frames(files: Sequence[bytes], limits: VideoLimits) -> None:
    """Uploaded frame files: how many, and each one's size from its header (nothing decoded)."""
    if not files:
        raise _invalid("send the clip as `video`, or its frames as `frames` (one or more files)")
    if len(files) > limits.max_frames:
        raise _too_large(f"{len(files)} frames; at most {limits.max_frames} are accepted")
    for index, data in enumerate(files):
        header = probe_image(data)
        if header.format not in ("JPEG", "PNG"):
            raise _invalid(f"frame {index} is {header.format}; frames are JPEG or PNG files")
        _check_pixels(header.width, header.height, limits)


class VideoStore:
    """Clips by content hash, in a folder per tenant. On Modal the folder is a Volume that every
    container mounts: `on_stored` commits it after a clip is written (other containers then see
    it), `on_missing` reloads it before a clip is declared missing (one another container
    stored since this one last looked), each with no file of it open (volume.py)."""

    def __init__(
        self,
        root: Path,
        *,
        on_stored: Callable[[], object] | None = None,
        on_missing: Callable[[], object] | None = None,
    ) -> None:
        self.root = root
        self._on_stored = on_stored
        self._on_missing = on_missing
        self._guard = VolumeGuard()

    def put(self, namespace: str, files: Sequence[bytes], fps: float | None) -> VideoInfo:
        digest = hashlib.blake2b(digest_size=16, person=b"sam2-video")
        for data in files:
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
        video_id = "vid_" + digest.hexdigest()
        width, height = _size(files[0])
        for index, data in enumerate(files[1:], start=1):
            if _size(data) != (width, height):
                raise _invalid(
                    f"frame {index} is {_size(data)[0]}x{_size(data)[1]}, frame 0 is "
                    f"{width}x{height}: a clip's frames share one size"
                )
        info = VideoInfo(
            video_id=video_id, num_frames=len(files), width=width, height=height, fps=fps
        )
        folder = self._folder(namespace, video_id)
        with self._guard.files():
            stored = not (folder / "info.json").exists()
            if stored:
                partial = folder.with_name(folder.name + f".{secrets.token_hex(4)}.tmp")
                partial.mkdir(parents=True)
                for index, data in enumerate(files):
                    (partial / f"{index:05d}").write_bytes(data)
                (partial / "info.json").write_text(info.model_dump_json())
                try:
                    partial.rename(folder)
                except OSError:  # the same clip stored meanwhile: equal content
                    shutil.rmtree(partial, ignore_errors=True)
        if stored and self._on_stored is not None:
            self._guard.sync(self._on_stored, "commit")
        return info

    def get(self, namespace: str, video_id: str) -> tuple[VideoInfo, list[bytes]]:
        """A clip's description and every frame's file."""
        info, folder = self._found(namespace, video_id)
        with self._guard.files():
            files = [(folder / f"{index:05d}").read_bytes() for index in range(info.num_frames)]
        return info, files

    def frame(self, namespace: str, video_id: str, index: int) -> bytes:
        """One frame's file (only that one is read)."""
        info, folder = self._found(namespace, video_id)
        if not 0 <= index < info.num_frames:
            raise InvalidRequestError(
                f"frame_index {index} is outside the clip's {info.num_frames} frames",
                code=ErrorCode.INVALID_PARAMETER,
            )
        with self._guard.files():
            return (folder / f"{index:05d}").read_bytes()

    def _found(self, namespace: str, video_id: str) -> tuple[VideoInfo, Path]:
        folder = self._folder(namespace, video_id) if VIDEO_ID.match(video_id) else None
        if folder is not None and not self._has(folder) and self._on_missing:
            self._guard.sync(self._on_missing, "reload")
        if folder is None or not self._has(folder):
            raise NotFoundError(
                f"no video {video_id!r} for this API key", code=ErrorCode.VIDEO_NOT_FOUND
            )
        with self._guard.files():
            info = VideoInfo.model_validate(json.loads((folder / "info.json").read_text()))
        return info, folder

    def _has(self, folder: Path) -> bool:
        with self._guard.files():
            return (folder / "info.json").exists()

    def _folder(self, namespace: str, video_id: str) -> Path:
        tenant = hashlib.blake2b(namespace.encode(), digest_size=16).hexdigest()
        return self.root / tenant / video_id


@dataclass(eq=False)
class Session:
    session_id: str
    namespace: str
    video_id: str
    tracker: VideoSession
    created: float
    last_used: float
    busy: threading.Lock = field(default_factory=threading.Lock)


class SessionStore:
    """Live sessions of this process; `clock` is monotonic seconds (a test double's boundary)."""

    def __init__(self, limits: VideoLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._starting: Counter[str] = Counter()
        self._lock = threading.Lock()

    def create(
        self,
        namespace: str,
        video_id: str,
        tracker: Callable[[], VideoSession],
        limit: int | None = None,
    ) -> Session:
        """A new session, unless the tenant holds `limit` already: its tier's, which the
        gateway sends and `/v1/usage` reports, or this process's `sessions_per_tenant` for a
        call that names none. (What all sessions may hold together is the memory budget's.)"""
        cap = self.limits.sessions_per_tenant if limit is None else limit
        with self._lock:
            self._sweep()
            held = sum(1 for s in self._sessions.values() if s.namespace == namespace)
            held += self._starting[namespace]
            if held >= cap:
                raise Sam2ServiceError(
                    f"this API key holds {held} sessions here, the most it may hold at once",
                    code=ErrorCode.TOO_MANY_SESSIONS,
                    retry_after=60,
                )
            self._starting[namespace] += 1  # a session being made counts against the cap
        try:
            started = tracker()  # the clip's first frame encoded: outside the store's lock
            now = self.clock()
            session = Session(session_id(video_id), namespace, video_id, started, now, now)
            with self._lock:
                self._sessions[session.session_id] = session
            return session
        finally:
            with self._lock:
                self._starting[namespace] -= 1
                if not self._starting[namespace]:
                    del self._starting[namespace]

    def get(self, namespace: str, session_id: str) -> Session:
        with self._lock:
            self._sweep()
            session = self._sessions.get(session_id)
            if session is None or session.namespace != namespace:
                raise NotFoundError(
                    f"no session {session_id!r} here for this API key",
                    code=ErrorCode.SESSION_NOT_FOUND,
                )
            session.last_used = self.clock()
            return session

    def delete(self, namespace: str, session_id: str) -> None:
        session = self.get(namespace, session_id)
        with self._lock:
            self._sessions.pop(session.session_id, None)

    @contextmanager
    def exclusive(self, session: Session) -> Iterator[None]:
        """The session to itself (a prompt, a propagation); 409 while another holds it."""
        self.acquire(session)
        try:
            yield
        finally:
            self.release(session)

    def acquire(self, session: Session) -> None:
        if not session.busy.acquire(blocking=False):
            raise Sam2ServiceError(
                f"session {session.session_id} is propagating; this request would change what "
                "it tracks",
                code=ErrorCode.SESSION_BUSY,
                retry_after=1,
            )

    def release(self, session: Session) -> None:
        session.last_used = self.clock()
        session.busy.release()

    def info(self, session: Session) -> SessionInfo:
        expires = min(
            session.last_used + self.limits.idle_s, session.created + self.limits.lifetime_s
        )
        wall = time.time() + (expires - self.clock())
        return SessionInfo(
            session_id=session.session_id,
            video_id=session.video_id,
            num_frames=session.tracker.num_frames,
            object_ids=session.tracker.object_ids,
            prompted_frames=session.tracker.prompted_frames,
            propagating=session.busy.locked(),
            expires_at=datetime.fromtimestamp(wall, UTC),
        )

    def check_objects(self, session: Session, object_id: int) -> None:
        ids = session.tracker.object_ids
        if object_id not in ids and len(ids) >= self.limits.max_objects:
            raise InvalidRequestError(
                f"this session tracks {len(ids)} objects, the most one session may track",
                code=ErrorCode.TOO_MANY_OBJECTS,
            )

    def _sweep(self) -> None:
        """Forget expired sessions (idle too long, or past their lifetime), unless busy."""
        now = self.clock()
        for key, session in list(self._sessions.items()):
            idle = now - session.last_used > self.limits.idle_s
            old = now - session.created > self.limits.lifetime_s
            if (idle or old) and not session.busy.locked():
                del self._sessions[key]


def frames_of(files: Sequence[bytes]) -> list[np.ndarray]:
    """The stored files as RGB arrays (what `VideoSession` takes)."""
    from sam2_inference.video import decode_frames

    return decode_frames(files)


def _seconds(pts: int | None, time_base: Fraction | None, index: int, rate: float | None) -> float:
    if pts is not None and time_base is not None:
        return float(pts * time_base)
    return index / rate if rate else float(index)


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG", compress_level=1)
    return out.getvalue()


def _size(data: bytes) -> tuple[int, int]:
    header = probe_image(data)
    return header.width, header.height


def _check_pixels(width: int, height: int, limits: VideoLimits) -> None:
    if width * height > limits.max_frame_pixels:
        raise _too_large(
            f"frames of {width}x{height} have more than {limits.max_frame_pixels} pixels"
        )


def _invalid(detail: str) -> InvalidRequestError:
    return InvalidRequestError(detail, code=ErrorCode.INVALID_VIDEO)


def _too_large(detail: str) -> InvalidRequestError:
    return InvalidRequestError(detail, code=ErrorCode.VIDEO_TOO_LARGE)
