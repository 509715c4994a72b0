"""Clips and tracking sessions at the inference service (issue 14, second slice).

- `decode_clip`: an MP4 or WebM clip decoded with PyAV, cut by `start` and `duration` and
  thinned to `fps`; bounded by what it decodes (every frame's pixels, frames decoded, CPU
  seconds, the request's deadline), seeking to `start` rather than decoding up to it.
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

import contextlib
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

from sam2_inference.config import InferenceSettings
from sam2_inference.device import default_video_memory
from sam2_inference.scheduling import Work
from sam2_inference.video import VideoSession
from sam2_inference.volume import VolumeGuard

VIDEO_ID = re.compile(r"^vid_[0-9a-f]{32}$")


@dataclass(frozen=True, slots=True)
class VideoLimits:
    max_frames: int
    max_frame_pixels: int
    max_decoded_frames: int
    decode_cpu_s: float
    max_objects: int
    sessions_per_tenant: int
    idle_s: float
    lifetime_s: float
    memory_bytes: int = 1 << 62  # every session of this process together (see SessionMemory)
    image_size: int = 1024  # the model's square input: what one frame holds

    @classmethod
    def from_settings(cls, settings: InferenceSettings) -> VideoLimits:
        return cls(
            max_frames=settings.video_max_frames,
            max_frame_pixels=settings.video_max_frame_pixels,
            max_decoded_frames=settings.video_max_decoded_frames,
            decode_cpu_s=settings.video_decode_cpu_s,
            max_objects=settings.video_max_objects,
            sessions_per_tenant=settings.video_sessions_per_tenant,
            idle_s=settings.video_session_idle_s,
            lifetime_s=settings.video_session_lifetime_s,
            memory_bytes=settings.video_memory_bytes or default_video_memory(settings.device),
        )


@dataclass(frozen=True, slots=True)
class Cut:
    """Which part of a clip to keep: seconds from its start, at most `fps` frames a second."""

    start: float = 0.0
    duration: float | None = None
    fps: float | None = None


# PyAV's demuxer names for the documented containers (MP4 and WebM; MOV and Matroska share
# their demuxers) and the video codecs they carry.
CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2": "MP4", "matroska,webm": "WebM"}
CODECS = frozenset({"h264", "hevc", "av1", "vp8", "vp9", "mpeg4"})


def decode_clip(
    data: bytes,
    cut: Cut,
    limits: VideoLimits,
    work: Work | None = None,
    pause: Callable[[], None] | None = None,
) -> tuple[list[bytes], float | None]:
    """The kept frames of an MP4/WebM clip as PNG files, and their frame rate.

    Bounded by what is decoded, not by what the header says: the container and codec must be
    documented ones; every decoded frame is checked against the pixel limit and the first
    frame's size; the decoder seeks to the keyframe before `start` (decoding, not reading,
    is what costs) and stops past `max_decoded_frames` frames or `decode_cpu_s` of CPU; it
    runs on one thread, checks the request's `work` (deadline, client gone) before each
    frame, and calls `pause` there (waiting while a click runs: clicks keep their time)."""
    import av  # PyAV: imported here, so that the image service starts without it loaded

    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, ValueError) as exc:
        raise _invalid(f"the clip could not be opened: {exc}") from None
    with container:
        kind = CONTAINERS.get(container.format.name)
        if kind is None:
            raise _invalid(f"the clip is {container.format.name}; clips are MP4 or WebM files")
        if not container.streams.video:
            raise _invalid("the clip has no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        if codec not in CODECS:
            raise _invalid(
                f"the {kind} clip's video is {codec}; accepted: {', '.join(sorted(CODECS))}"
            )
        stream.codec_context.thread_count = 1  # one core: the other serves clicks
        stream.codec_context.thread_type = "NONE"
        width, height = stream.codec_context.width, stream.codec_context.height
        _check_pixels(width, height, limits)
        rate = float(stream.average_rate) if stream.average_rate else None
        step = 1 / cut.fps if cut.fps else 0.0
        end = None if cut.duration is None else cut.start + cut.duration
        frames: list[bytes] = []
        kept_size: tuple[int, int] | None = None
        next_time = cut.start
        if cut.start > 0 and stream.time_base:
            with contextlib.suppress(av.error.FFmpegError):  # unseekable: decoded from 0
                container.seek(int(cut.start / stream.time_base), stream=stream, backward=True)
        cpu_started = time.thread_time()
        try:
            for decoded, frame in enumerate(container.decode(stream)):
                _within(decoded, cpu_started, limits, work, pause)
                if frame.width * frame.height > limits.max_frame_pixels:
                    raise _too_large(
                        f"frame {decoded} decodes to {frame.width}x{frame.height}, more than "
                        f"{limits.max_frame_pixels} pixels (the clip's header said "
                        f"{width}x{height})"
                    )
                seconds = _seconds(frame.pts, stream.time_base, decoded, rate)
                if seconds < next_time - 1e-6:
                    continue
                if end is not None and seconds >= end:
                    break
                if kept_size is not None and (frame.width, frame.height) != kept_size:
                    raise _invalid(
                        f"a frame at {seconds:.2f} s is {frame.width}x{frame.height}, the first "
                        f"kept is {kept_size[0]}x{kept_size[1]}: a clip's frames share one size"
                    )
                kept_size = (frame.width, frame.height)
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


def _within(
    decoded: int,
    cpu_started: float,
    limits: VideoLimits,
    work: Work | None,
    pause: Callable[[], None] | None,
) -> None:
    """Before decoding one more frame: the request still wanted, the decoding bounds kept."""
    if work is not None:
        work.check()
    if pause is not None:
        pause()
    if decoded >= limits.max_decoded_frames:
        raise _too_large(
            f"reaching the part asked for takes more than {limits.max_decoded_frames} decoded "
            "frames (the clip has few keyframes, or `start` is far in); cut the clip first, or "
            "re-encode it with a keyframe every few seconds"
        )
    spent = time.thread_time() - cpu_started
    if spent > limits.decode_cpu_s:
        raise _too_large(
            f"decoding the clip took more than {limits.decode_cpu_s:.0f} s of CPU; send a "
            "shorter or smaller clip, or its frames"
        )


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


# What a session holds (sam2 1.1.0's state; tests/inference/test_video_memory.py checks it):
# every frame as the model's float32 input (3 x S x S), then for each object on each tracked
# frame its memory features (64 channels at S/16, bfloat16), its low-resolution mask (S/4,
# float32) and object pointer; one frame's image features are cached (FEATURE_BYTES).
MEMORY_CHANNELS = 64
FEATURE_BYTES = 104 << 20  # one frame's image features and positional encodings, float32


def frame_bytes(image_size: int) -> int:
    return 3 * image_size * image_size * 4


def object_frame_bytes(image_size: int) -> int:
    memory = MEMORY_CHANNELS * (image_size // 16) ** 2 * 2
    return memory + (image_size // 4) ** 2 * 4 + 256 * 4


def session_bytes(frames: int, objects: int, image_size: int) -> int:
    """The most a session of `frames` frames tracking `objects` objects holds."""
    per_frame = frame_bytes(image_size) + objects * object_frame_bytes(image_size)
    return FEATURE_BYTES + frames * per_frame


class SessionMemory:
    """Bytes all sessions of this process may hold together, shared by every tenant. A
    session takes its share before it is made (its frames, one object, and its decoded
    frames while it is being made) and more before each further object; a share that does
    not fit is refused (`503 video_busy`), one that never could is `422 video_too_large`."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._lock = threading.Lock()

    def take(self, needed: int, what: str) -> None:
        with self._lock:
            if needed > self.total:
                raise _too_large(
                    f"{what} needs {_gib(needed)} of memory, more than the {_gib(self.total)} "
                    "this service holds for all video sessions; cut the clip shorter "
                    "(`duration`, `fps`) or smaller"
                )
            if self.used + needed > self.total:
                raise Sam2ServiceError(
                    f"{what} needs {_gib(needed)}; the sessions open here hold "
                    f"{_gib(self.used)} of {_gib(self.total)}",
                    code=ErrorCode.VIDEO_BUSY,
                    retry_after=30,
                )
            self.used += needed

    def give_back(self, size: int) -> None:
        with self._lock:
            self.used -= size


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB"


@dataclass(eq=False)
class Session:
    session_id: str
    namespace: str
    video_id: str
    tracker: VideoSession
    created: float
    last_used: float
    busy: threading.Lock = field(default_factory=threading.Lock)
    reserved: int = 0  # bytes of SessionMemory it holds
    objects_reserved: int = 1


class SessionStore:
    """Live sessions of this process; `clock` is monotonic seconds (a test double's boundary)."""

    def __init__(self, limits: VideoLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._starting: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.memory = SessionMemory(limits.memory_bytes)

    def create(
        self,
        namespace: str,
        video_id: str,
        tracker: Callable[[], VideoSession],
        limit: int | None = None,
        clip: VideoInfo | None = None,
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
            kept, making = self._shares(clip)
            self.memory.take(kept + making, "a session of this clip")
            try:
                started = tracker()  # the clip's first frame encoded: outside the store's lock
            except BaseException:
                self.memory.give_back(kept + making)
                raise
            self.memory.give_back(making)
            now = self.clock()
            session = Session(
                session_id(video_id), namespace, video_id, started, now, now, reserved=kept
            )
            with self._lock:
                self._sessions[session.session_id] = session
            return session
        finally:
            with self._lock:
                self._starting[namespace] -= 1
                if not self._starting[namespace]:
                    del self._starting[namespace]

    def _shares(self, clip: VideoInfo | None) -> tuple[int, int]:
        """A session's bytes once made (one object), and the decoded frames while making it."""
        if clip is None:
            return 0, 0
        kept = session_bytes(clip.num_frames, 1, self.limits.image_size)
        return kept, clip.num_frames * clip.width * clip.height * 3

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
            if self._sessions.pop(session.session_id, None) is not None:
                self._release(session)

    def _release(self, session: Session) -> None:
        self.memory.give_back(session.reserved)
        session.reserved = 0

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
        """Before a prompt: a new object within the session's cap, and its memory taken."""
        ids = session.tracker.object_ids
        if object_id in ids:
            return
        if len(ids) >= self.limits.max_objects:
            raise InvalidRequestError(
                f"this session tracks {len(ids)} objects, the most one session may track",
                code=ErrorCode.TOO_MANY_OBJECTS,
            )
        if len(ids) + 1 > session.objects_reserved and session.reserved:
            more = session.tracker.num_frames * object_frame_bytes(self.limits.image_size)
            self.memory.take(more, f"object {object_id} over this clip")
            with self._lock:
                session.reserved += more
                session.objects_reserved += 1

    def _sweep(self) -> None:
        """Forget expired sessions (idle too long, or past their lifetime), unless busy."""
        now = self.clock()
        for key, session in list(self._sessions.items()):
            idle = now - session.last_used > self.limits.idle_s
            old = now - session.created > self.limits.lifetime_s
            if (idle or old) and not session.busy.locked():
                del self._sessions[key]
                self._release(session)


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
