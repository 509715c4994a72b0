"""Tracking sessions per tenant: each with an idle timeout (moved on by every request) and a
hard lifetime, a cap per tenant, a share of the process's video memory, and one propagation at
a time (409 otherwise). A session of another tenant is not found, as an expired one is.

Session state lives in this process (GPU tensors: it cannot move); a request for a session this
process does not hold is `session_not_found`, and the SDKs recreate it and replay its prompts.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sam2_contract.errors import ErrorCode, InvalidRequestError, NotFoundError, Sam2ServiceError
from sam2_contract.video import SessionInfo, VideoInfo, session_id

from sam2_inference.video.clips import VideoLimits, video_too_large
from sam2_inference.video.tracker import VideoSession

# What a session holds (sam2 1.1.0's state; tests/inference/video/test_video_memory.py checks it):
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
                raise video_too_large(
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
