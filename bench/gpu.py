"""GPU benchmark, one stage per run: one model, pipeline and variant, one table row.

    bench/gpu.sh                                      # every stage, each under its own timeout
    python bench/gpu.py --model large --pipeline fast --precision bfloat16 --graphs on --rows r.md
    python bench/gpu.py --model tiny --grid 4 --repeats 2                # anywhere (CPU too)

Random weights built from the official SAM 2.1 config (no download), so the numbers are those
of the real architecture. The row is appended to `--rows` as soon as it is measured, so a stage
that a later one's timeout kills keeps what it printed.

Columns: the image encoder alone; a new image and one click (a JPEG decoded, by Pillow or on
the GPU as `--decoder` says, encoded, prompted, RLE out: what a first click costs the server);
a click on a cached embedding; automatic mode on a grid, with sam2's default thresholds (random
weights: no mask survives them) and with loose ones that keep about half the candidates (so
that the masks' post-processing is in the time); the start-up (model load, warm-up, graph
capture and compilation); and peak GPU memory. Medians in milliseconds. bench/gpu.sh writes the
table header. `--decode` also times decoding the JPEG alone: Pillow's (then sent to the
device) and torchvision's nvjpeg on the GPU.
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
from typing import get_args

import numpy as np
import torch
from PIL import Image
from sam2_contract.images import DecodedImage, load_image
from sam2_contract.models import AutoSegmentResponse, SegmentRequest
from sam2_inference import EmbeddingCache, InferenceSettings, Sam2Engine
from sam2_inference.config import CompileMode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="large", choices=["tiny", "small", "base-plus", "large"])
    parser.add_argument("--pipeline", default="fast", choices=["exact", "fast"])
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--graphs", default="auto", choices=["auto", "on", "off"])
    parser.add_argument(
        "--compile",
        default="off",
        choices=list(get_args(CompileMode)),
        help="aot: the AOTInductor package in --aot-dir, compiled if absent (start-up says "
        "which); aot-max-autotune: the same with Inductor's kernel autotuning",
    )
    parser.add_argument("--aot-dir", type=Path, default=Path("/tmp/sam2-aot"))
    parser.add_argument(
        "--decoder",
        default="auto",
        choices=["auto", "pillow", "torchvision"],
        help="what decodes the uploaded JPEG (auto: torchvision's nvjpeg in the fast pipeline "
        "on CUDA)",
    )
    parser.add_argument("--grid", type=int, default=32, help="auto mode points per side")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--auto-repeats", type=int, default=3)
    parser.add_argument("--loose", action="store_true", help="also auto mode, loose thresholds")
    parser.add_argument("--rows", type=Path, help="append the row to this markdown file")
    parser.add_argument("--random-dir", type=Path, help="keep random checkpoints here")
    parser.add_argument("--decode", type=Path, help="write JPEG decode times to this file")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        settings = InferenceSettings(
            model=args.model,
            weights="random",
            random_dir=args.random_dir or Path(tmp),
            pipeline=args.pipeline,
            precision=args.precision,
            cuda_graphs=args.graphs,
            compile=args.compile,
            image_decoder=args.decoder,
            aot_dir=args.aot_dir,
        )
        engine = Sam2Engine.from_settings(settings)
    row = measure(engine, args.grid, args.repeats, args.auto_repeats, args.loose, started)
    print(row, end="", flush=True)
    if args.rows:
        with args.rows.open("a") as rows:
            rows.write(row)
    if args.decode:
        args.decode.write_text(decode_times(engine.device))


def measure(
    engine: Sam2Engine, grid: int, repeats: int, auto_repeats: int, loose_too: bool, started: float
) -> str:
    """One markdown table row for this engine."""
    device = engine.device
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
    loose = auto.model_copy(update=LOOSE)
    batched = auto.model_copy(update={"points_per_batch": 64})

    def fresh() -> None:
        engine.cache = EmbeddingCache(engine.cache.max_bytes)

    def encoder_and_click(decoded: DecodedImage | None) -> Callable[[], object]:
        def run() -> None:
            fresh()
            engine.segment(upload if decoded is None else click, image=decoded)

        return run

    for _ in range(2):  # warm-up: kernel selection, graph capture, compilation
        encoder_and_click(image)()
    engine.segment(click, image=image)
    engine.segment(auto, image=image)
    start_up_s = time.perf_counter() - started
    cached = _median(lambda: engine.segment(click), repeats * 3, device)
    encoder = _median(encoder_and_click(image), repeats, device) - cached
    first = _median(encoder_and_click(None), repeats, device)
    auto_ms, masks = _auto(engine, auto, auto_repeats, device)
    batched_ms, _ = _auto(engine, batched, auto_repeats, device)
    loose_column = "-"
    if loose_too:
        loose_ms, kept = _auto(engine, loose, auto_repeats, device)
        loose_column = f"{loose_ms:.0f} ({kept})"
    peak = "-"
    if device.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}"
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    how = engine.acceleration.describe() if engine.acceleration else "float32 weights, eager"
    if engine.acceleration is None and device.type == "cuda":
        how = "float32 weights under bfloat16 autocast, eager (sam2's recipe)"
    how += f"; JPEG decoded by {engine.decoder.name}"
    return (
        f"| {card} | {engine.info.name} | {engine.info.pipeline}: {how} | {encoder:.1f} "
        f"| {first:.1f} | {cached:.2f} | {auto_ms:.0f} ({grid}x{grid}, {masks}) "
        f"| {batched_ms:.0f} | {loose_column} | {start_up_s:.0f} | {peak} |\n"
    )


LOOSE = {"pred_iou_thresh": 0.5, "stability_score_offset": 0.05, "stability_score_thresh": 0.5}
"""Thresholds that keep about half of random weights' candidates (their IoUs are 0.47-0.55)."""


def _auto(
    engine: Sam2Engine, request: SegmentRequest, repeats: int, device: torch.device
) -> tuple[float, int]:
    answer = engine.segment(request)  # warm: its batch shapes seen once
    masks = answer.count if isinstance(answer, AutoSegmentResponse) else 0
    return _median(lambda: engine.segment(request), repeats, device), masks


def decode_times(device: torch.device) -> str:
    """A markdown table: the bench JPEG decoded by the service's decoder (PIL, on the CPU,
    then sent to the device) and by torchvision's nvjpeg (on the GPU), medians of 50."""
    jpeg = _jpeg()
    rows = ["| decoder | ms (median of 50) |", "|---|---:|"]

    def pil() -> None:
        pixels = load_image(jpeg).pixels
        torch.from_numpy(pixels).to(device)

    rows.append(f"| PIL on the CPU, then to {device.type} | {_median(pil, 50, device):.2f} |")
    if device.type == "cuda":
        from torchvision.io import decode_jpeg

        data = torch.frombuffer(bytearray(jpeg), dtype=torch.uint8)
        decode_jpeg(data, device=device)
        gpu = _median(lambda: decode_jpeg(data, device=device), 50, device)
        rows.append(f"| torchvision nvjpeg on the GPU | {gpu:.2f} |")
    return "\n".join(rows) + "\n"


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
