"""GPU benchmark: the engine on one card, eager and with torch.compile.

    bench/gpu.sh            # on an H100/H200: hiera-large, bf16, 32x32 auto grid (< 8 min)
    bench/gpu.sh --small    # anywhere (CPU here): hiera-tiny, 4x4 grid, few repeats

Random weights (no download), so the numbers are those of the real architecture. Prints one
markdown table: image encoder, cached prompt and automatic mode in ms (medians), for eager and
compiled runs, with peak GPU memory.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sam2_contract.images import DecodedImage, image_id_for
from sam2_contract.models import SegmentRequest
from sam2_inference import EmbeddingCache, InferenceSettings, Sam2Engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="tiny model, small grid (CPU check)")
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    model, grid, repeats = ("tiny", 4, 2) if args.small else ("large", 32, 10)
    with tempfile.TemporaryDirectory() as tmp:
        settings = InferenceSettings(model=model, weights="random", random_dir=Path(tmp))
        engine = Sam2Engine.from_settings(settings)
    device = engine.device
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# SAM2 engine on {card}: {engine.info.model_id}, {engine.info.dtype}, random weights\n")
    print("| variant | image encoder ms | cached prompt ms | auto mode ms (grid) | peak GPU GiB |")
    print("|---|---:|---:|---:|---:|")
    variants = ["eager"] if args.no_compile else ["eager", "torch.compile"]
    for variant in variants:
        if variant == "torch.compile":
            # The encoder is nearly all of a first click; compile it and warm the compiled graph.
            engine.model.image_encoder = torch.compile(engine.model.image_encoder)
        row = _measure(engine, grid, repeats)
        print(
            f"| {variant} | {row[0]:.1f} | {row[1]:.1f} | {row[2]:.0f} ({grid}x{grid}) | {row[3]} |"
        )


def _measure(engine: Sam2Engine, grid: int, repeats: int) -> tuple[float, float, float, str]:
    if engine.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(engine.device)
    image = _image()
    click = SegmentRequest(image_id=image.image_id, point_coords=[[512, 384]], mask_format="rle")
    auto = SegmentRequest(
        image_id=image.image_id, mode="auto", points_per_side=grid, mask_format="rle"
    )

    def encode() -> None:
        engine.cache = EmbeddingCache(engine.cache.max_bytes)
        engine.segment(click, image=image)

    encode()  # warm-up (and, compiled, the compilation itself)
    encoder = _median(encode, repeats) - _median(
        lambda: engine.segment(click, image=image), repeats
    )
    cached = _median(lambda: engine.segment(click, image=image), repeats * 3)
    engine.segment(auto, image=image)
    auto_ms = _median(lambda: engine.segment(auto, image=image), max(1, repeats // 3))
    peak = "-"
    if engine.device.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated(engine.device) / 2**30:.1f}"
    return encoder, cached, auto_ms, peak


def _median(call: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        call()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _image() -> DecodedImage:
    rng = np.random.default_rng(0)
    pixels = np.zeros((768, 1024, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:768, 0:1024]
    for _ in range(12):
        cy, cx, r = rng.integers(0, 768), rng.integers(0, 1024), rng.integers(40, 200)
        pixels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = rng.integers(0, 256, 3)
    return DecodedImage(pixels=pixels, format="raw", image_id=image_id_for(pixels))


if __name__ == "__main__":
    main()
