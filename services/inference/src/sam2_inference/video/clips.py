"""Clips and frame files as they arrive: bounded decoding and checks before anything is stored.

- `decode_clip`: an MP4 or WebM clip decoded with PyAV, cut by `start` and `duration` and
  thinned to `fps`; bounded by what it decodes (every frame's pixels, frames decoded, CPU
  seconds, the request's deadline), seeking to `start` rather than decoding up to it.
- `check_frames`: uploaded frame files, checked from their headers (nothing decoded).
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from PIL import Image
from sam2_contract.errors import ErrorCode, InvalidRequestError
from sam2_contract.images import probe_image

from sam2_inference.config import InferenceSettings
from sam2_inference.runtime.device import default_video_memory
from sam2_inference.scheduling.lock import Work


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
        raise invalid_video(f"the clip could not be opened: {exc}") from None
    with container:
        kind = CONTAINERS.get(container.format.name)
        if kind is None:
            raise invalid_video(f"the clip is {container.format.name}; clips are MP4 or WebM files")
        if not container.streams.video:
            raise invalid_video("the clip has no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        if codec not in CODECS:
            raise invalid_video(
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
                    raise video_too_large(
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
                    raise invalid_video(
                        f"a frame at {seconds:.2f} s is {frame.width}x{frame.height}, the first "
                        f"kept is {kept_size[0]}x{kept_size[1]}: a clip's frames share one size"
                    )
                kept_size = (frame.width, frame.height)
                if len(frames) == limits.max_frames:
                    raise video_too_large(
                        f"the part of the clip asked for has more than {limits.max_frames} frames"
                    )
                frames.append(_png(frame.to_ndarray(format="rgb24")))
                next_time = seconds + step if step else seconds
        except av.error.FFmpegError as exc:
            raise invalid_video(f"the clip could not be decoded: {exc}") from None
    if not frames:
        raise invalid_video("no frame of the clip falls inside `start` and `duration`")
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
        raise video_too_large(
            f"reaching the part asked for takes more than {limits.max_decoded_frames} decoded "
            "frames (the clip has few keyframes, or `start` is far in); cut the clip first, or "
            "re-encode it with a keyframe every few seconds"
        )
    spent = time.thread_time() - cpu_started
    if spent > limits.decode_cpu_s:
        raise video_too_large(
            f"decoding the clip took more than {limits.decode_cpu_s:.0f} s of CPU; send a "
            "shorter or smaller clip, or its frames"
        )


def check_frames(files: Sequence[bytes], limits: VideoLimits) -> None:
    """Uploaded frame files: how many, and each one's size from its header (nothing decoded)."""
    if not files:
        raise invalid_video(
            "send the clip as `video`, or its frames as `frames` (one or more files)"
        )
    if len(files) > limits.max_frames:
        raise video_too_large(f"{len(files)} frames; at most {limits.max_frames} are accepted")
    for index, data in enumerate(files):
        header = probe_image(data)
        if header.format not in ("JPEG", "PNG"):
            raise invalid_video(f"frame {index} is {header.format}; frames are JPEG or PNG files")
        _check_pixels(header.width, header.height, limits)


def _seconds(pts: int | None, time_base: Fraction | None, index: int, rate: float | None) -> float:
    if pts is not None and time_base is not None:
        return float(pts * time_base)
    return index / rate if rate else float(index)


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG", compress_level=1)
    return out.getvalue()


def frame_size(data: bytes) -> tuple[int, int]:
    header = probe_image(data)
    return header.width, header.height


def _check_pixels(width: int, height: int, limits: VideoLimits) -> None:
    if width * height > limits.max_frame_pixels:
        raise video_too_large(
            f"frames of {width}x{height} have more than {limits.max_frame_pixels} pixels"
        )


def invalid_video(detail: str) -> InvalidRequestError:
    return InvalidRequestError(detail, code=ErrorCode.INVALID_VIDEO)


def video_too_large(detail: str) -> InvalidRequestError:
    return InvalidRequestError(detail, code=ErrorCode.VIDEO_TOO_LARGE)
