"""Request and response models of the v1 API.

The original spec's request fields and its two response shapes are kept exactly; everything
else is an optional extension with a default that preserves the original behaviour. Field
descriptions live here once and flow into OpenAPI and both SDKs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from sam2_contract.overlay import RenderFormat

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


def _one_image(
    image: str | None, image_url: str | None, image_id: str | None, *, required: bool
) -> None:
    given = [
        name
        for name, v in (("image", image), ("image_url", image_url), ("image_id", image_id))
        if v is not None
    ]
    if required and not given:
        raise _fail("missing_image", "send `image`, `image_url` or `image_id`")
    if len(given) > 1:
        raise _fail(
            "image_and_image_id",
            f"send one of `image`, `image_url` or `image_id`, not {' and '.join(given)}",
        )


class ObjectPrompt(_Model):
    """One object of `objects`: its own points and/or one box, answered with one mask."""

    point_coords: PointList = Field(default=None, description=POINTS_DESCRIPTION)
    point_labels: LabelList = Field(default=None, description=LABELS_DESCRIPTION)
    box_coords: Annotated[Box | None, BeforeValidator(_check_one_box)] = Field(
        default=None, description="One box [x_min, y_min, x_max, y_max] around the object."
    )
    refine: MaskId = Field(default=None, description=REFINE_DESCRIPTION)

    @model_validator(mode="after")
    def _check_prompt(self) -> Self:
        if not self.point_coords and self.box_coords is None:
            raise _fail("missing_prompt", "an object needs `point_coords` or `box_coords`")
        _labels_match(self.point_coords, self.point_labels)
        return self

    @property
    def labels(self) -> list[int] | None:
        """`point_labels`, defaulting to all foreground."""
        return _default_labels(self.point_coords, self.point_labels)


def _check_objects(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _fail("invalid_request", "`objects` is a list of prompt sets, one per object")
    if not value:
        raise _fail("missing_prompt", "`objects` is empty: send at least one object")
    if len(value) > MAX_OBJECTS:
        raise _fail("too_many_prompts", f"at most {MAX_OBJECTS} objects per request")
    return value


class SegmentRequest(_Model):
    """One image (or an earlier `image_id`) and what to segment in it."""

    image: str | None = Field(
        default=None,
        description="The image file (PNG, JPEG, WebP, BMP, TIFF or GIF), base64-encoded. "
        "A `data:image/...;base64,` prefix is accepted.",
        json_schema_extra={"contentEncoding": "base64"},
    )
    image_url: str | None = Field(
        default=None,
        max_length=MAX_URL_LENGTH,
        description="An https URL of the image, fetched by the gateway (public addresses only, "
        "redirects re-checked, size and time limited; see the API reference).",
        examples=["https://example.com/photo.jpg"],
    )
    image_id: Annotated[str | None, BeforeValidator(_check_image_id)] = Field(
        default=None,
        description="The `image_id` of an earlier response: reuses its cached embedding, so "
        "no image bytes travel. Answered with `image_not_cached` when it has expired.",
    )
    mode: Mode = Field(
        default="point",
        description="`point` or `box` prompts, or `auto` to segment everything.",
    )
    point_coords: PointList = Field(
        default=None, description=POINTS_DESCRIPTION, examples=[[[100, 150], [200, 250]]]
    )
    point_labels: LabelList = Field(default=None, description=LABELS_DESCRIPTION, examples=[[1, 0]])
    box_coords: Annotated[Box | list[Box] | None, BeforeValidator(_check_boxes)] = Field(
        default=None,
        description="One box [x_min, y_min, x_max, y_max] in pixels, or a list of boxes "
        "(one mask per box, listed in `predictions`).",
        examples=[[50, 60, 300, 400]],
    )
    refine: MaskId = Field(default=None, description=REFINE_DESCRIPTION)
    objects: Annotated[list[ObjectPrompt] | None, BeforeValidator(_check_objects)] = Field(
        default=None,
        description="Several objects in one call: each its own points and/or one box (and "
        "`refine`), answered with one mask each in `predictions`, in order, decoded together. "
        "Replaces the top-level `point_coords`, `point_labels`, `box_coords` and `refine`.",
        max_length=MAX_OBJECTS,
        examples=[[{"point_coords": [[100, 150]]}, {"box_coords": [50, 60, 300, 400]}]],
    )
    multimask_output: bool = Field(
        default=True,
        description="Ask SAM2 for three candidate masks per prompt and return the best; "
        "false asks for one (better for unambiguous prompts such as several points).",
    )
    return_all_masks: bool = Field(
        default=False,
        description="Also return every candidate mask in `all_masks`, in `all_scores` order.",
    )
    mask_format: MaskFormat = Field(
        default="bool2d",
        description="`bool2d`: nested lists of booleans (the original format); `rle`: COCO "
        "RLE as pycocotools writes it; `png`: a base64 1-bit PNG; `polygon`: outer boundaries "
        "and holes along pixel edges (what labelling tools import).",
    )
    polygon_tolerance: float = Field(
        default=1.0,
        ge=0,
        le=100,
        description="`polygon` masks: Douglas-Peucker tolerance in pixels (no dropped corner is "
        "farther than this from the polygon); 0 keeps every corner, so the polygons give the "
        "mask back exactly.",
    )
    render: RenderFormat | None = Field(
        default=None,
        description="Also return `overlay`: the image with its masks (and prompts) drawn, as a "
        "base64 `png` or `jpeg` preview whose long side is at most 1024 px.",
    )
    model: ModelName | None = Field(
        default=None, description="Which SAM 2.1 model; omitted: the one the server serves."
    )
    points_per_batch: int = Field(
        default=64,
        ge=1,
        le=1024,
        description="Auto mode: grid points run through SAM2 at once; lowered (and said in "
        "`warnings`) when that many would not fit the server's memory budget. Omitted: 64, or "
        "up to 1024 where the server runs the fast pipeline (a GPU); the masks are the same.",
    )
    points_per_side: int = Field(
        default=32, ge=1, le=128, description="Auto mode: the point grid is this many per side."
    )
    pred_iou_thresh: float = Field(
        default=0.8, ge=0, le=1, description="Auto mode: drop masks whose predicted IoU is lower."
    )
    stability_score_thresh: float = Field(
        default=0.95, ge=0, le=1, description="Auto mode: drop masks less stable than this."
    )
    stability_score_offset: float = Field(
        default=1.0, ge=0, le=100, description="Auto mode: logit offset for the stability score."
    )
    box_nms_thresh: float = Field(
        default=0.7, ge=0, le=1, description="Auto mode: box IoU above which duplicates go."
    )
    crop_n_layers: int = Field(
        default=0, ge=0, le=3, description="Auto mode: also run on 4^n crops per layer n."
    )
    crop_nms_thresh: float = Field(
        default=0.7, ge=0, le=1, description="Auto mode: box IoU for duplicates across crops."
    )
    crop_overlap_ratio: float = Field(
        default=512 / 1500, ge=0, lt=1, description="Auto mode: how much crops overlap."
    )
    crop_n_points_downscale_factor: int = Field(
        default=1,
        ge=1,
        le=8,
        description="Auto mode: grid shrink factor per crop layer (layer n has "
        "points_per_side / factor^n points a side: at least 1, else 422).",
    )
    min_mask_region_area: int = Field(
        default=0,
        ge=0,
        le=100_000_000,
        description="Auto mode: remove islands and fill holes smaller than this many pixels.",
    )
    use_m2m: bool = Field(
        default=False, description="Auto mode: one extra refinement pass with its own masks."
    )

    @model_validator(mode="after")
    def _check_combination(self) -> Self:
        _one_image(self.image, self.image_url, self.image_id, required=True)
        if self.image is not None and not self.image.strip():
            raise _fail("missing_image", "`image` is empty")
        if self.mode == "auto":
            if self.refine is not None:
                raise _fail("refine_not_allowed", "`refine` is for point and box mode")
            if self.objects is not None:
                raise _fail("objects_not_allowed", "`objects` is for point and box mode")
            _crop_grids_exist(
                self.points_per_side, self.crop_n_layers, self.crop_n_points_downscale_factor
            )
            return self
        if self.objects is not None:
            given = [
                name
                for name in ("point_coords", "point_labels", "box_coords", "refine")
                if getattr(self, name) is not None
            ]
            if given:
                raise _fail(
                    "objects_with_prompts",
                    f"`objects` replaces the top-level {', '.join(given)}: move them into "
                    "an object",
                )
            return self
        if self.mode == "point" and not self.point_coords:
            raise _fail("missing_points", "point mode needs `point_coords`")
        if self.mode == "box" and self.box_coords is None:
            raise _fail("missing_box", "box mode needs `box_coords`")
        _labels_match(self.point_coords, self.point_labels)
        if self.point_coords and self.box_list_given and len(self.boxes or []) > 1:
            raise _fail("points_with_multiple_boxes", "points combine with one box only")
        if self.refine is not None and len(self.boxes or []) > 1:
            raise _fail("refine_not_allowed", "`refine` corrects one object: send one box")
        return self

    @property
    def box_list_given(self) -> bool:
        """Whether `box_coords` came as a list of boxes (answered with `predictions`)."""
        return bool(self.box_coords) and isinstance(self.box_coords[0], list)  # type: ignore[index]

    @property
    def boxes(self) -> list[list[float]] | None:
        """`box_coords` as a list of boxes, whichever form it came in."""
        if self.box_coords is None:
            return None
        if self.box_list_given:
            return self.box_coords  # type: ignore[return-value]
        return [self.box_coords]  # type: ignore[list-item]

    @property
    def labels(self) -> list[int] | None:
        """`point_labels`, defaulting to all foreground."""
        return _default_labels(self.point_coords, self.point_labels)

    @property
    def answers_per_object(self) -> bool:
        """Whether the answer lists one prediction per box or object (`predictions`)."""
        return self.objects is not None or self.box_list_given

    def prompt_sets(self) -> list[ObjectPrompt]:
        """What to segment, one entry per mask answered: the objects, each box of a box list,
        or the request's one prompt set."""
        if self.objects is not None:
            return self.objects
        if self.box_list_given:
            return [ObjectPrompt(box_coords=box) for box in self.boxes or []]
        return [
            ObjectPrompt.model_construct(
                point_coords=self.point_coords,
                point_labels=self.point_labels,
                box_coords=self.boxes[0] if self.boxes else None,
                refine=self.refine,
            )
        ]


class BatchImage(_Model):
    """The image a batch's items share unless they name their own."""

    image: str | None = Field(
        default=None,
        description="An image (base64) for every item that names none of its own: one upload, "
        "one image encoder run, many prompt sets.",
        json_schema_extra={"contentEncoding": "base64"},
    )
    image_url: str | None = Field(
        default=None,
        max_length=MAX_URL_LENGTH,
        description="Like `image`, fetched from this https URL by the gateway, once.",
    )
    image_id: Annotated[str | None, BeforeValidator(_check_image_id)] = Field(
        default=None, description="Like `image`, as the `image_id` of an earlier response."
    )

    @model_validator(mode="after")
    def _one_shared_image(self) -> Self:
        _one_image(self.image, self.image_url, self.image_id, required=False)
        return self


class BatchSegmentRequest(BatchImage):
    """Several segment requests answered together, in order; each succeeds or fails alone."""

    requests: list[SegmentRequest] = Field(
        min_length=1,
        max_length=MAX_BATCH_ITEMS,
        description="The items, run in order; items may also name images of their own.",
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


class CacheStats(BaseModel):
    """The image-embedding cache, as the inference service reports it."""

    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int
    evictions: int


class ModelEntry(BaseModel):
    name: ModelName
    model_id: str
    loaded: bool


class ModelsResponse(BaseModel):
    models: list[ModelEntry]
    serving: ModelInfo | None = Field(description="The loaded model, None while loading.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    state: Literal["loading", "ready", "failed"]
    model: ModelInfo | None = None
    random_weights: bool = False
    warnings: list[str] = Field(default_factory=list)
    cache: CacheStats | None = None


class TokenRequest(_Model):
    """Ask for a short-lived browser token, authenticated by an API key."""

    scopes: list[str] | None = Field(
        default=None, description="A subset of the key's scopes; omitted: all of them."
    )
    ttl_s: int | None = Field(
        default=None, ge=1, le=900, description="Lifetime in seconds, at most 15 minutes."
    )


class TokenResponse(BaseModel):
    token: str = Field(description="Send as `Authorization: Bearer <token>`.")
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (a scheme name, not a secret)
    expires_in: int = Field(description="Seconds until it expires.")
    expires_at: int = Field(description="Unix time at which it expires.")
    scope: str = Field(description="Space-separated scopes it carries.")


class UsageCounts(BaseModel):
    """What a key used, as metered by the gateway."""

    requests: int = Field(description="Calls that ran the model (segmentation, video).")
    images: int = Field(
        description="Images and clips uploaded or fetched (each one's first call; the ones "
        "that ran the image encoder)."
    )
    masks: int = Field(description="Masks returned (video: objects on each frame sent).")
    gpu_ms: float = Field(
        description="Model time in milliseconds, stopped and failed calls' included."
    )


class UsageDay(UsageCounts):
    day: date = Field(description="The UTC day.")


class UsageLimits(BaseModel):
    """The limits of the key's rate tier."""

    requests: int = Field(description="Requests allowed per window.")
    window_s: int = Field(description="The rate window, in seconds (a moving window).")
    concurrent: int = Field(description="Requests that may run at once.")
    video_sessions: int = Field(description="Video sessions one inference container holds.")


class UsageResponse(BaseModel):
    """A key's own usage, per UTC day, with its tier's limits."""

    key_id: str
    rate_tier: str
    limits: UsageLimits
    since: date = Field(description="The first day reported (UTC).")
    days: list[UsageDay] = Field(description="Days with usage, oldest first.")
    total: UsageCounts = Field(description="The sum of `days`.")
