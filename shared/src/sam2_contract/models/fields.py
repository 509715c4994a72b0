"""Shared pieces of the models: the API's literal types and limits, field validators with their
stable error codes, field descriptions written once, and the strict base of request models.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

ModelName = Literal["tiny", "small", "base-plus", "large"]
Mode = Literal["point", "box", "auto"]
MaskFormat = Literal["bool2d", "rle", "png", "polygon"]
WeightsSource = Literal["huggingface", "local", "random"]

MODEL_IDS: dict[ModelName, str] = {
    "tiny": "facebook/sam2.1-hiera-tiny",
    "small": "facebook/sam2.1-hiera-small",
    "base-plus": "facebook/sam2.1-hiera-base-plus",
    "large": "facebook/sam2.1-hiera-large",
}
"""SAM 2.1 checkpoints on the Hugging Face hub, by the short name the API uses."""

MAX_POINTS = 64
MAX_BOXES = 64
MAX_OBJECTS = 64
MAX_BATCH_ITEMS = 16
IMAGE_ID_PREFIX = "img_"
IMAGE_ID_HEX_LENGTH = 32
MAX_URL_LENGTH = 2048
MASK_ID_PREFIX = "msk_"
MASK_ID_HEX_LENGTH = 24
MASK_ID_DESCRIPTION = (
    "Names this mask's low-resolution logits, kept with the image's embedding (per API key, "
    "for as long as the embedding is cached): send it as `refine` with corrected points. Null "
    "when the embedding could not be cached."
)
RANDOM_WEIGHTS_WARNING = (
    "random weights: this server runs a seeded random-weight checkpoint, so masks are "
    "meaningless; start it with real weights for real segmentation"
)


def _fail(code: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(code, message)


def _crop_grids_exist(points_per_side: int, layers: int, factor: int) -> None:
    """Crop layer n runs a grid of int(points_per_side / factor**n) points a side (sam2's
    rule): a grid of none would be a division by zero in sam2, so it is refused, named."""
    if layers and points_per_side // factor**layers < 1:
        raise _fail(
            "invalid_parameter",
            f"crop layer {layers} would have no grid points: points_per_side={points_per_side} "
            f"/ crop_n_points_downscale_factor={factor}^{layers} is below 1; use "
            f"points_per_side >= {factor**layers}, fewer crop_n_layers or a smaller factor",
        )


def _coordinate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail("invalid_coordinates", "coordinates must be numbers")
    if not math.isfinite(value):
        raise _fail("invalid_coordinates", "coordinates must be finite (no NaN or Infinity)")
    if value < 0:
        raise _fail("invalid_coordinates", "coordinates must not be negative")
    return float(value)


def _check_points(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(p, list | tuple) and len(p) == 2 for p in value
    ):
        raise _fail("invalid_coordinates", "point_coords must be a list of [x, y] pairs")
    if len(value) > MAX_POINTS:
        raise _fail("too_many_prompts", f"at most {MAX_POINTS} points per request")
    return [[_coordinate(x), _coordinate(y)] for x, y in value]


def _check_labels(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _fail("invalid_point_label", "point_labels must be a list of 0 and 1")
    for label in value:
        if isinstance(label, bool) or label not in (0, 1):
            raise _fail("invalid_point_label", f"point label {label!r} is not 0 or 1")
    return [int(label) for label in value]


def _check_box(box: Any) -> list[float]:
    if not isinstance(box, list | tuple) or len(box) != 4:
        raise _fail("invalid_box", "a box is four numbers [x_min, y_min, x_max, y_max]")
    x0, y0, x1, y1 = (_coordinate(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise _fail("invalid_box", "a box needs x_max > x_min and y_max > y_min")
    return [x0, y0, x1, y1]


def _check_one_box(value: Any) -> Any:
    return None if value is None else _check_box(value)


def _check_boxes(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list) and value and all(isinstance(b, list | tuple) for b in value):
        if len(value) > MAX_BOXES:
            raise _fail("too_many_prompts", f"at most {MAX_BOXES} boxes per request")
        return [_check_box(b) for b in value]
    return _check_box(value)


def _hex_id(prefix: str, length: int, code: str, name: str) -> Callable[[Any], Any]:
    """A validator for ids made of `prefix` and `length` lowercase hex digits (or None)."""

    def check(value: Any) -> Any:
        if value is None:
            return None
        hex_part = value[len(prefix) :] if isinstance(value, str) else ""
        if (
            not isinstance(value, str)
            or not value.startswith(prefix)
            or len(hex_part) != length
            or any(c not in "0123456789abcdef" for c in hex_part)
        ):
            raise _fail(code, f"{name} looks like {prefix} followed by {length} hex digits")
        return value

    return check


_check_image_id = _hex_id(IMAGE_ID_PREFIX, IMAGE_ID_HEX_LENGTH, "invalid_image_id", "image_id")
_check_mask_id = _hex_id(MASK_ID_PREFIX, MASK_ID_HEX_LENGTH, "invalid_mask_id", "a mask_id")


Point = Annotated[list[float], Field(min_length=2, max_length=2)]
Box = Annotated[list[float], Field(min_length=4, max_length=4)]
PointList = Annotated[list[Point] | None, BeforeValidator(_check_points)]
LabelList = Annotated[list[int] | None, BeforeValidator(_check_labels)]
MaskId = Annotated[str | None, BeforeValidator(_check_mask_id)]
POINTS_DESCRIPTION = "Points as [x, y] pixels of the original image."
LABELS_DESCRIPTION = "One label per point: 1 foreground, 0 background. Omitted: all 1."
REFINE_DESCRIPTION = (
    "The `mask_id` of an earlier answer on the same image: its low-resolution logits go into "
    "SAM2 as `mask_input`, so these points correct that mask instead of starting over (send "
    "all the object's points, as in SAM2's demo)."
)


def _labels_match(points: list[list[float]] | None, labels: list[int] | None) -> None:
    if labels is not None and len(labels) != len(points or []):
        raise _fail("point_labels_mismatch", f"{len(points or [])} points but {len(labels)} labels")


def _default_labels(points: list[list[float]] | None, labels: list[int] | None) -> list[int] | None:
    if points is None:
        return None
    return labels if labels is not None else [1] * len(points)


class _Model(BaseModel):
    """A request model: unknown fields refused, and JSON types taken as they are (strict: no
    `"yes"` for a boolean, no `true` for a number, no `64.0` for a count)."""

    model_config = ConfigDict(extra="forbid", strict=True)
