"""Routing by image over three inference replicas: cache hits of repeat clicks, sticky vs random.

Three inference replicas (random tiny weights, CPU, one loaded model, a cache each) behind the
test suite's stand-in for Modal's proxy, the real gateway in front, the Python SDK driving
`--images` images x `--clicks` clicks (the first uploads). Run once with the gateway's
`Modal-Session-ID` honoured (rendezvous hashing, as Modal does) and once routed at random, then
once more with the first replica stopped halfway through the third round. Prints one table.

    .venv/bin/python bench/routing.py [--images 50] [--clicks 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from sam2_inference import InferenceSettings, Sam2Engine, build_random_checkpoint
from scale_out import cluster, drive, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--clicks", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = build_random_checkpoint("tiny", Path(tmp) / "tiny.pt", seed=0)
        settings = InferenceSettings(model="tiny", weights=str(checkpoint), device="cpu")
        engine = Sam2Engine.from_settings(settings)
    pictures = images(args.images)
    halfway_third_round = 2 * args.images + args.images // 2
    runs = [
        ("sticky (Modal-Session-ID)", True, None),
        ("random", False, None),
        ("sticky, one replica stopped mid-run", True, halfway_third_round),
    ]
    print(f"{args.images} images x {args.clicks} clicks, 3 replicas\n")
    print(
        "| routing | repeat clicks | cache hits | hit rate | failed calls "
        "| images uploaded again | most uploads of one image | s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, sticky, stop_at in runs:
        started = time.perf_counter()
        with cluster(engine, settings, sticky=sticky) as running:
            report = drive(running, pictures, args.clicks, stop_at=stop_at)
        print(
            f"| {name} | {report.repeat_clicks} | {report.repeat_hits} "
            f"| {report.hit_rate:.1%} | {report.failures} | {report.images_uploaded_again} "
            f"| {report.most_uploads_of_one_image} | {time.perf_counter() - started:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
