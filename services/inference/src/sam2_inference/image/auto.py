"""Automatic mode ("segment everything"): sam2's mask generator, its decoder batches sized and
its time checked before the job starts, and its masks as the API answers them."""

from __future__ import annotations

from typing import Any

from sam2.modeling.sam2_base import SAM2Base
from sam2_contract.errors import ErrorCode, OverBudgetError
from sam2_contract.masks import BoolMask, mask_from_counts, rle_from_counts
from sam2_contract.models import AutoMask, SegmentRequest

from sam2_inference.image.inputs import ResolvedImage
from sam2_inference.image.predictor import Generator
from sam2_inference.image.prompts import Encode
from sam2_inference.scheduling.costs import Costs, auto_work
from sam2_inference.scheduling.lock import Work

FAST_POINTS_PER_BATCH = 1024
"""Automatic mode's batch in the fast pipeline when the request names none: the whole 32x32
grid through the decoder at once (the memory budget and batch slicing still lower it)."""


def decoder_batch(
    request: SegmentRequest, *, fits: int, slice_prompts: int, fast: bool, budget_mib: int
) -> tuple[int, list[str]]:
    """The prompts per decoder batch this job runs at, and a note when it is not as asked:
    the same request always runs at this size here, so it always gets the same masks."""
    asked = request.points_per_batch
    if fast and "points_per_batch" not in request.model_fields_set:
        asked = FAST_POINTS_PER_BATCH
    batch = min(asked, fits, slice_prompts or asked)
    if batch == asked:
        return batch, []
    why = (
        f"the memory budget ({budget_mib} MiB)"
        if batch == fits
        else "SAM2_AUTO_SLICE_PROMPTS, so that a click never waits for more than one batch"
    )
    return batch, [
        f"points_per_batch lowered from {asked} to {batch} to fit {why}; the same "
        "request always runs at this size here, so it always gets the same masks"
    ]


def new_generator(model: SAM2Base, request: SegmentRequest, points_per_batch: int) -> Generator:
    """sam2's generator with the request's knobs, keeping masks as sam2 does (RLE)."""
    return Generator(
        model,
        points_per_side=request.points_per_side,
        points_per_batch=points_per_batch,
        pred_iou_thresh=request.pred_iou_thresh,
        stability_score_thresh=request.stability_score_thresh,
        stability_score_offset=request.stability_score_offset,
        box_nms_thresh=request.box_nms_thresh,
        crop_n_layers=request.crop_n_layers,
        crop_nms_thresh=request.crop_nms_thresh,
        crop_overlap_ratio=request.crop_overlap_ratio,
        crop_n_points_downscale_factor=request.crop_n_points_downscale_factor,
        min_mask_region_area=request.min_mask_region_area,
        use_m2m=request.use_m2m,
        output_mode="uncompressed_rle",  # as sam2 keeps masks: RLE answers build none
    )


def check_time(request: SegmentRequest, image: ResolvedImage, work: Work, costs: Costs) -> None:
    """Refuse a job that would not finish before the request's deadline, naming the largest
    `points_per_side` that would."""
    left_s = work.seconds_left()
    if left_s is None:
        return

    def estimate(points_per_side: int, crop_n_layers: int) -> float | None:
        job = auto_work(
            points_per_side,
            crop_n_layers,
            request.crop_n_points_downscale_factor,
            cached=image.entry is not None,
        )
        return costs.estimate_ms(job)

    wanted = estimate(request.points_per_side, request.crop_n_layers)
    if wanted is None or wanted <= left_s * 1000:
        return
    fits = next(
        (
            side
            for side in range(request.points_per_side - 1, 0, -1)
            if (cost := estimate(side, request.crop_n_layers)) is not None and cost <= left_s * 1000
        ),
        None,
    )
    advice = (
        f"points_per_side={fits} would fit"
        if fits is not None
        else "even points_per_side=1 would not: lower crop_n_layers or send a smaller image"
    )
    raise OverBudgetError(
        f"automatic mode with points_per_side={request.points_per_side} and crop_n_layers="
        f"{request.crop_n_layers} would take about {wanted / 1000:.1f} s here, more than "
        f"the {left_s:.1f} s left before this request's deadline; {advice}",
        code=ErrorCode.OVER_TIME_BUDGET,
    )


def why_no_mask(request: SegmentRequest, *, random_weights: bool) -> str:
    """The warning for a job whose masks all fell below the thresholds."""
    why = (
        f"no mask passed pred_iou_thresh={request.pred_iou_thresh:g} and "
        f"stability_score_thresh={request.stability_score_thresh:g}"
    )
    if random_weights:
        return f"{why}: random weights score low; set both to 0 to see their masks"
    return f"{why}; lower them to keep less certain masks"


def auto_mask(record: dict[str, Any], encode: Encode | None) -> AutoMask:
    """One auto mask; `encode` None: RLE, straight from sam2's run lengths."""
    runs = record["segmentation"]  # uncompressed COCO RLE: {"size": [h, w], "counts": [...]}
    return AutoMask(
        segmentation=(
            rle_from_counts(runs["size"], runs["counts"])
            if encode is None
            else encode(mask_from_counts(runs["size"], runs["counts"]))
        ),
        area=int(record["area"]),
        bbox=[float(v) for v in record["bbox"]],
        predicted_iou=float(record["predicted_iou"]),
        stability_score=float(record["stability_score"]),
        point_coords=[[float(v) for v in p] for p in record["point_coords"]],
        crop_box=[float(v) for v in record["crop_box"]],
    )


def largest_first(records: list[dict[str, Any]]) -> list[BoolMask]:
    """Automatic mode's masks, the largest first, so that the small ones stay visible."""
    ordered = sorted(records, key=lambda record: -int(record["area"]))
    return [
        mask_from_counts(r["segmentation"]["size"], r["segmentation"]["counts"]) for r in ordered
    ]
