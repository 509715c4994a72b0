"""GPU benchmark, one stage per run: one model, pipeline and variant, one table row.

    bench/gpu.sh                                      # every stage, each under its own timeout
    python bench/gpu.py --model large --pipeline fast --variant compile --rows rows.md
    python bench/gpu.py --model tiny --grid 4 --repeats 2                # anywhere (CPU too)

Random weights built from the official SAM 2.1 config (no download), so the numbers are those
of the real architecture. The row is appended to `--rows` as soon as it is measured, so a stage
that a later one's timeout kills keeps what it printed.

Columns: the image encoder alone; a new image and one click (a JPEG decoded, encoded, prompted,
RLE out: what a first click costs the server); a click on a cached embedding; automatic mode on
a grid; and peak GPU memory. Medians in milliseconds. bench/gpu.sh writes the table header.
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from sam2_contract.images import DecodedImage, load_image
from sam2_contract.models import AutoSegmentResponse, SegmentRequest
from sam2_inference import EmbeddingCache, InferenceSettings, Sam2Engine

Variant = Literal["eager", "compile"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="large", choices=["tiny", "small", "base-plus", "large"])
    parser.add_argument("--pipeline", default="fast", choices=["exact", "fast"])
    parser.add_argument("--variant", default="eager", choices=["eager", "compile"])
    parser.add_argument("--grid", type=int, default=32, help="auto mode points per side")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rows", type=Path, help="append the row to this markdown file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = InferenceSettings(
            model=args.model, weights="random", random_dir=Path(tmp), pipeline=args.pipeline
        )
        engine = Sam2Engine.from_settings(settings)
    row = measure(engine, args.variant, args.grid, args.repeats)
    print(row, end="", flush=True)
    if args.rows:
        with args.rows.open("a") as rows:
            rows.write(row)


def measure(engine: Sam2Engine, variant: Variant, grid: int, repeats: int) -> str:
    """One markdown table row for this engine and variant."""
    device = engine.device
    if variant == "compile":
        # The encoder is nearly all of a first click; its input is always 1024x1024.
        engine.model.image_encoder = torch.compile(engine.model.image_encoder)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    jpeg = _jpeg()
    image = load_image(jpeg)
    upload = SegmentRequest(
        image=base64.b64encode(jpeg).decode(), point_coords=[[512, 384]], mask_format="rle"
    )
    click = SegmentRequest(image_id=image.image_id, point_coords=[[512, 384]], mask_format="rle")
    auto = SegmentRequest(
        image_id=image.image_id, mode="auto", points_per_side=grid, mask_format="rle"
    )

    def fresh() -> None:
        engine.cache = EmbeddingCache(engine.cache.max_bytes)

    def encoder_and_click(decoded: DecodedImage | None) -> Callable[[], object]:
        def run() -> None:
            fresh()
            engine.segment(upload if decoded is None else click, image=decoded)

        return run

    for _ in range(2 if variant == "compile" else 1):  # warm-up; compiled: the compilation
        encoder_and_click(image)()
    engine.segment(click, image=image)
    cached = _median(lambda: engine.segment(click), repeats * 3, device)
    encoder = _median(encoder_and_click(image), repeats, device) - cached
    first = _median(encoder_and_click(None), repeats, device)
    answer = engine.segment(auto, image=image)
    masks = answer.count if isinstance(answer, AutoSegmentResponse) else 0
    auto_ms = _median(lambda: engine.segment(auto), max(1, repeats // 3), device)
    peak = "-"
    if device.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}"
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    name = f"{engine.info.name} ({engine.info.dtype})"
    stage = f"{engine.info.pipeline} {variant}"
    return (
        f"| {card} | {name} | {stage} | {encoder:.1f} | {first:.1f} | {cached:.1f} "
        f"| {auto_ms:.0f} ({grid}x{grid}, {masks}) | {peak} |\n"
    )


def _median(call: Callable[[], object], repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        call()
        _sync(device)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _jpeg() -> bytes:
    """A 1024x768 photo-sized JPEG of coloured discs (seeded)."""
    rng = np.random.default_rng(0)
    pixels = np.zeros((768, 1024, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:768, 0:1024]
    for _ in range(12):
        cy, cx, r = rng.integers(0, 768), rng.integers(0, 1024), rng.integers(40, 200)
        pixels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = rng.integers(0, 256, 3)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


if __name__ == "__main__":
    main()
