"""Points, boxes and refinement: sam2's decoder on prompts, and each prompt's answer.

Objects with as many points, a box or not, and a mask to refine or not go through the decoder
together, as `SAM2ImagePredictor.predict` takes them (B x N points, B boxes, B x 1 x 256 x 256
logits to refine). Masks are encoded on demand, after the model lock is released.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import numpy.typing as npt
import torch
from sam2_contract.errors import MaskNotFoundError
from sam2_contract.masks import (
    answer_mask_bytes,
    answer_too_large,
    encode_mask,
    rle_from_counts,
)
from sam2_contract.models import Mask, ObjectPrompt, PromptPrediction, SegmentRequest
from sam2_contract.polygons import EdgeBudget

from sam2_inference.image.cache import EmbeddingCache
from sam2_inference.image.predictor import CachingPredictor
from sam2_inference.runtime import fastpath

FloatArray = npt.NDArray[np.float32]
Encode = Callable[[npt.ArrayLike], Mask]


@dataclass(frozen=True, slots=True)
class Answer:
    """One prompt's predicted IoUs and its masks, encoded on demand (after the model lock):
    every candidate's, or only the best one's."""

    scores: FloatArray
    masks: Sequence[Callable[[], Mask]]
    logits: torch.Tensor  # the best mask's, 1 x 256 x 256, kept for `refine`

    def prediction(self, request: SegmentRequest, mask_id: str | None) -> PromptPrediction:
        best = int(np.argmax(self.scores))
        pick = best if len(self.masks) > 1 else 0  # the fast path keeps only the best one's
        all_masks = [encode() for encode in self.masks] if request.return_all_masks else None
        mask = all_masks[pick] if all_masks is not None else self.masks[pick]()
        return PromptPrediction(
            mask=mask,
            score=float(self.scores[best]),
            all_scores=[float(s) for s in self.scores],
            all_masks=all_masks,
            mask_id=mask_id,
        )


def answer_prompts(
    predictor: CachingPredictor,
    request: SegmentRequest,
    objects: list[ObjectPrompt],
    mask_inputs: list[torch.Tensor | None],
    *,
    fast: bool,
) -> list[Answer]:
    """One answer per object, in order, one decoder batch per group of like objects."""
    groups: dict[tuple[int, bool, bool], list[int]] = {}
    for index, item in enumerate(objects):
        key = (len(item.point_coords or []), item.box_coords is not None, item.refine is not None)
        groups.setdefault(key, []).append(index)
    answers: dict[int, Answer] = {}
    for indices in groups.values():
        group = [objects[i] for i in indices]
        refined = [m for i in indices if (m := mask_inputs[i]) is not None]
        mask_input = torch.stack(refined) if refined else None
        batch = _decode(predictor, request, group, mask_input, fast=fast)
        answers.update(zip(indices, batch, strict=True))
    return [answers[index] for index in range(len(objects))]


def kept_logits(
    cache: EmbeddingCache, namespace: str, image_id: str, mask_id: str | None
) -> torch.Tensor | None:
    """The logits `refine` names, kept with this image's embedding for this namespace."""
    if mask_id is None:
        return None
    logits = cache.get_mask(namespace, image_id, mask_id)
    if logits is None:
        raise MaskNotFoundError(
            f"no mask {mask_id} is kept for image {image_id}: it was answered on "
            "another image or for another key, or it expired with the image's embedding"
        )
    return logits


def mask_encoder(request: SegmentRequest) -> Encode:
    """The request's mask format, with its options; polygons share one budget of edges."""
    return partial(
        encode_mask,
        mask_format=request.mask_format,
        tolerance=request.polygon_tolerance,
        budget=EdgeBudget(),
    )


def check_answer(request: SegmentRequest, height: int, width: int, limit: tuple[str, int]) -> None:
    """The masks a prompt request will answer (each prompt set's best, and with
    `return_all_masks` its candidates too), in the client's format, within the gateway's bound."""
    mask_format, most = limit
    per_set = 1 + (3 if request.multimask_output else 1) * request.return_all_masks
    masks = len(request.prompt_sets()) * per_set
    needed = masks * answer_mask_bytes(mask_format, height, width)
    if needed > most:
        raise answer_too_large(needed, most, mask_format, masks)


def _decode(
    predictor: CachingPredictor,
    request: SegmentRequest,
    group: list[ObjectPrompt],
    mask_input: torch.Tensor | None,
    *,
    fast: bool,
) -> list[Answer]:
    """B objects of one shape in one decoder batch."""
    points = (
        np.asarray([item.point_coords for item in group], dtype=np.float32)
        if group[0].point_coords
        else None
    )
    labels = (
        np.asarray([item.labels for item in group], dtype=np.int32) if points is not None else None
    )
    box = (
        np.asarray([item.box_coords for item in group], dtype=np.float32)
        if group[0].box_coords is not None
        else None
    )
    if fast:
        scores, masks, logits = fastpath.predict(
            predictor,
            points,
            labels,
            box,
            mask_input,
            multimask_output=request.multimask_output,
            every_candidate=request.return_all_masks,
        )
        return _fast_answers(scores, masks, logits, request)
    masks, scores, low_res = predictor.predict(
        point_coords=points,
        point_labels=labels,
        box=box,
        mask_input=mask_input,
        multimask_output=request.multimask_output,
    )
    return _exact_answers(masks, scores, low_res, mask_encoder(request))


def _exact_answers(
    masks: FloatArray, scores: FloatArray, low_res: FloatArray, encode: Encode
) -> list[Answer]:
    """sam2's own answer (C x H x W float masks for one prompt, B x C x H x W for several)."""
    if masks.ndim == 3:
        masks, scores, low_res = masks[None], scores[None], low_res[None]
    return [
        Answer(
            s,
            [partial(encode, m > 0) for m in candidates],
            torch.from_numpy(logits[int(np.argmax(s))][None].copy()),
        )
        for candidates, s, logits in zip(masks, scores, low_res, strict=True)
    ]


def _fast_answers(
    scores: FloatArray, masks: torch.Tensor, logits: torch.Tensor, request: SegmentRequest
) -> list[Answer]:
    """The fast path's answer: B x K x H x W boolean masks on the device. RLE is computed
    there (only change positions come back); other formats copy one byte a pixel."""
    b, k, height, width = masks.shape
    encoders: list[Callable[[], Mask]]
    if request.mask_format == "rle":
        counts = fastpath.rle_counts(masks.flatten(0, 1))
        encoders = [partial(rle_from_counts, (height, width), c) for c in counts]
    else:
        host = masks.flatten(0, 1).cpu().numpy()
        encode = mask_encoder(request)
        encoders = [partial(encode, m) for m in host]
    return [Answer(scores[i], encoders[i * k : (i + 1) * k], logits[i]) for i in range(b)]
