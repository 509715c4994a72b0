"""The `fast` pipeline: the work sam2 does after the model, done where the model's tensors are.

`SAM2ImagePredictor.predict` upsamples every candidate mask to the image's size as float32,
copies all of them to the host and leaves thresholding and RLE to NumPy. Here, on the device:

- the image is sent as uint8 (3 bytes a pixel, not 12 after the CPU resize), or not sent at all
  when it was decoded there (`Uploaded`, image/decoding.py), and resized and normalised there
  (`DeviceTransforms`, the same operations as sam2's transforms);
- a click's best candidate is picked by its predicted IoU from the 256x256 logits and only it is
  upsampled (bilinear upsampling treats each mask alone, so the chosen mask is the same);
- masks are thresholded there and compressed to run lengths (`rle_counts`): only the positions
  where the mask changes come back to the host;
- automatic mode drops the candidates below `pred_iou_thresh` before upsampling any
  (`process_batch`), where sam2 upsamples all of them first.

On the CPU each step computes what sam2 computes, bit for bit
(tests/inference/runtime/test_fastpath.py); what differs on a GPU is only where the work runs.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import numpy.typing as npt
import torch
from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
from sam2.sam2_image_predictor import SAM2ImagePredictor
from sam2.utils.amg import (
    MaskData,
    batched_mask_to_box,
    calculate_stability_score,
    is_box_near_crop_edge,
    uncrop_masks,
)
from sam2.utils.transforms import SAM2Transforms
from sam2_contract.masks import counts_from_changes

Counts = npt.NDArray[np.int64]


class DeviceTransforms(SAM2Transforms):  # type: ignore[misc]
    """sam2's image transforms applied on `device` to the uint8 image sent there."""

    def __init__(self, base: SAM2Transforms, device: torch.device) -> None:
        super().__init__(
            base.resolution, base.mask_threshold, base.max_hole_area, base.max_sprinkle_area
        )
        self.device = device

    def __call__(self, x: npt.NDArray[np.uint8]) -> torch.Tensor:
        pixels = torch.from_numpy(np.ascontiguousarray(x)).to(self.device, non_blocking=True)
        return self.on_device(pixels)

    def on_device(self, pixels: torch.Tensor) -> torch.Tensor:
        """The model's input from HxWx3 uint8 pixels already on the device."""
        # torchvision's ToTensor, on the device: CHW, float32 in [0, 1]
        image = pixels.permute(2, 0, 1).contiguous().to(torch.float32).div(255)
        return cast(torch.Tensor, self.transforms(image))


class Uploaded:
    """A predictor's transforms, told that one host image's pixels are already on the device
    (decoded there: image/decoding.py), so `set_image` on that image uploads nothing. Everything
    else is the wrapped DeviceTransforms'."""

    def __init__(
        self, transforms: DeviceTransforms, host: npt.NDArray[np.uint8], pixels: torch.Tensor
    ) -> None:
        self.wrapped = transforms
        self.host = host
        self.pixels = pixels

    def __call__(self, x: npt.NDArray[np.uint8]) -> torch.Tensor:
        if same_array(x, self.host):
            return self.wrapped.on_device(self.pixels)
        return self.wrapped(x)

    def __getattr__(self, name: str) -> object:
        return getattr(self.wrapped, name)


def same_array(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> bool:
    """Whether `a` is `b` or a full view of it, as the mask generator passes an uncropped image."""
    return bool(
        a.shape == b.shape and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    )


def decode(
    predictor: SAM2ImagePredictor,
    coords: torch.Tensor | None,
    labels: torch.Tensor | None,
    boxes: torch.Tensor | None,
    multimask_output: bool,
    mask_input: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`SAM2ImagePredictor._predict` without its upsampling: low-resolution logits (B x C x
    256 x 256) and predicted IoUs (B x C), for prompts already in the model's frame."""
    points = (coords, labels) if coords is not None and labels is not None else None
    if boxes is not None:  # sam2 feeds boxes to the prompt encoder as two labelled points
        corners = boxes.reshape(-1, 2, 2)
        corner_labels = torch.tensor([[2, 3]], dtype=torch.int, device=boxes.device)
        corner_labels = corner_labels.repeat(boxes.size(0), 1)
        points = (
            (torch.cat([corners, points[0]], dim=1), torch.cat([corner_labels, points[1]], dim=1))
            if points is not None
            else (corners, corner_labels)
        )
    model = predictor.model
    sparse, dense = model.sam_prompt_encoder(points=points, boxes=None, masks=mask_input)
    features = predictor._features
    low_res, iou, _, _ = model.sam_mask_decoder(
        image_embeddings=features["image_embed"][-1].unsqueeze(0),
        image_pe=model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask_output,
        repeat_image=points is not None and points[0].shape[0] > 1,
        high_res_features=[level[-1].unsqueeze(0) for level in features["high_res_feats"]],
    )
    return low_res, iou


def upsample(
    predictor: SAM2ImagePredictor, low_res: torch.Tensor, orig_hw: tuple[int, int]
) -> torch.Tensor:
    """Masks (B x C x 256 x 256 logits) at the image's size, thresholded: B x C x H x W bool."""
    logits = predictor._transforms.postprocess_masks(low_res, orig_hw)
    return cast(torch.Tensor, logits > predictor.mask_threshold)


def best_of(low_res: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
    """Each prompt's candidate with the highest predicted IoU (the first, on a tie, as
    `np.argmax` picks): B x 1 x 256 x 256."""
    best = iou.argmax(dim=1)
    return low_res[torch.arange(low_res.shape[0], device=low_res.device), best][:, None]


def rle_counts(masks: torch.Tensor) -> list[Counts]:
    """Uncompressed COCO run lengths (column-major, a run of zeros first) of each of N x H x W
    boolean masks, computed where the masks are; only the change positions are copied back."""
    n, height, width = masks.shape
    if n == 0:
        return []
    flat = masks.transpose(1, 2).reshape(n, height * width)
    change = torch.nonzero(flat[:, 1:] != flat[:, :-1]).cpu().numpy()
    first = flat[:, 0].cpu().numpy()
    splits = np.searchsorted(change[:, 0], np.arange(1, n))
    return [
        counts_from_changes(positions, height * width, starts_set=bool(first[index]))
        for index, positions in enumerate(np.split(change[:, 1] + 1, splits))
    ]


def predict(
    predictor: SAM2ImagePredictor,
    point_coords: npt.NDArray[np.float32] | None,
    point_labels: npt.NDArray[np.int32] | None,
    boxes: npt.NDArray[np.float32] | None,
    mask_input: torch.Tensor | None,
    *,
    multimask_output: bool,
    every_candidate: bool,
) -> tuple[npt.NDArray[np.float32], torch.Tensor, torch.Tensor]:
    """`SAM2ImagePredictor.predict` for B prompts, kept on the device: the predicted IoUs
    (B x C, on the host), the thresholded masks at the image's size (B x K x H x W bool, on the
    device; K = C with `every_candidate`, else 1: each prompt's best) and each prompt's best
    low-resolution logits, clamped as sam2 returns them (B x 1 x 256 x 256), for `refine`."""
    mask_input, coords, labels, box = predictor._prep_prompts(
        point_coords, point_labels, boxes, mask_input, normalize_coords=True
    )
    low_res, iou = decode(predictor, coords, labels, box, multimask_output, mask_input)
    best = best_of(low_res, iou)
    masks = upsample(predictor, low_res if every_candidate else best, predictor._orig_hw[-1])
    return iou.float().cpu().numpy(), masks, torch.clamp(best, -32.0, 32.0)


def process_batch(
    generator: SAM2AutomaticMaskGenerator,
    points: npt.NDArray[np.float64],
    im_size: tuple[int, int],
    crop_box: list[int],
    orig_size: tuple[int, int],
) -> MaskData:
    """`SAM2AutomaticMaskGenerator._process_batch` (without `use_m2m`) with the predicted-IoU
    filter applied to the 256x256 logits, so that only masks that pass it are upsampled to
    the crop's size (sam2 upsamples every candidate as float32 first: 3 x points_per_batch
    full-size masks), and run lengths computed with one copy to the host. Same masks, same
    scores, same order."""
    predictor = generator.predictor
    grid = torch.as_tensor(points, dtype=torch.float32, device=predictor.device)
    coords = predictor._transforms.transform_coords(grid, normalize=True, orig_hw=im_size)
    labels = torch.ones(coords.shape[0], dtype=torch.int, device=coords.device)
    low_res, iou = decode(
        predictor, coords[:, None, :], labels[:, None], None, generator.multimask_output
    )
    data = MaskData(
        low_res_masks=low_res.flatten(0, 1),
        iou_preds=iou.flatten(0, 1),
        points=grid.repeat_interleave(low_res.shape[1], dim=0),
    )
    if generator.pred_iou_thresh > 0.0:
        data.filter(data["iou_preds"] > generator.pred_iou_thresh)
    upsampled = predictor._transforms.postprocess_masks(data["low_res_masks"][:, None], im_size)
    data["masks"] = upsampled[:, 0]
    del data["low_res_masks"]  # only `use_m2m` reads them, and it takes sam2's own path
    data["stability_score"] = calculate_stability_score(
        data["masks"], generator.mask_threshold, generator.stability_score_offset
    )
    if generator.stability_score_thresh > 0.0:
        data.filter(data["stability_score"] >= generator.stability_score_thresh)
    data["masks"] = data["masks"] > generator.mask_threshold
    data["boxes"] = batched_mask_to_box(data["masks"])
    height, width = orig_size
    data.filter(~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, width, height]))
    masks = uncrop_masks(data["masks"], crop_box, height, width)
    del data["masks"]
    data["rles"] = [{"size": [height, width], "counts": counts} for counts in rle_counts(masks)]
    return data
