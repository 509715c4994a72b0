"""The fast pipeline's pieces compute what sam2 and pycocotools compute, on CPU tensors.

tests/inference/image/test_parity.py runs every prompt and output format through both pipelines
against SAM2ImagePredictor; these tests pin each piece alone, with the edge cases.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from pycocotools import mask as coco
from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
from sam2.sam2_image_predictor import SAM2ImagePredictor
from sam2_contract import SegmentRequest, decode_mask
from sam2_contract.images import DecodedImage, image_id_for
from sam2_contract.masks import rle_from_counts
from sam2_inference import Sam2Engine
from sam2_inference.runtime.fastpath import DeviceTransforms, rle_counts
from support import IMAGES, fresh_engine, scene


def _edge_masks() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    corner = np.zeros((6, 9), bool)
    corner[0, 0] = True  # a leading zero-length run
    last = np.zeros((6, 9), bool)
    last[-1, -1] = True
    return [
        np.zeros((6, 9), bool),
        np.ones((6, 9), bool),
        corner,
        last,
        rng.random((6, 9)) < 0.5,
        rng.random((6, 9)) < 0.05,
    ]


# pycocotools 2.0 decodes through an __array__ that numpy 2 flags as deprecated.
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_device_rle_of_a_batch_is_byte_equal_to_pycocotools() -> None:
    masks = _edge_masks()
    counts = rle_counts(torch.from_numpy(np.stack(masks)))
    assert len(counts) == len(masks)
    for mask, runs in zip(masks, counts, strict=True):
        theirs = coco.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert rle_from_counts(mask.shape, runs).counts == theirs["counts"].decode("ascii")


def test_device_rle_of_no_masks_is_no_runs() -> None:
    assert rle_counts(torch.zeros((0, 4, 5), dtype=torch.bool)) == []


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1)])
@pytest.mark.parametrize("value", [False, True])
def test_device_rle_of_tiny_masks(shape: tuple[int, int], value: bool) -> None:
    mask = np.full(shape, value)
    (runs,) = rle_counts(torch.from_numpy(mask[None]))
    theirs = coco.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert rle_from_counts(shape, runs).counts == theirs["counts"].decode("ascii")


@pytest.mark.parametrize("shape", [(120, 200), (331, 97), (1024, 1024), (17, 2000)])
def test_device_transforms_equal_sam2s_on_the_cpu(
    reference: dict[str, SAM2ImagePredictor], shape: tuple[int, int]
) -> None:
    sam2_transforms = reference["landscape"]._transforms
    pixels = scene(*shape, seed=shape[0])
    ours = DeviceTransforms(sam2_transforms, torch.device("cpu"))(pixels)
    assert torch.equal(ours, sam2_transforms(pixels))


def _click(engine: Sam2Engine, image: str, **fields: Any) -> dict[str, Any]:
    pixels = IMAGES[image]
    decoded = DecodedImage(pixels=pixels, format="raw", image_id=image_id_for(pixels))
    request = SegmentRequest(image_id=decoded.image_id, **fields)
    return engine.segment(request, image=decoded).model_dump()


@pytest.mark.parametrize("image", list(IMAGES))
@pytest.mark.parametrize("multimask_output", [True, False])
@pytest.mark.parametrize("mask_format", ["rle", "png"])
def test_a_fast_click_upsamples_only_the_best_mask_and_answers_the_same(
    loaded_engine: Sam2Engine, image: str, multimask_output: bool, mask_format: str
) -> None:
    fast = fresh_engine(loaded_engine, pipeline="fast")
    exact = fresh_engine(loaded_engine, pipeline="exact")
    upsampled: list[int] = []
    postprocess = SAM2ImagePredictor(fast.model)._transforms.postprocess_masks

    def counting(self: Any, masks: torch.Tensor, orig_hw: Any) -> torch.Tensor:
        upsampled.append(masks.shape[1])
        return postprocess(masks, orig_hw)  # type: ignore[no-any-return]

    fields = {
        "point_coords": [[40, 30], [90, 60]],
        "point_labels": [1, 0],
        "multimask_output": multimask_output,
        "mask_format": mask_format,
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DeviceTransforms, "postprocess_masks", counting)
        ours = _click(fast, image, **fields)
    theirs = _click(exact, image, **fields)
    assert upsampled == [1]  # one mask upsampled, not three
    assert ours["all_scores"] == theirs["all_scores"]
    assert ours["score"] == theirs["score"]
    assert np.array_equal(decode_mask(ours["mask"]), decode_mask(theirs["mask"]))
    assert ours["model"]["pipeline"] == "fast"
    assert theirs["model"]["pipeline"] == "exact"


def test_fast_auto_mode_upsamples_only_masks_above_the_iou_threshold_and_matches_sam2(
    loaded_engine: Sam2Engine, reference_model: Any
) -> None:
    fast = fresh_engine(loaded_engine, pipeline="fast")
    pixels = IMAGES["landscape"]
    loose = {
        "points_per_side": 4,
        "pred_iou_thresh": 0.0,
        "stability_score_thresh": 0.0,
        "box_nms_thresh": 1.0,
    }
    ious = sorted(
        r["predicted_iou"]
        for r in SAM2AutomaticMaskGenerator(reference_model, **loose).generate(pixels.copy())
    )
    knobs = {
        "points_per_side": 4,
        "points_per_batch": 8,
        "pred_iou_thresh": ious[len(ious) // 2],  # about half the candidates pass
        "stability_score_offset": 0.05,  # random weights' noisy masks: scores 0.2-0.9
        "stability_score_thresh": 0.5,
        "box_nms_thresh": 1.0,
    }
    upsampled: list[int] = []
    postprocess = SAM2ImagePredictor(fast.model)._transforms.postprocess_masks

    def counting(self: Any, masks: torch.Tensor, orig_hw: Any) -> torch.Tensor:
        upsampled.append(masks.shape[0] * masks.shape[1])
        return postprocess(masks, orig_hw)  # type: ignore[no-any-return]

    decoded = DecodedImage(pixels=pixels, format="raw", image_id=image_id_for(pixels))
    request = SegmentRequest(image_id=decoded.image_id, mode="auto", mask_format="rle", **knobs)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DeviceTransforms, "postprocess_masks", counting)
        ours = fast.segment(request, image=decoded).model_dump()["masks"]
    theirs = SAM2AutomaticMaskGenerator(reference_model, **knobs).generate(pixels.copy())
    assert 0 < len(theirs) == len(ours)
    assert len(ious) == 3 * 16  # three candidates per point of the 4x4 grid
    above = sum(iou > knobs["pred_iou_thresh"] for iou in ious)
    assert sum(upsampled) == above < len(ious)  # those above the threshold, not all 48
    for mine, sams in zip(ours, theirs, strict=True):
        assert np.array_equal(decode_mask(mine["segmentation"]), sams["segmentation"])
        assert mine["predicted_iou"] == pytest.approx(sams["predicted_iou"], abs=1e-6)
        assert mine["stability_score"] == pytest.approx(sams["stability_score"], abs=1e-6)
        assert mine["bbox"] == pytest.approx(sams["bbox"])
