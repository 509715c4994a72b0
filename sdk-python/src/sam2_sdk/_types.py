"""What the client takes and gives: input types, automatic-mode options, and results parsed
with the API contract's models (`sam2_contract`), masks decoded to numpy boolean arrays."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict, TypeVar

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydantic import BaseModel, ValidationError
from sam2_contract.masks import decode_mask
from sam2_contract.models import (
    AutoSegmentResponse,
    BatchSegmentResponse,
    ModelInfo,
    ModelName,
    PolygonMask,
    Problem,
    PromptSegmentResponse,
    Timings,
)
from sam2_contract.overlay import RenderFormat
from sam2_contract.polygons import DEFAULT_TOLERANCE, encode_polygons

from sam2_sdk._exceptions import APIResponseValidationError

ImageInput = str | os.PathLike[str] | bytes | Image.Image | npt.NDArray[Any]
# Coordinates as lists, tuples or numpy arrays (numpy scalars inside are fine too).
Points = Sequence[Sequence[float]] | npt.NDArray[Any]
Labels = Sequence[int] | npt.NDArray[Any]
Box = Sequence[float] | npt.NDArray[Any]
BoolMask = npt.NDArray[np.bool_]


class AutoOptions(TypedDict, total=False):
    """Automatic mode's options: the API's fields of the same names (defaults and limits in
    docs/api.md); omitted, the service's defaults."""

    points_per_side: int
    points_per_batch: int
    pred_iou_thresh: float
    stability_score_thresh: float
    stability_score_offset: float
    box_nms_thresh: float
    crop_n_layers: int
    crop_nms_thresh: float
    crop_overlap_ratio: float
    crop_n_points_downscale_factor: int
    min_mask_region_area: int
    use_m2m: bool
    model: ModelName
    render: RenderFormat


class SegmentObject(TypedDict, total=False):
    """One object of several segmented in one call (`segment(objects=[...])`): its own points
    and/or one box, and the `mask_id` it corrects."""

    points: Points
    labels: Labels
    box: Box
    refine: str


OBJECT_KEYS = frozenset(SegmentObject.__annotations__)


@dataclass(frozen=True)
class BoxPrediction:
    """One box's or object's answer, for a list of boxes or `objects`."""

    mask: BoolMask
    score: float
    all_scores: list[float]
    mask_id: str | None = None
    """Send as `refine` to correct this mask."""


class _MaskExports:
    """What a result with one `mask` can be turned into."""

    mask: BoolMask

    def to_pil(self) -> Image.Image:
        return Image.fromarray(self.mask)

    def to_polygons(self, tolerance: float = DEFAULT_TOLERANCE) -> PolygonMask:
        """The mask's outer boundaries and holes along pixel edges, as the API's `polygon`
        format gives them (tolerance 0: exact), e.g. for CVAT or Label Studio."""
        return encode_polygons(self.mask, tolerance)


@dataclass(frozen=True, kw_only=True)
class _Answer:
    """What every answer says besides its masks."""

    image_shape: tuple[int, int]
    image_id: str
    cached: bool
    model: ModelInfo
    timings: Timings
    warnings: list[str]
    overlay: Image.Image | None = None
    """With `render=`: the image with the masks drawn (a preview, long side at most 1024 px)."""

    @property
    def timings_ms(self) -> dict[str, float]:
        return self.timings.model_dump()


@dataclass(frozen=True, kw_only=True)
class Segmentation(_Answer, _MaskExports):
    """A point or box answer: the best mask, and each box's or object's answer for a list of
    boxes or `objects`, in order."""

    mask: BoolMask
    score: float
    all_scores: list[float]
    mask_id: str | None = None
    """Send as `refine=` with corrected points to improve this mask instead of starting over."""
    predictions: list[BoxPrediction] = field(default_factory=list)
    response: PromptSegmentResponse = field(repr=False)
    """The answer as the contract's model (masks as sent: RLE)."""

    @property
    def masks(self) -> list[BoolMask]:
        """Each box's or object's best mask, for a list of boxes or `objects`."""
        return [prediction.mask for prediction in self.predictions]


@dataclass(frozen=True)
class AutoMaskResult(_MaskExports):
    mask: BoolMask
    area: int
    bbox: list[float]
    predicted_iou: float
    stability_score: float
    point_coords: list[list[float]]
    crop_box: list[float]


@dataclass(frozen=True, kw_only=True)
class AutoSegmentation(_Answer):
    """An automatic-mode answer: every mask found."""

    masks: list[AutoMaskResult]
    response: AutoSegmentResponse = field(repr=False)


@dataclass(frozen=True)
class BatchItemError:
    """One batch item that failed; the others still ran."""

    status: int
    code: str
    detail: str
    hint: str | None
    problem: Problem | None = field(default=None, repr=False)


BatchResult = Segmentation | AutoSegmentation | BatchItemError


def parse_prompt(answer: dict[str, Any]) -> Segmentation:
    return prompt_result(_valid(PromptSegmentResponse, answer))


def parse_auto(answer: dict[str, Any]) -> AutoSegmentation:
    return _auto(_valid(AutoSegmentResponse, answer))


def parse_batch(answer: dict[str, Any]) -> list[BatchResult]:
    results: list[BatchResult] = []
    for item in _valid(BatchSegmentResponse, answer).results:
        if isinstance(item.result, PromptSegmentResponse):
            results.append(prompt_result(item.result))
        elif isinstance(item.result, AutoSegmentResponse):
            results.append(_auto(item.result))
        else:
            problem = item.error
            assert problem is not None  # the contract: a result or an error
            results.append(
                BatchItemError(item.status, problem.code, problem.detail, problem.hint, problem)
            )
    return results


_M = TypeVar("_M", bound=BaseModel)


def _valid(model: type[_M], answer: dict[str, Any]) -> _M:
    try:
        return model.model_validate(answer)
    except ValidationError as exc:
        raise APIResponseValidationError(
            f"the service's answer is not a {model.__name__} as the API contract defines it "
            f"(is the SDK newer than the service?): {exc}"
        ) from exc


def _common(response: PromptSegmentResponse | AutoSegmentResponse) -> dict[str, Any]:
    return {
        "image_shape": (int(response.image_shape[0]), int(response.image_shape[1])),
        "image_id": response.image_id,
        "cached": response.cached,
        "model": response.model,
        "timings": response.timings_ms,
        "warnings": response.warnings,
        "overlay": _picture(response.overlay) if response.overlay else None,
        "response": response,
    }


def _picture(data: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image


def prompt_result(response: PromptSegmentResponse) -> Segmentation:
    """A point or box answer, from the contract's model."""
    return Segmentation(
        mask=decode_mask(response.mask),
        score=response.score,
        all_scores=response.all_scores,
        mask_id=response.mask_id,
        predictions=[
            BoxPrediction(decode_mask(p.mask), p.score, p.all_scores, p.mask_id)
            for p in response.predictions or []
        ],
        **_common(response),
    )


def _auto(response: AutoSegmentResponse) -> AutoSegmentation:
    return AutoSegmentation(
        masks=[
            AutoMaskResult(
                mask=decode_mask(m.segmentation),
                area=m.area,
                bbox=m.bbox,
                predicted_iou=m.predicted_iou,
                stability_score=m.stability_score,
                point_coords=m.point_coords,
                crop_box=m.crop_box,
            )
            for m in response.masks
        ],
        **_common(response),
    )
