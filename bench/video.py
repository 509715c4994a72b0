"""Video tracking speed (issue 14): frames per second of propagation and peak memory, for a
clip of N frames and K objects, through the service's own VideoSession.

    python bench/video.py --model large --frames 240 --objects 4 --rows rows.md   # a GPU
    python bench/video.py --model tiny --frames 4 --objects 1                       # anywhere

Random weights from the official config, with the object-score head's output bias raised
(+20) so that every object is "present" and tracked: a random checkpoint otherwise predicts no
object on any frame and skips most of the work. The clip is synthetic (moving discs, 1024x576
by default); the objects are clicked on frame 0 at their discs' centres. Prints one markdown row
(appended to --rows): session start (the clip to the model and frame 0 encoded), the prompts,
propagation frames per second, and peak GPU memory (or "-" on the CPU).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import get_args

import numpy as np
import torch
from PIL import Image
from sam2_contract.models import ModelName
from sam2_inference.runtime.device import pick_device
from sam2_inference.runtime.weights import Checkpoint, build_random_checkpoint
from sam2_inference.video.tracker import VideoSession, decode_frames, load_video_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="tiny", choices=list(get_args(ModelName)))
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--objects", type=int, default=1)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=576)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rows", type=Path, help="append the row to this markdown file")
    parser.add_argument(
        "--offload",
        default="none",
        choices=["none", "video", "state", "both"],
        help="sam2's offload_video_to_cpu / offload_state_to_cpu (SAM2_VIDEO_OFFLOAD)",
    )
    parser.add_argument(
        "--random-dir", type=Path, help="keep the raised-bias random checkpoint here, for reuse"
    )
    args = parser.parse_args()
    device = pick_device(args.device)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = _checkpoint(args.model, args.random_dir or Path(tmp))
        predictor = load_video_model(args.model, Checkpoint(path, "random", True), device)
    loaded = time.perf_counter()
    files, centres = _clip(args.frames, args.objects, args.width, args.height)
    frames = decode_frames(files)
    # Where the time before the measurement went (the log's, for a run cut short by a timeout).
    print(
        f"model {loaded - began:.1f} s, clip made and decoded {time.perf_counter() - loaded:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    session = VideoSession(predictor, frames, offload=args.offload)
    _sync(device)
    start_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    for object_id, (x, y) in enumerate(centres, start=1):
        session.add_prompt(0, object_id, points=[[x, y]], labels=[1])
    _sync(device)
    prompt_ms = (time.perf_counter() - started) * 1000 / len(centres)
    started = time.perf_counter()
    tracked = sum(1 for _ in session.propagate(direction="forward"))
    _sync(device)
    fps = tracked / (time.perf_counter() - started)
    peak = "-"
    if device.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}"
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    offload = "" if args.offload == "none" else f", offload {args.offload}"
    row = (
        f"| {card}{offload} | {args.model} | {args.frames} x {args.width}x{args.height} "
        f"| {args.objects} "
        f"| {start_ms:.0f} | {prompt_ms:.0f} | {fps:.1f} | {peak} |\n"
    )
    print(row, end="", flush=True)
    if args.rows:
        with args.rows.open("a") as rows:
            rows.write(row)


def _checkpoint(model: ModelName, folder: Path) -> Path:
    """The random checkpoint of `model` with the object-score bias raised, in `folder`: built
    once (hiera-large's file is about 900 MB: the 1- and 4-object runs share it), and named
    only when whole, so a run stopped while writing it leaves nothing to reuse."""
    path = folder / f"video-{model}-seed0-bias20.pt"
    if path.exists():
        return path
    draft = build_random_checkpoint(model, folder / f"video-{model}.draft", seed=0)
    state = torch.load(draft, map_location="cpu")
    state["model"]["sam_mask_decoder.pred_obj_score_head.layers.2.bias"].fill_(20.0)
    torch.save(state, draft)
    draft.replace(path)
    return path


def _clip(
    count: int, objects: int, width: int, height: int
) -> tuple[list[bytes], list[tuple[int, int]]]:
    """JPEG frames of `objects` coloured discs moving across a grey field, and their centres
    on frame 0."""
    rng = np.random.default_rng(0)
    starts = rng.uniform([0.2 * width, 0.2 * height], [0.8 * width, 0.8 * height], (objects, 2))
    steps = rng.uniform(-3, 3, (objects, 2))
    colours = rng.integers(0, 256, (objects, 3))
    radius = min(width, height) // 10
    yy, xx = np.mgrid[0:height, 0:width]
    files = []
    for index in range(count):
        pixels = np.full((height, width, 3), 128, dtype=np.uint8)
        for (cx, cy), (dx, dy), colour in zip(starts, steps, colours, strict=True):
            x, y = cx + dx * index, cy + dy * index
            pixels[(xx - x) ** 2 + (yy - y) ** 2 <= radius**2] = colour
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "JPEG", quality=90)
        files.append(out.getvalue())
    return files, [(int(x), int(y)) for x, y in starts]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
