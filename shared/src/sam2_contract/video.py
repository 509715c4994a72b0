"""The video API's contract (issue 14): clips, tracking sessions, prompts and the propagation
stream. One clip is uploaded once (`VideoInfo`); a session tracks objects through it; prompts
answer every object's mask on their frame; propagation streams one `FrameResult` per frame as
NDJSON, then one `PropagationSummary`.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from sam2_contract.errors import ErrorCode, InvalidRequestError
from sam2_contract.models import Mask, MaskFormat
from sam2_contract.models.fields import (
    _check_box,
    _check_labels,
    _check_points,
    _default_labels,
    _fail,
    _labels_match,
    _Model,
)

Direction = Literal["forward", "backward", "both"]
VIDEO_ID_PREFIX, SESSION_ID_PREFIX = "vid_", "ses_"
NDJSON = "application/x-ndjson"
MAX_OBJECT_ID = 2**31 - 1


def session_id(video_id: str) -> str:
    """A new session's id: its video's hash, then 32 random hex digits. A session lives in one
    process; carrying its video's id lets the gateway route each of its requests as it routed
    the session's creation (by tenant and video), without a table of sessions."""
    return SESSION_ID_PREFIX + video_id.removeprefix(VIDEO_ID_PREFIX) + secrets.token_hex(16)


def video_of_session(session_id: str) -> str | None:
    """The video id a session id carries, or None for a malformed id."""
    digits = session_id.removeprefix(SESSION_ID_PREFIX)
    if digits == session_id or len(digits) != 64 or not _is_hex(digits):
        return None
    return VIDEO_ID_PREFIX + digits[:32]


def path_index(value: str, name: str) -> int:
    """A frame index or object id from a URL path, or the problem a client should get (the
    framework's own validation error is not a problem document)."""
    if not value.isascii() or not value.isdigit() or int(value) > MAX_OBJECT_ID:
        raise InvalidRequestError(
            f"`{name}` must be a whole number from 0 to {MAX_OBJECT_ID}, not {value[:40]!r}",
            code=ErrorCode.INVALID_PARAMETER,
        )
    return int(value)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


class VideoInfo(BaseModel):
    """An uploaded clip, stored by content hash: equal frames, equal `video_id`."""

    video_id: str = Field(description="`vid_` and 32 hex digits.")
    num_frames: int
    width: int
    height: int
    fps: float | None = Field(default=None, description="Frames per second, where known.")


class SessionInfo(BaseModel):
    """A tracking session over one clip."""

    session_id: str = Field(description="`ses_` and 64 hex digits (its video's, then its own).")
    video_id: str
    num_frames: int
    object_ids: list[int] = Field(description="The objects prompted so far, in order.")
    prompted_frames: list[int] = Field(description="Frames holding prompts, in order.")
    propagating: bool = Field(description="A propagation stream is running (others get 409).")
    expires_at: datetime = Field(
        description="When the session ends if unused; each request moves it on, up to its "
        "hard lifetime."
    )


class VideoPrompt(_Model):
    """Points and/or a box, or a whole mask, for one object on one frame; it replaces that
    object's earlier prompt on that frame (send all of its points), as in SAM2."""

    frame_index: int = Field(ge=0)
    object_id: int = Field(ge=0, le=MAX_OBJECT_ID, description="Your id for the object.")
    point_coords: list[list[float]] | None = Field(
        default=None, description="[[x, y], ...] in the clip's pixels."
    )
    point_labels: list[int] | None = Field(
        default=None, description="1 foreground, 0 background; default all 1."
    )
    box_coords: list[float] | None = Field(default=None, description="[x0, y0, x1, y1].")
    mask: Mask | None = Field(
        default=None,
        description="A whole mask for the object (any mask format, at the clip's size) instead "
        "of points or a box.",
    )
    mask_format: MaskFormat = "rle"

    _points = field_validator("point_coords", mode="before")(_check_points)
    _labels = field_validator("point_labels", mode="before")(_check_labels)

    @field_validator("box_coords", mode="before")
    @classmethod
    def _box(cls, value: object) -> object:
        return None if value is None else _check_box(value)

    @model_validator(mode="after")
    def _one_kind(self) -> VideoPrompt:
        clicks = self.point_coords is not None or self.box_coords is not None
        if self.mask is not None and clicks:
            raise _fail("invalid_request", "send `mask` alone, or points and/or a box")
        if self.mask is None and not clicks:
            raise _fail("missing_prompt", "send `point_coords`, `box_coords` or `mask`")
        if self.point_labels is not None and self.point_coords is None:
            raise _fail("missing_points", "`point_labels` needs `point_coords`")
        if self.point_coords is not None:
            _labels_match(self.point_coords, self.point_labels)
            self.point_labels = _default_labels(self.point_coords, self.point_labels)
        return self


class ClearPromptsRequest(_Model):
    """Remove one object's points, box and mask on one frame."""

    frame_index: int = Field(ge=0)
    object_id: int = Field(ge=0, le=MAX_OBJECT_ID)
    mask_format: MaskFormat = "rle"


class PropagateRequest(_Model):
    """Track every prompted object through the clip."""

    start_frame_index: int | None = Field(
        default=None,
        ge=0,
        description="Default: the first prompted frame (forward), the last (backward).",
    )
    direction: Direction = Field(
        default="both", description="`both`: forward, then backward, so the whole clip is covered."
    )
    max_frames: int | None = Field(default=None, ge=1, description="Frames per direction.")
    mask_format: MaskFormat = "rle"


class TrackedObject(BaseModel):
    """One object on one frame."""

    object_id: int
    mask: Mask
    area: int = Field(description="Pixels in the mask.")
    bbox: list[int] = Field(description="[x, y, width, height] of the mask (zeros if empty).")
    visible: bool = Field(description="The mask is not empty.")


class FrameResult(BaseModel):
    """Every object's mask on one frame: a prompt's answer, and each line of a propagation."""

    frame_index: int
    objects: list[TrackedObject]
    final: bool = Field(
        default=True,
        description="False on a propagation line whose frame a later pass of the same "
        "propagation tracks again (`direction: both`: the frames between the forward and the "
        "backward start come twice, and the backward pass's masks are the ones kept); skip "
        "these lines to have each frame once, with its final masks.",
    )


class PropagationSummary(BaseModel):
    """The last line of a propagation stream."""

    done: Literal[True] = True
    frames: int = Field(description="Frame lines sent.")
    object_ids: list[int]
    model_ms: float
