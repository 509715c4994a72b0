"""`client.videos`: upload clips and track objects through them, sync and async. Resources on
the client's public request primitives (_resource.py); everything but the I/O is in
_video_log.py, shared by both."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import numpy.typing as npt
from sam2_contract.video import SessionInfo, VideoInfo

from sam2_sdk._exceptions import SessionNotFoundError, VideoNotFoundError
from sam2_sdk._resource import AsyncAPIResource, AsyncRequester, SyncAPIResource, SyncRequester
from sam2_sdk._types import Box, ImageInput, Labels, Points, _valid
from sam2_sdk._video_log import (
    Clip,
    ClipInput,
    ClipMemory,
    Direction,
    SessionLog,
    TrackedFrame,
    clip,
    parse_frame,
)


class Videos(SyncAPIResource):
    """`client.videos`: upload clips and open sessions (sync)."""

    def __init__(self, client: SyncRequester) -> None:
        super().__init__(client)
        self._clips = ClipMemory()

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
        source = self._clips.get(info.video_id)
        return VideoSession(self, info, self._open(info.video_id), source)

    def get(self, video_id: str) -> VideoInfo:
        return _valid(VideoInfo, self._request("GET", f"/v1/videos/{video_id}"))

    def frame(self, video_id: str, frame_index: int) -> bytes:
        """One frame of an uploaded clip, as the image file it is stored as (JPEG or PNG)."""
        return self._download(f"/v1/videos/{video_id}/frames/{int(frame_index)}")

    def _upload(self, source: Clip) -> VideoInfo:
        answer = self._request("POST", "/v1/videos", files=source.files, fields=source.fields)
        info = _valid(VideoInfo, answer)
        self._clips.keep(info.video_id, source)
        return info

    def _open(self, video_id: str) -> SessionInfo:
        answer = self._request("POST", f"/v1/videos/{video_id}/sessions")
        return _valid(SessionInfo, answer)


class AsyncVideos(AsyncAPIResource):
    """`client.videos` of the async client."""

    def __init__(self, client: AsyncRequester) -> None:
        super().__init__(client)
        self._clips = ClipMemory()

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
        source = self._clips.get(info.video_id)
        return AsyncVideoSession(self, info, await self._open(info.video_id), source)

    async def get(self, video_id: str) -> VideoInfo:
        return _valid(VideoInfo, await self._request("GET", f"/v1/videos/{video_id}"))

    async def frame(self, video_id: str, frame_index: int) -> bytes:
        """One frame of an uploaded clip, as the image file it is stored as (JPEG or PNG)."""
        return await self._download(f"/v1/videos/{video_id}/frames/{int(frame_index)}")

    async def _upload(self, source: Clip) -> VideoInfo:
        answer = await self._request("POST", "/v1/videos", files=source.files, fields=source.fields)
        info = _valid(VideoInfo, answer)
        self._clips.keep(info.video_id, source)
        return info

    async def _open(self, video_id: str) -> SessionInfo:
        answer = await self._request("POST", f"/v1/videos/{video_id}/sessions")
        return _valid(SessionInfo, answer)


class VideoSession(SessionLog):
    """One tracking session (sync). Made by `client.videos.session(video)`."""

    def __init__(
        self, videos: Videos, video: VideoInfo, info: SessionInfo, source: Clip | None
    ) -> None:
        super().__init__(video, info, source)
        self._videos = videos

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
        lines = self._videos._stream(self._path("/propagate"), body)
        try:
            first = next(lines, None)
        except SessionNotFoundError:
            lines.close()
            self._recreate()
            lines = self._videos._stream(self._path("/propagate"), body)
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
        self._videos._request("DELETE", self._path())

    def _frame(self, suffix: str, body: dict[str, Any]) -> TrackedFrame:
        return parse_frame(self._replaying("POST", suffix, body))

    def _replaying(
        self, method: str, suffix: str, body: dict[str, Any] | None, *, record: bool = True
    ) -> dict[str, Any]:
        try:
            answer = self._videos._request(method, self._path(suffix), body=body)
        except SessionNotFoundError:
            self._recreate()
            answer = self._videos._request(method, self._path(suffix), body=body)
        if record:
            self._record(method, suffix, body)
        return answer

    def _recreate(self) -> None:
        videos = self._videos
        try:
            self.info = videos._open(self.video.video_id)
        except VideoNotFoundError:
            if self.source is None:
                raise
            self.video = videos._upload(self.source)
            self.info = videos._open(self.video.video_id)
        for method, suffix, body in self._replayed():
            self._videos._request(method, self._path(suffix), body=body)
        self._lost()


class AsyncVideoSession(SessionLog):
    """One tracking session (async). Made by `await client.videos.session(video)`."""

    def __init__(
        self, videos: AsyncVideos, video: VideoInfo, info: SessionInfo, source: Clip | None
    ) -> None:
        super().__init__(video, info, source)
        self._videos = videos

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
        lines = self._videos._stream(self._path("/propagate"), body)
        try:
            first = await anext(lines, None)
        except SessionNotFoundError:
            await lines.aclose()
            await self._recreate()
            lines = self._videos._stream(self._path("/propagate"), body)
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
        await self._videos._request("DELETE", self._path())

    async def _frame(self, suffix: str, body: dict[str, Any]) -> TrackedFrame:
        return parse_frame(await self._replaying("POST", suffix, body))

    async def _replaying(
        self, method: str, suffix: str, body: dict[str, Any] | None, *, record: bool = True
    ) -> dict[str, Any]:
        try:
            answer = await self._videos._request(method, self._path(suffix), body=body)
        except SessionNotFoundError:
            await self._recreate()
            answer = await self._videos._request(method, self._path(suffix), body=body)
        if record:
            self._record(method, suffix, body)
        return answer

    async def _recreate(self) -> None:
        videos = self._videos
        try:
            self.info = await videos._open(self.video.video_id)
        except VideoNotFoundError:
            if self.source is None:
                raise
            self.video = await videos._upload(self.source)
            self.info = await videos._open(self.video.video_id)
        for method, suffix, body in self._replayed():
            await self._videos._request(method, self._path(suffix), body=body)
        self._lost()
