"""Video tracking's state and bodies, with no I/O, shared by the sync and async sessions: the
frames and clips a user gets and gives, the request bodies, a session's prompt log (what is sent
again when the server lost the session) and the propagation stream's lines.

A session lives in one server process. When it is gone (expired, deleted, its server
restarted: `session_not_found`) a session object creates a new one on the same clip, sends its
prompts again in order (uploading the clip again if the server lost it too), retries the call,
and warns that earlier propagation results must be computed again.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sam2_contract.masks import decode_mask, encode_rle
from sam2_contract.video import FrameResult, PropagationSummary, SessionInfo, VideoInfo

from sam2_sdk._base import image_bytes, plain
from sam2_sdk._types import Box, ImageInput, Labels, Points, _valid

Direction = Literal["forward", "backward", "both"]
ClipInput = str | os.PathLike[str] | bytes


class SessionRecreatedWarning(UserWarning):
    """The server lost a session; a new one was made and its prompts sent again. Masks from
    earlier propagations are no longer the session's: propagate again."""


@dataclass(frozen=True, slots=True)
class TrackedObject:
    object_id: int
    mask: npt.NDArray[np.bool_]
    area: int
    bbox: list[int]
    visible: bool


@dataclass(frozen=True, slots=True)
class TrackedFrame:
    """Every object's mask on one frame (a prompt's answer, or one frame of a propagation)."""

    frame_index: int
    objects: dict[int, TrackedObject]
    final: bool = True
    """False on a propagation frame that a later pass of the same propagation tracks again
    (`direction="both"`: the frames between the two starts come twice; the second is kept)."""


@dataclass(frozen=True, slots=True)
class Clip:
    """What was uploaded, kept so that a lost clip can be uploaded again."""

    files: list[tuple[str, bytes]]
    fields: dict[str, str]


def clip(
    video: ClipInput | None,
    frames: Sequence[ImageInput] | None,
    start: float | None,
    duration: float | None,
    fps: float | None,
) -> Clip:
    if (video is None) == (frames is None):
        raise TypeError("pass `video` (an MP4/WebM file) or `frames` (images, in order)")
    if video is not None:
        data = video if isinstance(video, bytes) else Path(video).read_bytes()
        files = [("video", data)]
    else:
        assert frames is not None
        files = [("frames", image_bytes(frame)) for frame in frames]
    cut = {"start": start, "duration": duration, "fps": fps}
    return Clip(files, {k: str(v) for k, v in cut.items() if v is not None})


def parse_frame(answer: dict[str, Any]) -> TrackedFrame:
    result = _valid(FrameResult, answer)
    return TrackedFrame(
        frame_index=result.frame_index,
        objects={
            o.object_id: TrackedObject(
                o.object_id, decode_mask(o.mask), o.area, list(o.bbox), o.visible
            )
            for o in result.objects
        },
        final=result.final,
    )


class SessionLog:
    """A session's prompt log and the request bodies it is made of."""

    def __init__(self, video: VideoInfo, info: SessionInfo, source: Clip | None) -> None:
        self.video = video
        self.info = info
        self.source = source
        self.recreated = 0
        self.summary: PropagationSummary | None = None
        self._log: list[tuple[str, str, dict[str, Any] | None]] = []

    @property
    def session_id(self) -> str:
        return self.info.session_id

    def _path(self, suffix: str = "") -> str:
        return f"/v1/sessions/{self.session_id}{suffix}"

    @staticmethod
    def _prompt(
        frame_index: int,
        object_id: int,
        points: Points | None = None,
        labels: Labels | None = None,
        box: Box | None = None,
        mask: npt.ArrayLike | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"frame_index": frame_index, "object_id": object_id}
        if mask is not None:
            body["mask"] = encode_rle(np.asarray(mask, dtype=bool)).model_dump()
        for name, value in (
            ("point_coords", points),
            ("point_labels", labels),
            ("box_coords", box),
        ):
            if value is not None:
                body[name] = plain(value)
        return body

    def _replayed(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        """The calls that rebuild this session's prompts on a new session, in order."""
        return list(self._log)

    def _record(self, method: str, suffix: str, body: dict[str, Any] | None) -> None:
        if suffix == "/reset":
            self._log.clear()
        else:
            self._log.append((method, suffix, body))

    def _lost(self) -> None:
        self.recreated += 1
        warnings.warn(
            f"video session {self.session_id} was lost on the server; a new one was created "
            f"and its {len(self._log)} prompts sent again: propagate again",
            SessionRecreatedWarning,
            stacklevel=4,
        )

    @staticmethod
    def _propagation(
        direction: Direction, start_frame_index: int | None, max_frames: int | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"direction": direction}
        if start_frame_index is not None:
            body["start_frame_index"] = start_frame_index
        if max_frames is not None:
            body["max_frames"] = max_frames
        return body

    def _line(self, raw: str, final_only: bool) -> TrackedFrame | None:
        answer = json.loads(raw)
        if answer.get("done"):
            self.summary = _valid(PropagationSummary, answer)
            return None
        frame = parse_frame(answer)
        return None if final_only and not frame.final else frame


class ClipMemory:
    """Uploaded clips a resource keeps (the most recent `KEPT_CLIPS`), to upload again if the
    server loses one."""

    def __init__(self) -> None:
        self._clips: OrderedDict[str, Clip] = OrderedDict()

    def get(self, video_id: str) -> Clip | None:
        return self._clips.get(video_id)

    def keep(self, video_id: str, source: Clip) -> None:
        self._clips[video_id] = source
        self._clips.move_to_end(video_id)
        while len(self._clips) > KEPT_CLIPS:
            self._clips.popitem(last=False)


KEPT_CLIPS = 4
"""Uploaded clips a client keeps (most recent first), to upload again if the server loses one."""
