"""Fairness benchmark: how long a click takes while another tenant's automatic mode runs, and
how close automatic mode's time estimate comes to what it then takes.

Prints markdown tables; every ratio compares two numbers measured in this same run.

    .venv/bin/python bench/fairness.py [--model tiny] [--device auto] [--clicks 15]

One engine, two threads: an automatic-mode job (the API's default knobs but `points_per_side`,
on an image whose embedding is cached, or with one crop layer) holds the model, and clicks by
`image_id` on another image arrive at random moments while it runs. "Solo" is the same click
with the model idle. Rows name the decoder batch size automatic mode runs at: the service's
fixed slice (`SAM2_AUTO_SLICE_PROMPTS=auto`: one prompt on a CPU, 128 on a GPU), a middle size,
and 64 as asked (slicing off), so the table shows what the slice costs a job and saves a click.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from sam2_contract import SegmentRequest
from sam2_contract.images import DecodedImage, image_id_for
from sam2_inference import InferenceSettings, Sam2Engine
from sam2_inference.config import AutoSlice
from sam2_inference.scheduling.costs import auto_work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--clicks", type=int, default=15)
    parser.add_argument("--points-per-side", type=int, default=16)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        settings = InferenceSettings(
            model=args.model, weights="random", device=args.device, random_dir=Path(tmp)
        )
        engine = Sam2Engine.from_settings(settings)
    engine.warm_up()
    info = engine.info
    print(f"# SAM2 fairness benchmark: {info.model_id}, random weights, {info.device}")
    print(
        f"warm-up estimate: encoder pass {engine.costs.encoder_ms:.1f} ms, one auto-mode prompt "
        f"{engine.costs.prompt_ms:.2f} ms; automatic mode's decoder batches hold "
        f"{engine.slice_prompts} prompts here\n"
    )
    auto_image, click_image = _image(0, 768, 1024), _image(1, 768, 1024)
    for image in (auto_image, click_image):  # both embeddings cached
        engine.segment(SegmentRequest(image_id=image.image_id, point_coords=[[5, 5]]), image=image)
    click = SegmentRequest(
        image_id=click_image.image_id, point_coords=[[300, 200]], mask_format="rle"
    )
    solo = [_timed(lambda: engine.segment(click)) for _ in range(args.clicks)]
    base = statistics.median(solo)

    side = args.points_per_side
    sliced = engine.slice_prompts
    asked = 64 if sliced <= 16 else 1024  # sam2's default; on a GPU the fast pipeline's
    middle = 16 if sliced < 16 else 4 * sliced
    scenarios: list[tuple[str, AutoSlice, int]] = [
        (f"auto {side}x{side}, {sliced} per batch (the slice)", "auto", 0),
        (f"auto {side}x{side}, {middle} per batch", middle, 0),
        (f"auto {side}x{side}, {asked} per batch (slicing off)", 0, 0),
        (f"auto {side // 2}x{side // 2} + 1 crop layer, {sliced} per batch", "auto", 1),
    ]
    print("## A click while another tenant's automatic mode runs\n")
    print(
        "| model busy with | click p50 ms | click max ms | p50 vs solo | max vs solo "
        "| clicks within 2x solo | auto job s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| nothing (solo) | {base:.1f} | {max(solo):.1f} | 1.00x | - | - | - |")
    estimates = []
    for name, auto_slice, crops in scenarios:
        engine.auto_slice = auto_slice
        auto = SegmentRequest(
            image_id=auto_image.image_id,
            mode="auto",
            points_per_side=side if not crops else side // 2,
            points_per_batch=asked,
            crop_n_layers=crops,
            mask_format="rle",
        )
        job = auto_work(auto.points_per_side, crops, 1, cached=True)
        estimate = engine.costs.estimate_ms(job)
        clicks, job_s = _during(engine, auto, auto_image, click, args.clicks)
        estimates.append((name, job, estimate, job_s))
        if not clicks:  # the job ended before the first click came (a fast GPU)
            print(f"| {name} | no click landed while it ran | | | | | {job_s:.1f} |")
            continue
        p50, within = statistics.median(clicks), sum(c <= 2 * base for c in clicks)
        print(
            f"| {name} | {p50:.1f} | {max(clicks):.1f} | {p50 / base:.2f}x | "
            f"{max(clicks) / base:.2f}x | {within}/{len(clicks)} | {job_s:.1f} |"
        )
    print("\n## Automatic mode's estimate before it starts vs what it took\n")
    print("| job | encoder passes | prompts | estimated s | took s (clicks included) | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, job, estimate, job_s in estimates:
        est = (estimate or 0) / 1000
        print(
            f"| {name} | {job.encoder_passes} | {job.prompts} | {est:.1f} | {job_s:.1f} | "
            f"{job_s / est if est else float('nan'):.2f}x |"
        )


def _during(
    engine: Sam2Engine,
    auto: SegmentRequest,
    image: DecodedImage,
    click: SegmentRequest,
    clicks: int,
) -> tuple[list[float], float]:
    """Click at random moments while `auto` runs; the clicks' times and the job's seconds."""
    finished = threading.Event()
    job_s: list[float] = []

    def run() -> None:
        started = time.perf_counter()
        engine.segment(auto, image=image)
        job_s.append(time.perf_counter() - started)
        finished.set()

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.5)  # the job holds the model
    rng, times = random.Random(0), []
    while len(times) < clicks and not finished.is_set():
        time.sleep(rng.uniform(0.05, 0.5))
        times.append(_timed(lambda: engine.segment(click)))
    thread.join()
    return times, job_s[0]


def _timed(call: object) -> float:
    started = time.perf_counter()
    call()  # type: ignore[operator]
    return (time.perf_counter() - started) * 1000


def _image(seed: int, height: int, width: int) -> DecodedImage:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return DecodedImage(pixels=pixels, format="raw", image_id=image_id_for(pixels))


if __name__ == "__main__":
    main()
