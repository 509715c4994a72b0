"""Clips stored by content hash in a folder per tenant, as their frames' image files (uploaded
JPEG/PNG as sent, decoded clips as PNG, lossless): a session reads them back as sam2's own loader
would read a folder of them."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from sam2_contract.errors import ErrorCode, InvalidRequestError, NotFoundError
from sam2_contract.video import VideoInfo

from sam2_inference.runtime.volume import VolumeGuard
from sam2_inference.video.clips import frame_size, invalid_video

VIDEO_ID = re.compile(r"^vid_[0-9a-f]{32}$")


class VideoStore:
    """Clips by content hash, in a folder per tenant. On Modal the folder is a Volume that every
    container mounts: `on_stored` commits it after a clip is written (other containers then see
    it), `on_missing` reloads it before a clip is declared missing (one another container
    stored since this one last looked), each with no file of it open (runtime/volume.py)."""

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
        width, height = frame_size(files[0])
        for index, data in enumerate(files[1:], start=1):
            if frame_size(data) != (width, height):
                raise invalid_video(
                    f"frame {index} is {frame_size(data)[0]}x{frame_size(data)[1]}, frame 0 is "
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
