"""The video side of one inference process: its clips, its sessions and the video model.

The video model (`SAM2VideoPredictor`, its own copy of the weights) loads on the first session.
One lock serialises its use; a propagation takes it for one frame at a time, so other sessions'
prompts are answered between its frames.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from sam2_contract.errors import ErrorCode, InvalidRequestError
from sam2_contract.masks import decode_mask, encode_mask
from sam2_contract.models import PolygonMask, RLEMask
from sam2_contract.video import FrameResult, TrackedObject, VideoPrompt

from sam2_inference.config import InferenceSettings
from sam2_inference.runtime.device import pick_device
from sam2_inference.runtime.memory import give_back_freed_memory
from sam2_inference.runtime.weights import resolve_checkpoint
from sam2_inference.video.clips import VideoLimits
from sam2_inference.video.sessions import SessionStore
from sam2_inference.video.store import VideoStore
from sam2_inference.video.tracker import FrameMasks, VideoSession, decode_frames, load_video_model

T = TypeVar("T")


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

    def start(self, files: Sequence[bytes]) -> VideoSession:
        """A tracker on a stored clip's frame files (its first frame encoded)."""
        frames = decode_frames(files)
        predictor = self.predictor
        offload = self.settings.video_offload
        session, _ = self.timed(lambda: VideoSession(predictor, frames, offload=offload))
        frames.clear()  # the decoded frames: no longer needed once the session holds its input
        give_back_freed_memory()  # the decoded frames (GiBs for a long clip): see runtime/memory.py
        return session


def mask_prompt(prompt: VideoPrompt, tracker: VideoSession) -> np.ndarray:
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


def frame_result(masks: FrameMasks, mask_format: Any) -> FrameResult:
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
