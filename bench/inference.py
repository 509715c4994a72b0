"""Inference benchmark: what the embedding cache saves, what each mask format costs, what the
`fast` pipeline saves per click over `exact`, and what automatic mode's RLE answers cost with
and without building each mask.

Prints markdown tables; every ratio compares two numbers measured in this same run.

    .venv/bin/python bench/inference.py [--model tiny] [--device auto] [--repeats 20]

Uses seeded random weights (no download): timings are those of the real architecture, the masks
themselves are meaningless, so the wire-size table also reports a smooth object-like mask.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
from sam2_contract import (
    AutoSegmentResponse,
    PromptPrediction,
    SegmentRequest,
    decode_mask,
    encode_mask,
    encode_rle,
    rle_from_counts,
)
from sam2_contract.images import image_id_for_file
from sam2_contract.models import Pipeline
from sam2_inference import EmbeddingCache, InferenceSettings, Sam2Engine
from sam2_inference.runtime.device import inference_context

WIDTH, HEIGHT = 1024, 768


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--encoder-runs", type=int, default=3)
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--skip-auto", action="store_true", help="no automatic-mode tables")
    parser.add_argument("--only-pipelines", action="store_true", help="only the pipeline tables")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        settings = InferenceSettings(
            model=args.model, weights="random", device=args.device, random_dir=Path(tmp)
        )
        engine = Sam2Engine.from_settings(settings)
    pixels = _scene()
    print(
        f"# SAM2 inference benchmark: {engine.info.model_id}, random weights, {engine.info.device}"
    )
    print(f"image {WIDTH}x{HEIGHT}; medians over the runs shown\n")
    if not args.only_pipelines:
        mask = _cache_table(engine, pixels, args.repeats, args.encoder_runs)
        _format_table(mask, _object_mask(), args.repeats)
    engines = {name: _engine_like(engine, name) for name in ("exact", "fast")}
    _pipeline_table(engines, pixels, args.repeats, args.encoder_runs)
    if not args.skip_auto:
        _auto_pipeline_table(engines, pixels, args.points_per_side)
    if not (args.skip_auto or args.only_pipelines):
        _auto_rle_table(engine, pixels, args.points_per_side)


def _cache_table(
    engine: Sam2Engine, pixels: np.ndarray, repeats: int, encoder_runs: int
) -> np.ndarray:
    image = _b64_png(pixels)
    click = {"point_coords": [[512, 384]], "point_labels": [1], "mask_format": "rle"}
    cold, warm = [], []
    response: Any = None
    for run in range(encoder_runs):
        engine.cache = EmbeddingCache(engine.cache.max_bytes)
        response = engine.segment(SegmentRequest(image=image, **click), namespace=f"cold{run}")
        cold.append(response.timings_ms)
    image_id = response.image_id
    assert image_id == image_id_for_file(base64.b64decode(image))  # named by its file
    for _ in range(repeats):
        started = time.perf_counter()
        warm_response = engine.segment(
            SegmentRequest(image_id=image_id, **click), namespace=f"cold{encoder_runs - 1}"
        )
        warm.append((time.perf_counter() - started) * 1000)
        assert warm_response.cached
    encoder = statistics.median(t.embed_ms for t in cold)
    cold_total = statistics.median(t.total_ms for t in cold)
    cached = statistics.median(warm)
    print("## Image encoder vs a cached prompt\n")
    print("| step | ms (median) | ratio |")
    print("|---|---:|---:|")
    print(
        f"| image encoder (`set_image`) | {encoder:.1f} | {encoder / cached:.1f}x a cached prompt |"
    )
    first = "first click on an image (decode + encoder + prompt)"
    print(f"| {first} | {cold_total:.1f} | {cold_total / cached:.1f}x |")
    print(f"| repeat click by `image_id` (cache hit, end to end) | {cached:.1f} | 1.0x |")
    print()
    return decode_mask(response.mask)


def _format_table(model_mask: np.ndarray, object_mask: np.ndarray, repeats: int) -> None:
    print("## One 1024x768 mask on the wire, per `mask_format`\n")
    print("| mask | format | JSON bytes | vs bool2d | encode+serialise ms | parse+decode ms |")
    print("|---|---|---:|---:|---:|---:|")
    for label, mask in (
        ("SAM2 output (random weights)", model_mask),
        ("smooth object (ellipse)", object_mask),
    ):
        sizes = {}
        for fmt in ("bool2d", "rle", "png"):
            wire = _to_wire(mask, fmt)
            sizes[fmt] = len(wire)
            encode_ms = _median_ms(partial(_to_wire, mask, fmt), repeats)
            decode_ms = _median_ms(partial(_from_wire, wire), repeats)
            assert np.array_equal(_from_wire(wire), mask)
            ratio = (
                f"{sizes['bool2d'] / sizes[fmt]:.0f}x smaller" if fmt != "bool2d" else "baseline"
            )
            cells = [label, fmt, f"{sizes[fmt]:,}", ratio, f"{encode_ms:.2f}", f"{decode_ms:.2f}"]
            print("| " + " | ".join(cells) + " |")
    print()


def _engine_like(engine: Sam2Engine, pipeline: Pipeline) -> Sam2Engine:
    """Another engine on the same model, with its own cache, on the given pipeline."""
    return Sam2Engine(
        engine.model,
        engine.info,
        EmbeddingCache(engine.cache.max_bytes),
        max_pixels=engine.max_pixels,
        auto_slice=engine.auto_slice,
        pipeline=pipeline,
    )


def _pipeline_table(
    engines: dict[str, Sam2Engine], pixels: np.ndarray, repeats: int, encoder_runs: int
) -> None:
    """The same clicks through an `exact` and a `fast` engine on one model, runs interleaved:
    server time (`timings_ms.total_ms`) for a click on a new image and on a cached one."""
    image = _b64_png(pixels)
    click = {"point_coords": [[512, 384]], "point_labels": [1], "mask_format": "rle"}
    new: dict[str, list[float]] = {name: [] for name in engines}
    cached: dict[str, list[float]] = {name: [] for name in engines}
    masks: dict[str, Any] = {}
    for run in range(max(encoder_runs, repeats)):
        for name, each in engines.items():
            if run < encoder_runs:
                each.cache = EmbeddingCache(each.cache.max_bytes)
                answer = each.segment(SegmentRequest(image=image, **click))
                new[name].append(answer.timings_ms.total_ms)
            answer = each.segment(SegmentRequest(image_id=answer.image_id, **click))
            cached[name].append(answer.timings_ms.total_ms)
            masks[name] = answer.mask
    assert masks["exact"] == masks["fast"]  # the same answer
    device = engines["fast"].info.device
    print(f"## Pipelines: `exact` vs `fast` on {device}, a click (server time, RLE)\n")
    print("| click | exact ms | fast ms | fast vs exact |")
    print("|---|---:|---:|---:|")
    for label, times in (("new image", new), ("cached embedding", cached)):
        exact, fast = statistics.median(times["exact"]), statistics.median(times["fast"])
        print(f"| {label} | {exact:.1f} | {fast:.1f} | {fast / exact:.2f}x |")
    print()


def _auto_pipeline_table(engines: dict[str, Sam2Engine], pixels: np.ndarray, side: int) -> None:
    """Automatic mode through both pipelines on one cached embedding, with thresholds that keep
    about half of random weights' candidates (their predicted IoUs are 0.47-0.55)."""
    knobs = {
        "mode": "auto",
        "points_per_side": side,
        "pred_iou_thresh": 0.5,
        "stability_score_offset": 0.05,
        "stability_score_thresh": 0.5,
        "box_nms_thresh": 1.0,  # random weights give near-duplicates: keep them all
        "mask_format": "rle",
    }
    image = _b64_png(pixels)
    image_id = image_id_for_file(base64.b64decode(image))
    rows: dict[str, AutoSegmentResponse] = {}
    for name, each in engines.items():
        each.segment(SegmentRequest(image=image, point_coords=[[1, 1]], point_labels=[1]))
        answer = each.segment(SegmentRequest(image_id=image_id, **knobs))  # type: ignore[arg-type]
        assert isinstance(answer, AutoSegmentResponse)
        rows[name] = answer
    exact = rows["exact"]
    assert exact.masks == rows["fast"].masks  # the same answer
    print(f"## Pipelines: automatic mode ({side}x{side} grid, cached embedding), server time\n")
    print("| pipeline | masks | predict ms | total ms | vs exact |")
    print("|---|---:|---:|---:|---:|")
    for name, answer in rows.items():
        timings = answer.timings_ms
        ratio = timings.total_ms / exact.timings_ms.total_ms
        cells = f"{timings.predict_ms:.0f} | {timings.total_ms:.0f} | {ratio:.2f}x"
        print(f"| {name} | {answer.count} | {cells} |")
    print()


def _auto_rle_table(engine: Sam2Engine, pixels: np.ndarray, side: int) -> None:
    """Automatic mode answering RLE, as the service did (sam2 builds every mask, which is then
    encoded) and does (sam2's run lengths compressed as they are), on the same model and image.
    Thresholds at 0 and no duplicate removal keep every mask, so there are many to encode."""
    print(f"## Automatic mode ({side}x{side} grid) answering RLE\n")
    print("| path | masks | generate ms | RLE ms | total ms | vs before |")
    print("|---|---:|---:|---:|---:|---:|")
    knobs = {
        "points_per_side": side,
        "points_per_batch": 4,  # the service slices batches small on a CPU too
        "pred_iou_thresh": 0.0,
        "stability_score_thresh": 0.0,
        "box_nms_thresh": 1.0,  # random weights give near-duplicates: keep them all
    }
    rows, answers = [], []
    for label, mode in (("before: masks, then RLE", "binary_mask"), ("now: RLE from runs", "")):
        generator = SAM2AutomaticMaskGenerator(
            engine.model, output_mode=mode or "uncompressed_rle", **knobs
        )
        with inference_context(engine.device):
            started = time.perf_counter()
            records = generator.generate(pixels)
            generated = time.perf_counter()
        if mode:
            rles = [encode_rle(record["segmentation"]) for record in records]
        else:
            rles = [
                rle_from_counts(r["segmentation"]["size"], r["segmentation"]["counts"])
                for r in records
            ]
        done = time.perf_counter()
        answers.append(rles)
        rows.append((label, len(rles), generated - started, done - generated, done - started))
    assert answers[0] == answers[1]  # the same answer
    for label, count, generate_s, rle_s, total_s in rows:
        ratio = f"{total_s / rows[0][4]:.2f}x"
        cells = [f"{generate_s * 1000:.0f}", f"{rle_s * 1000:.0f}", f"{total_s * 1000:.0f}"]
        print(f"| {label} | {count} | " + " | ".join(cells) + f" | {ratio} |")
    print()


def _to_wire(mask: np.ndarray, fmt: str) -> bytes:
    """What the server does per mask: encode it, then serialise it into the JSON body."""
    response = PromptPrediction(mask=encode_mask(mask, fmt), score=1.0, all_scores=[1.0])  # type: ignore[arg-type]
    return response.model_dump_json(include={"mask"}).encode()


def _from_wire(body: bytes) -> np.ndarray:
    """What a client does: parse the JSON, then decode the mask."""
    return decode_mask(json.loads(body)["mask"])


def _median_ms(call: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _scene() -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    pixels = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    pixels[:] = (40, 90, 160)
    for _ in range(12):
        cy, cx, r = rng.integers(0, HEIGHT), rng.integers(0, WIDTH), rng.integers(40, 200)
        pixels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = rng.integers(0, 256, 3)
    return pixels


def _object_mask() -> np.ndarray:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    return ((yy - 400) / 250.0) ** 2 + ((xx - 500) / 320.0) ** 2 <= 1


def _b64_png(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


if __name__ == "__main__":
    main()
