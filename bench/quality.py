"""Quality of the `fast` pipeline against `exact` (SAM2's own code), on the same model.

For each of N images, sent as a JPEG file as an upload is (so where the fast pipeline decodes
JPEG on the GPU, nvjpeg's pixels are part of what is compared): clicks at seeded random points
(the best mask of each, compared by IoU, and the predicted scores) and one automatic-mode run
(masks matched greedily by IoU >= 0.5; the matched mean IoU and the mask counts). Prints one
markdown table.

    .venv/bin/python bench/quality.py [--images 4] [--clicks 8] [--points-per-side 8]
                                      [--device auto] [--model tiny] [--weights random]

With random weights (the default; no download) masks are noise, which makes this a strict test
of the pipeline: any difference in upsampling or thresholding shows up at once. Pass a
checkpoint path as --weights for real masks.
"""

from __future__ import annotations

import argparse
import copy
import io
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sam2_contract import SegmentRequest, decode_mask
from sam2_contract.images import image_id_for_file
from sam2_inference import EmbeddingCache, InferenceSettings, Sam2Engine

MATCH_IOU = 0.5
# Random weights predict IoUs of 0.47-0.55 and noisy masks: the default thresholds (0.8, 0.95)
# would keep nothing, and duplicate removal nearly everything. These keep about half.
RANDOM_WEIGHTS_AUTO = {
    "pred_iou_thresh": 0.5,
    "stability_score_offset": 0.05,
    "stability_score_thresh": 0.5,
    "box_nms_thresh": 1.0,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--clicks", type=int, default=8)
    parser.add_argument("--points-per-side", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--weights", default="random")
    parser.add_argument("--random-dir", type=Path, help="keep random checkpoints here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        settings = InferenceSettings(
            model=args.model,
            weights=args.weights,
            device=args.device,
            random_dir=args.random_dir or Path(tmp),
            pipeline="exact",
        )
        loaded = Sam2Engine.from_settings(settings)
    # Each its own model: on CUDA the fast engine casts its weights and captures CUDA graphs.
    engines = {
        name: Sam2Engine(
            loaded.model if name == "exact" else copy.deepcopy(loaded.model),
            loaded.info,
            EmbeddingCache(loaded.cache.max_bytes),
            max_pixels=loaded.max_pixels,
            pipeline=name,
        )
        for name in ("exact", "fast")
    }
    acceleration = engines["fast"].acceleration
    rng = np.random.default_rng(0)
    click_ious, score_diffs, auto_ious, counts = [], [], [], []
    for index in range(args.images):
        height, width = (int(v) for v in rng.integers(240, 1024, size=2))
        image = _jpeg(_scene(height, width, seed=index))
        for _ in range(args.clicks):
            point = [float(rng.integers(0, width)), float(rng.integers(0, height))]
            click = {"point_coords": [point], "point_labels": [1]}
            a, b = (_answer(e, image, **click) for e in engines.values())
            click_ious.append(_iou(decode_mask(a["mask"]), decode_mask(b["mask"])))
            pairs = zip(a["all_scores"], b["all_scores"], strict=True)
            score_diffs += [abs(x - y) for x, y in pairs]
        auto = {"mode": "auto", "points_per_side": args.points_per_side}
        if loaded.info.random_weights:
            auto |= RANDOM_WEIGHTS_AUTO
        exact, fast = (
            [decode_mask(m["segmentation"]) for m in _answer(e, image, **auto)["masks"]]
            for e in engines.values()
        )
        auto_ious += _matched(exact, fast)
        counts.append((len(exact), len(fast)))
    device = loaded.info.device
    print(f"# `fast` vs `exact`: {loaded.info.model_id}, {loaded.info.weights} weights, {device}\n")
    decoders = f"JPEG decoded by {engines['fast'].decoder.name}; exact: by pillow"
    if acceleration is not None:
        recipe = f"float32 weights under {loaded.info.dtype} autocast"
        print(f"fast: {acceleration.describe()}, {decoders}, {recipe}\n")
    else:
        print(f"fast: {decoders}\n")
    print(
        f"{args.images} images, {args.clicks} clicks each, automatic mode {args.points_per_side}"
        f"x{args.points_per_side}\n"
    )
    print("| case | compared | mIoU | 1st-percentile IoU | max score difference |")
    print("|---|---:|---:|---:|---:|")
    print(f"| click, best mask | {len(click_ious)} | {_row(click_ious)} | {max(score_diffs):.2e} |")
    exact_masks, fast_masks = sum(c[0] for c in counts), sum(c[1] for c in counts)
    matched = f"{len(auto_ious)} matched of {exact_masks} exact / {fast_masks} fast"
    print(f"| automatic mode, matched at IoU >= {MATCH_IOU} | {matched} | {_row(auto_ious)} | - |")


def _jpeg(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def _answer(engine: Sam2Engine, image: bytes, **fields: Any) -> dict[str, Any]:
    """The answer to a request naming the uploaded file, as the gateway forwards it."""
    request = SegmentRequest(image_id=image_id_for_file(image), mask_format="rle", **fields)
    return engine.segment(request, image_file=image).model_dump()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _matched(exact: list[np.ndarray], fast: list[np.ndarray]) -> list[float]:
    """Greedy one-to-one matching, best pairs first; pairs under MATCH_IOU stay unmatched."""
    pairs = sorted(
        ((_iou(a, b), i, j) for i, a in enumerate(exact) for j, b in enumerate(fast)),
        reverse=True,
    )
    used_i: set[int] = set()
    used_j: set[int] = set()
    ious = []
    for iou, i, j in pairs:
        if iou >= MATCH_IOU and i not in used_i and j not in used_j:
            used_i.add(i)
            used_j.add(j)
            ious.append(iou)
    return ious


def _row(ious: list[float]) -> str:
    if not ious:
        return "- | -"
    return f"{statistics.fmean(ious):.4f} | {float(np.percentile(ious, 1)):.4f}"


def _scene(height: int, width: int, *, seed: int) -> np.ndarray:
    """Flat shapes on a background: something like objects, whatever the weights."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:] = rng.integers(0, 256, 3)
    for _ in range(10):
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        r = rng.integers(20, max(21, min(height, width) // 3))
        pixels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = rng.integers(0, 256, 3)
    return pixels


if __name__ == "__main__":
    main()
