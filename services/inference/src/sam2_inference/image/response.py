"""The answers: the original spec's two response shapes with what every answer carries beside
its masks (mode, format, image id, model, cache hit, timings, warnings) and the `render`
preview, assembled from the model work's outcome (`Ran`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import torch
from sam2_contract.masks import BoolMask, decode_mask
from sam2_contract.models import (
    AutoSegmentResponse,
    ModelInfo,
    PromptSegmentResponse,
    SegmentRequest,
    Timings,
)
from sam2_contract.overlay import render_overlay

from sam2_inference.image.auto import auto_mask, largest_first
from sam2_inference.image.inputs import ResolvedImage
from sam2_inference.image.predictor import CachingPredictor
from sam2_inference.image.prompts import Answer, mask_encoder


@dataclass(frozen=True, slots=True)
class Ran:
    """One request's model work, done: what its answer is assembled from."""

    request: SegmentRequest
    image: ResolvedImage
    predictor: CachingPredictor
    model: ModelInfo
    model_ms: float
    started: float  # perf_counter() when the request started
    warnings: list[str] = field(default_factory=list)


def prompt_response(
    ran: Ran, answers: list[Answer], keep: Callable[[torch.Tensor], str | None]
) -> PromptSegmentResponse:
    """Points and boxes: the first prompt's mask in the original shape, every prompt's in
    `predictions` when asked; `keep` keeps a mask's logits for `refine` and names them."""
    encode_started = perf_counter()
    request = ran.request
    per_prompt = [answer.prediction(request, keep(answer.logits)) for answer in answers]
    first = per_prompt[0]
    preview = (
        overlay(request, ran.image, [decode_mask(p.mask) for p in per_prompt])
        if request.render
        else None
    )
    return PromptSegmentResponse(
        mask=first.mask,
        score=first.score,
        all_scores=first.all_scores,
        all_masks=first.all_masks,
        mask_id=first.mask_id,
        image_shape=list(ran.image.pixels.shape[:2]),
        predictions=per_prompt if request.answers_per_object else None,
        overlay=preview,
        **_extensions(ran, encode_started),
    )


def auto_response(ran: Ran, records: list[dict[str, Any]]) -> AutoSegmentResponse:
    """Automatic mode: sam2's records as masks (RLE straight from its run lengths)."""
    encode_started = perf_counter()
    request = ran.request
    encode = None if request.mask_format == "rle" else mask_encoder(request)
    masks = [auto_mask(record, encode) for record in records]
    preview = overlay(request, ran.image, largest_first(records)) if request.render else None
    return AutoSegmentResponse(
        masks=masks,
        count=len(masks),
        overlay=preview,
        image_shape=list(ran.image.pixels.shape[:2]),
        **_extensions(ran, encode_started),
    )


def _extensions(ran: Ran, encode_started: float) -> dict[str, Any]:
    """The fields an answer adds to the original spec's (times are `perf_counter` seconds)."""
    predictor = ran.predictor
    return {
        "mode": ran.request.mode,
        "mask_format": ran.request.mask_format,
        "image_id": ran.image.image_id,
        "model": ran.model,
        "cached": predictor.encoder_runs == 0,
        "timings_ms": Timings(
            decode_ms=ran.image.decode_ms,
            embed_ms=predictor.embed_ms,
            predict_ms=ran.model_ms - predictor.embed_ms,
            encode_ms=ms_since(encode_started),
            total_ms=ms_since(ran.started),
        ),
        "warnings": ran.warnings,
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
