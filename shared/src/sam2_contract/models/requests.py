"""What clients send: a segment request (the original spec's fields and every extension), a
batch of them, a token request.
"""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import BeforeValidator, Field, model_validator

from sam2_contract.models.fields import (
    LABELS_DESCRIPTION,
    MAX_BATCH_ITEMS,
    MAX_OBJECTS,
    MAX_URL_LENGTH,
    POINTS_DESCRIPTION,
    REFINE_DESCRIPTION,
    Box,
    LabelList,
    MaskFormat,
    MaskId,
    Mode,
    ModelName,
    PointList,
    _check_boxes,
    _check_image_id,
    _check_one_box,
    _crop_grids_exist,
    _default_labels,
    _fail,
    _labels_match,
    _Model,
)
from sam2_contract.overlay import RenderFormat


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


class TokenRequest(_Model):
    """Ask for a short-lived browser token, authenticated by an API key."""

    scopes: list[str] | None = Field(
        default=None, description="A subset of the key's scopes; omitted: all of them."
    )
    ttl_s: int | None = Field(
        default=None, ge=1, le=900, description="Lifetime in seconds, at most 15 minutes."
    )
