"""What segmenting answers: masks in their formats, the two original response shapes with their
extensions, batch results, and problem documents.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from sam2_contract.models.fields import (
    MASK_ID_DESCRIPTION,
    MaskFormat,
    Mode,
    ModelName,
    WeightsSource,
    _Model,
)


class RLEMask(_Model):
    """COCO run-length encoding, byte-compatible with `pycocotools.mask.encode`."""

    size: list[int] = Field(description="[height, width]", min_length=2, max_length=2)
    counts: str = Field(description="Compressed COCO RLE counts string.")


class Polygon(_Model):
    """One piece of a mask: its outer boundary and the holes inside it."""

    exterior: list[list[int]] = Field(
        description="[x, y] pixel corners, clockwise on screen (y down); the ring closes itself."
    )
    holes: list[list[list[int]]] = Field(description="Rings of [x, y], counter-clockwise.")


class PolygonMask(_Model):
    """A mask as polygons along pixel edges: pixel (row r, column c) is the square from (c, r)
    to (c + 1, r + 1). Filling the pixels whose centres lie inside gives the mask back (exactly
    at `polygon_tolerance` 0)."""

    size: list[int] = Field(description="[height, width]", min_length=2, max_length=2)
    polygons: list[Polygon]


Mask = list[list[bool]] | RLEMask | PolygonMask | str
"""A mask as `bool2d` (rows of booleans), `rle` (RLEMask), `polygon` (PolygonMask) or `png`
(base64 PNG)."""


Pipeline = Literal["exact", "fast"]


class ModelInfo(BaseModel):
    """Which model answered, and whether its weights are real."""

    name: ModelName
    model_id: str = Field(description="The Hugging Face id of the SAM 2.1 checkpoint.")
    weights: WeightsSource = Field(description="Where the weights came from.")
    random_weights: bool = Field(
        description="True when the checkpoint is seeded random weights: masks are meaningless."
    )
    device: str = Field(description="cuda, mps or cpu.")
    dtype: str = Field(description="Compute precision, e.g. bfloat16 or float32.")
    pipeline: Pipeline = Field(
        default="exact",
        description="`exact`: SAM2's own predictor code, step for step. `fast`: the work after "
        "the model (choosing a click's best mask, upsampling, thresholding, RLE) done on the "
        "device; the same masks on the CPU.",
    )


class Timings(BaseModel):
    """Where the server spent the request's time, in milliseconds."""

    decode_ms: float = Field(description="Decoding the image (0 for an `image_id`).")
    embed_ms: float = Field(description="The image encoder (0 when the embedding was cached).")
    predict_ms: float = Field(description="Prompt encoding, mask decoding and post-processing.")
    encode_ms: float = Field(description="Encoding masks into `mask_format`.")
    total_ms: float


class _Extensions(BaseModel):
    """Fields added to both original response shapes."""

    mode: Mode
    mask_format: MaskFormat
    image_id: str = Field(description="Send this instead of `image` to reuse the embedding.")
    model: ModelInfo
    cached: bool = Field(description="Whether the image embedding came from the cache.")
    timings_ms: Timings
    warnings: list[str] = Field(default_factory=list)
    overlay: str | None = Field(
        default=None,
        description="With `render`: a base64 PNG or JPEG of the image with the masks drawn (each "
        "in its own colour, outlined; points and boxes on top), the long side at most 1024 px.",
    )


class PromptPrediction(BaseModel):
    """The answer for one box of a box list, or one of `objects`."""

    mask: Mask
    score: float
    all_scores: list[float]
    all_masks: list[Mask] | None = None
    mask_id: str | None = Field(default=None, description=MASK_ID_DESCRIPTION)


class PromptSegmentResponse(_Extensions):
    """Point and box mode: the original `{mask, score, all_scores, image_shape}` and more."""

    mask: Mask = Field(
        description="The highest-scoring mask (of the first box or object in a list)."
    )
    score: float = Field(description="SAM2's predicted IoU of `mask`.")
    all_scores: list[float] = Field(description="Predicted IoU of every candidate mask.")
    image_shape: list[int] = Field(description="[height, width] of the original image.")
    all_masks: list[Mask] | None = Field(
        default=None, description="Every candidate mask, when `return_all_masks` was set."
    )
    predictions: list[PromptPrediction] | None = Field(
        default=None,
        description="One entry per box or object, in order, when `box_coords` was a list of "
        "boxes or `objects` was sent.",
    )
    mask_id: str | None = Field(default=None, description=MASK_ID_DESCRIPTION)


class AutoMask(BaseModel):
    """One mask of automatic mode, with the fields SAM2AutomaticMaskGenerator returns."""

    segmentation: Mask
    area: int = Field(description="Mask area in pixels.")
    bbox: list[float] = Field(description="[x, y, width, height] around the mask.")
    predicted_iou: float
    stability_score: float
    point_coords: list[list[float]] = Field(description="The grid point that produced it.")
    crop_box: list[float] = Field(description="The crop it came from, [x, y, width, height].")


class AutoSegmentResponse(_Extensions):
    """Auto mode: the original `{masks, count, image_shape}` and more."""

    masks: list[AutoMask]
    count: int
    image_shape: list[int] = Field(description="[height, width] of the original image.")


SegmentResponse = PromptSegmentResponse | AutoSegmentResponse


def mask_count(response: SegmentResponse) -> int:
    """How many masks a response answers with (one per box, or per auto mask)."""
    if isinstance(response, AutoSegmentResponse):
        return response.count
    return len(response.predictions) if response.predictions else 1


class FieldError(BaseModel):
    """One problem with one field of the request."""

    loc: list[str | int] = Field(description='Path to the field, e.g. ["point_labels", 1].')
    msg: str
    code: str


class Problem(BaseModel):
    """An RFC 9457 problem document; `code` is stable and `hint` says what to do."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    hint: str
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] | None = None


class BatchItemResult(BaseModel):
    """The outcome of one batch item: a response, or the problem it would have returned."""

    index: int
    status: int
    result: SegmentResponse | None = None
    error: Problem | None = None


class BatchSegmentResponse(BaseModel):
    results: list[BatchItemResult]
    count: int
