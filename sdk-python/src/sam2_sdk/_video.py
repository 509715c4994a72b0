"""Video tracking in the SDK: `client.videos.upload(...)`, `client.videos.session(video)`, and a
session's prompts and propagation (sync and async).

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
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
from sam2_contract.masks import decode_mask, encode_rle
from sam2_contract.video import FrameResult, PropagationSummary, SessionInfo, VideoInfo

from sam2_sdk._base import image_bytes, plain
from sam2_sdk._exceptions import SessionNotFoundError, VideoNotFoundError
from sam2_sdk._types import Box, ImageInput, Labels, Points, _valid

if TYPE_CHECKING:
    from sam2_sdk._client import AsyncSam2Client, Sam2Client

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


class _Log:
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


class VideoSession(_Log):
    """One tracking session (sync). Made by `client.videos.session(video)`."""

    def __init__(
        self, client: Sam2Client, video: VideoInfo, info: SessionInfo, source: Clip | None
    ) -> None:
        super().__init__(video, info, source)
        self._client = client

    def add_points(
        self, frame_index: int, object_id: int, points: Points, labels: Labels | None = None
    ) -> TrackedFrame:
        """Points for one object on one frame; they replace its earlier points and box there
        (send all of them), as in SAM2's video predictor."""
        return self._frame("/prompts", self._prompt(frame_index, object_id, points, labels))

    def add_box(
        self,
        frame_index: int,
        object_id: int,
        box: Box,
        points: Points | None = None,
        labels: Labels | None = None,
    ) -> TrackedFrame:
        body = self._prompt(frame_index, object_id, points, labels, box)
        return self._frame("/prompts", body)

    def add_mask(self, frame_index: int, object_id: int, mask: npt.ArrayLike) -> TrackedFrame:
        """A whole mask (H x W booleans, the clip's size) as one object's prompt."""
        return self._frame("/prompts", self._prompt(frame_index, object_id, mask=mask))

    def clear(self, frame_index: int, object_id: int) -> TrackedFrame:
        body = {"frame_index": frame_index, "object_id": object_id}
        return self._frame("/clear", body)

    def remove_object(self, object_id: int) -> None:
        self._replaying("DELETE", f"/objects/{object_id}", None)

    def reset(self) -> None:
        self._replaying("POST", "/reset", None)

    def refresh(self) -> SessionInfo:
        self.info = _valid(SessionInfo, self._replaying("GET", "", None, record=False))
        return self.info

    def propagate(
        self,
        direction: Direction = "both",
        *,
        start_frame_index: int | None = None,
        max_frames: int | None = None,
        final_only: bool = False,
    ) -> Iterator[TrackedFrame]:
        """Every prompted object tracked through the clip, one frame at a time as the server
        tracks it; leaving the loop early stops the tracking. The summary is in `summary`.
        With `direction="both"` the frames between the two starts come twice (`final` False
        the first time); `final_only=True` yields each frame once, with its final masks."""
        body = self._propagation(direction, start_frame_index, max_frames)
        lines = self._client._lines(self._path("/propagate"), body)
        try:
            first = next(lines, None)
        except SessionNotFoundError:
            lines.close()
            self._recreate()
            lines = self._client._lines(self._path("/propagate"), body)
            first = next(lines, None)
        try:
            raw = first
            while raw is not None:
                frame = self._line(raw, final_only)
                if frame is not None:
                    yield frame
                raw = next(lines, None)
        finally:
            lines.close()

    def delete(self) -> None:
        self._client._call("DELETE", self._path())

    def _frame(self, suffix: str, body: dict[str, Any]) -> TrackedFrame:
        return parse_frame(self._replaying("POST", suffix, body))

    def _replaying(
        self, method: str, suffix: str, body: dict[str, Any] | None, *, record: bool = True
    ) -> dict[str, Any]:
        try:
            answer = self._client._call(method, self._path(suffix), body)
        except SessionNotFoundError:
            self._recreate()
            answer = self._client._call(method, self._path(suffix), body)
        if record:
            self._record(method, suffix, body)
        return answer

    def _recreate(self) -> None:
        videos = self._client.videos
        try:
            self.info = videos._open(self.video.video_id)
        except VideoNotFoundError:
            if self.source is None:
                raise
            self.video = videos._upload(self.source)
            self.info = videos._open(self.video.video_id)
        for method, suffix, body in self._log:
            self._client._call(method, self._path(suffix), body)
        self._lost()


class AsyncVideoSession(_Log):
    """One tracking session (async). Made by `await client.videos.session(video)`."""

    def __init__(
        self, client: AsyncSam2Client, video: VideoInfo, info: SessionInfo, source: Clip | None
    ) -> None:
        super().__init__(video, info, source)
        self._client = client

    async def add_points(
        self, frame_index: int, object_id: int, points: Points, labels: Labels | None = None
    ) -> TrackedFrame:
        return await self._frame("/prompts", self._prompt(frame_index, object_id, points, labels))

    async def add_box(
        self,
        frame_index: int,
        object_id: int,
        box: Box,
        points: Points | None = None,
        labels: Labels | None = None,
    ) -> TrackedFrame:
        body = self._prompt(frame_index, object_id, points, labels, box)
        return await self._frame("/prompts", body)

    async def add_mask(self, frame_index: int, object_id: int, mask: npt.ArrayLike) -> TrackedFrame:
        return await self._frame("/prompts", self._prompt(frame_index, object_id, mask=mask))

    async def clear(self, frame_index: int, object_id: int) -> TrackedFrame:
        body = {"frame_index": frame_index, "object_id": object_id}
        return await self._frame("/clear", body)

    async def remove_object(self, object_id: int) -> None:
        await self._replaying("DELETE", f"/objects/{object_id}", None)

    async def reset(self) -> None:
        await self._replaying("POST", "/reset", None)

    async def refresh(self) -> SessionInfo:
        self.info = _valid(SessionInfo, await self._replaying("GET", "", None, record=False))
        return self.info

    async def propagate(
        self,
        direction: Direction = "both",
        *,
        start_frame_index: int | None = None,
        max_frames: int | None = None,
        final_only: bool = False,
    ) -> AsyncIterator[TrackedFrame]:
        body = self._propagation(direction, start_frame_index, max_frames)
        lines = self._client._lines(self._path("/propagate"), body)
        try:
            first = await anext(lines, None)
        except SessionNotFoundError:
            await lines.aclose()
            await self._recreate()
            lines = self._client._lines(self._path("/propagate"), body)
            first = await anext(lines, None)
        try:
            raw = first
            while raw is not None:
                frame = self._line(raw, final_only)
                if frame is not None:
                    yield frame
                raw = await anext(lines, None)
        finally:
            await lines.aclose()

    async def delete(self) -> None:
        await self._client._call("DELETE", self._path())

    async def _frame(self, suffix: str, body: dict[str, Any]) -> TrackedFrame:
        return parse_frame(await self._replaying("POST", suffix, body))

    async def _replaying(
        self, method: str, suffix: str, body: dict[str, Any] | None, *, record: bool = True
    ) -> dict[str, Any]:
        try:
            answer = await self._client._call(method, self._path(suffix), body)
        except SessionNotFoundError:
            await self._recreate()
            answer = await self._client._call(method, self._path(suffix), body)
        if record:
            self._record(method, suffix, body)
        return answer

    async def _recreate(self) -> None:
        videos = self._client.videos
        try:
            self.info = await videos._open(self.video.video_id)
        except VideoNotFoundError:
            if self.source is None:
                raise
            self.video = await videos._upload(self.source)
            self.info = await videos._open(self.video.video_id)
        for method, suffix, body in self._log:
            await self._client._call(method, self._path(suffix), body)
        self._lost()


class Videos:
    """`client.videos`: upload clips and open sessions (sync)."""

    def __init__(self, client: Sam2Client) -> None:
        self._client = client

    def upload(
        self,
        video: ClipInput | None = None,
        *,
        frames: Sequence[ImageInput] | None = None,
        start: float | None = None,
        duration: float | None = None,
        fps: float | None = None,
    ) -> VideoInfo:
        """A clip (MP4/WebM path or bytes) or its frames (images, in order), cut by `start`
        and `duration` (seconds) and thinned to `fps`."""
        return self._upload(clip(video, frames, start, duration, fps))

    def session(self, video: VideoInfo | str) -> VideoSession:
        """A new tracking session on an uploaded clip (a VideoInfo, or its `video_id`)."""
        info = video if isinstance(video, VideoInfo) else self.get(video)
        source = self._client._clips.get(info.video_id)
        return VideoSession(self._client, info, self._open(info.video_id), source)

    def get(self, video_id: str) -> VideoInfo:
        return _valid(VideoInfo, self._client._call("GET", f"/v1/videos/{video_id}"))

    def _upload(self, source: Clip) -> VideoInfo:
        answer = self._client._call("POST", "/v1/videos", files=source.files, data=source.fields)
        info = _valid(VideoInfo, answer)
        keep(self._client._clips, info.video_id, source)
        return info

    def _open(self, video_id: str) -> SessionInfo:
        answer = self._client._call("POST", f"/v1/videos/{video_id}/sessions")
        return _valid(SessionInfo, answer)


class AsyncVideos:
    """`client.videos` of the async client."""

    def __init__(self, client: AsyncSam2Client) -> None:
        self._client = client

    async def upload(
        self,
        video: ClipInput | None = None,
        *,
        frames: Sequence[ImageInput] | None = None,
        start: float | None = None,
        duration: float | None = None,
        fps: float | None = None,
    ) -> VideoInfo:
        return await self._upload(clip(video, frames, start, duration, fps))

    async def session(self, video: VideoInfo | str) -> AsyncVideoSession:
        info = video if isinstance(video, VideoInfo) else await self.get(video)
        source = self._client._clips.get(info.video_id)
        return AsyncVideoSession(self._client, info, await self._open(info.video_id), source)

    async def get(self, video_id: str) -> VideoInfo:
        return _valid(VideoInfo, await self._client._call("GET", f"/v1/videos/{video_id}"))

    async def _upload(self, source: Clip) -> VideoInfo:
        answer = await self._client._call(
            "POST", "/v1/videos", files=source.files, data=source.fields
        )
        info = _valid(VideoInfo, answer)
        keep(self._client._clips, info.video_id, source)
        return info

    async def _open(self, video_id: str) -> SessionInfo:
        answer = await self._client._call("POST", f"/v1/videos/{video_id}/sessions")
        return _valid(SessionInfo, answer)


KEPT_CLIPS = 4
"""Uploaded clips a client keeps (most recent first), to upload again if the server loses one."""


def keep(clips: OrderedDict[str, Clip], video_id: str, source: Clip) -> None:
    clips[video_id] = source
    clips.move_to_end(video_id)
    while len(clips) > KEPT_CLIPS:
        clips.popitem(last=False)
