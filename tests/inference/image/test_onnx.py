"""The exported decoder (image/onnx.py) run by onnxruntime gives what `SAM2ImagePredictor` gives
called directly on the same checkpoint and image: the low-resolution logits and the scores of
clicks, boxes, points with a box, and refinement, multimask and single-mask (issue 29)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (sam2's spelling)
from sam2.sam2_image_predictor import SAM2ImagePredictor
from sam2_contract.embedding import decode_embedding, encode_embedding
from sam2_inference.image.onnx import export_decoder
from support import decoder_feed

ort = pytest.importorskip("onnxruntime")

CASES: list[tuple[str, dict[str, Any]]] = [
    ("one click", {"points": [[60, 40]], "labels": [1]}),
    ("clicks", {"points": [[60, 40], [150, 90], [20, 100]], "labels": [1, 0, 1]}),
    ("box", {"box": [10, 10, 120, 100]}),
    ("points and box", {"box": [30, 20, 180, 110], "points": [[100, 60]], "labels": [0]}),
]


@pytest.fixture(scope="module")
def session(reference_model: Any) -> Any:
    return ort.InferenceSession(export_decoder(reference_model))


def _feed(
    predictor: SAM2ImagePredictor, prompt: dict[str, Any], mask: Any = None
) -> dict[str, Any]:
    features = predictor._features
    tensors = {
        "image_embed": features["image_embed"].numpy(),
        "high_res_feats_0": features["high_res_feats"][0].numpy(),
        "high_res_feats_1": features["high_res_feats"][1].numpy(),
    }
    return decoder_feed(tensors, prompt, predictor._orig_hw[0], mask)


def _sam2(
    predictor: SAM2ImagePredictor, prompt: dict[str, Any], multimask: bool, mask: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    masks, scores, low_res = predictor.predict(
        point_coords=np.asarray(prompt["points"], np.float32) if "points" in prompt else None,
        point_labels=np.asarray(prompt["labels"]) if "labels" in prompt else None,
        box=np.asarray(prompt["box"], np.float32) if "box" in prompt else None,
        mask_input=mask,
        multimask_output=multimask,
    )
    return masks, scores, low_res


@pytest.mark.parametrize(("name", "prompt"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("image", ["landscape", "portrait"])
def test_onnx_decoder_answers_what_sam2_answers(
    session: Any, reference: dict[str, SAM2ImagePredictor], image: str, name: str, prompt: Any
) -> None:
    predictor = reference[image]
    multi_masks, multi_scores, single_mask, single_score = session.run(
        None, _feed(predictor, prompt)
    )
    for multimask, ours, our_scores in (
        (True, multi_masks, multi_scores),
        (False, single_mask, single_score),
    ):
        masks, scores, low_res = _sam2(predictor, prompt, multimask)
        assert np.abs(np.clip(ours[0], -32, 32) - low_res).max() < 1e-3
        assert np.abs(our_scores[0] - scores).max() < 1e-4
        # The client's masks: upsampled and thresholded as sam2 does (torch here, as a check).
        height, width = predictor._orig_hw[0]
        up = F.interpolate(torch.from_numpy(ours), (height, width), mode="bilinear")
        theirs = masks > 0
        mine = up[0].numpy() > 0
        inter = np.logical_and(mine, theirs).sum(axis=(1, 2))
        union = np.logical_or(mine, theirs).sum(axis=(1, 2))
        assert (inter / np.maximum(union, 1)).min() >= 0.999


def test_refinement_feeds_the_previous_logits(
    session: Any, reference: dict[str, SAM2ImagePredictor]
) -> None:
    predictor = reference["landscape"]
    first = {"points": [[60, 40]], "labels": [1]}
    _, scores, low_res = _sam2(predictor, first, True)
    best = low_res[int(np.argmax(scores))][None]  # 1 x 256 x 256, as `refine` keeps it
    again = {"points": [[60, 40], [150, 90]], "labels": [1, 0]}
    _, their_scores, their_low = _sam2(predictor, again, False, mask=best)
    _, _, ours, our_scores = session.run(None, _feed(predictor, again, mask=best))
    assert np.abs(np.clip(ours[0], -32, 32) - their_low).max() < 1e-3
    assert np.abs(our_scores[0] - their_scores).max() < 1e-4


@pytest.mark.parametrize(
    ("dtype", "mean_iou", "worst_iou"), [("float16", 0.99, 0.97), ("int8", 0.99, 0.97)]
)
def test_a_smaller_embedding_keeps_the_masks(
    session: Any,
    reference: dict[str, SAM2ImagePredictor],
    dtype: str,
    mean_iou: float,
    worst_iou: float,
) -> None:
    """The embedding downloaded as float16 or int8 (sam2_contract.embedding) decodes to masks
    within the issue's bounds of those from float32, over every case on both images."""
    ious = []
    for image in ("landscape", "portrait"):
        predictor = reference[image]
        features = predictor._features
        tensors = {
            "image_embed": features["image_embed"].numpy(),
            "high_res_feats_0": features["high_res_feats"][0].numpy(),
            "high_res_feats_1": features["high_res_feats"][1].numpy(),
        }
        back, _ = decode_embedding(encode_embedding(tensors, dtype, {}))  # type: ignore[arg-type]
        for _, prompt in CASES:
            full = _feed(predictor, prompt)
            small = full | back
            for ours, theirs in zip(
                session.run(None, small)[:1], session.run(None, full)[:1], strict=True
            ):
                inter = np.logical_and(ours > 0, theirs > 0).sum(axis=(2, 3))
                union = np.logical_or(ours > 0, theirs > 0).sum(axis=(2, 3))
                ious += list((inter / np.maximum(union, 1)).ravel())
    assert np.mean(ious) >= mean_iou
    assert np.percentile(ious, 1) >= worst_iou


def test_the_object_present_checkpoint_decodes_the_same(video_model: Any) -> None:
    """On the checkpoint whose object-score head says "object present" (the video tests'),
    the exported decoder still answers what SAM2ImagePredictor answers, for 30+ random
    prompts: the image path does not read that head, and this shows the export does not
    either."""
    from support import IMAGES, random_prompts

    predictor = SAM2ImagePredictor(video_model)
    predictor.set_image(IMAGES["landscape"].copy())
    exported = ort.InferenceSession(export_decoder(video_model))
    height, width = predictor._orig_hw[0]
    previous = None
    for prompt in random_prompts(5, width, height):
        multimask = prompt.pop("multimask")
        mask = previous if prompt.pop("refine", False) else None
        _, scores, low_res = _sam2(predictor, prompt, multimask, mask=mask)
        outputs = exported.run(None, _feed(predictor, prompt, mask=mask))
        ours, our_scores = (outputs[0], outputs[1]) if multimask else (outputs[2], outputs[3])
        assert np.abs(np.clip(ours[0], -32, 32) - low_res).max() < 1e-3
        assert np.abs(our_scores[0] - scores).max() < 1e-4
        previous = low_res[int(np.argmax(scores))][None]
