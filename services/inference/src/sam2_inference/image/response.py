"""What every answer carries beside its masks: mode, format, image id, model, cache hit,
timings, warnings, and the `render` preview."""

from __future__ import annotations

from time import perf_counter
from typing import Any

from sam2_contract.masks import BoolMask
from sam2_contract.models import ModelInfo, SegmentRequest, Timings
from sam2_contract.overlay import render_overlay

from sam2_inference.image.inputs import ResolvedImage
from sam2_inference.image.predictor import CachingPredictor


def extensions(
    request: SegmentRequest,
    image: ResolvedImage,
    predictor: CachingPredictor,
    *,
    model: ModelInfo,
    warnings: list[str],
    model_ms: float,
    encode_started: float,
    started: float,
) -> dict[str, Any]:
    """The fields an answer adds to the original spec's (times are `perf_counter` seconds)."""
    return {
        "mode": request.mode,
        "mask_format": request.mask_format,
        "image_id": image.image_id,
        "model": model,
        "cached": predictor.encoder_runs == 0,
        "timings_ms": Timings(
            decode_ms=image.decode_ms,
            embed_ms=predictor.embed_ms,
            predict_ms=model_ms - predictor.embed_ms,
            encode_ms=ms_since(encode_started),
            total_ms=ms_since(started),
        ),
        "warnings": warnings,
    }


def overlay(request: SegmentRequest, image: ResolvedImage, masks: list[BoolMask]) -> str:
    """The `render` preview: the image, the masks in order, the request's prompts."""
    assert request.render is not None
    objects = request.prompt_sets() if request.mode != "auto" else []
    return render_overlay(
        image.pixels,
        masks,
        image_format=request.render,
        points=[point for item in objects for point in item.point_coords or []],
        labels=[label for item in objects for label in item.labels or []],
        boxes=[item.box_coords for item in objects if item.box_coords is not None],
    )


def ms_since(since: float) -> float:
    return (perf_counter() - since) * 1000.0
