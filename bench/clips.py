"""A click while another tenant's clip is decoded (issue 34): the clip bounded by what it
decodes, and clicks kept within 2x their solo time.

    .venv/bin/python bench/clips.py [--frames 3000] [--clicks 15]

One engine (hiera-tiny, random weights) and, in a second thread, `decode_clip` on a 1920x1080
clip of `--frames` frames at 30 fps: with one keyframe and `start` at its end (the decoder has
to decode every frame to get there, and stops at `SAM2_VIDEO_MAX_DECODED_FRAMES`), and with a
keyframe every 250 frames and the same `start` (it seeks). Clicks by `image_id` run meanwhile,
one after another. Rows with "no pause" decode without waiting for clicks (the decoder beside
the model, as before): the ratio of the two is what `let_clicks_pass` saves a click.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sam2_contract import SegmentRequest
from sam2_contract.images import DecodedImage, image_id_for
from sam2_inference import InferenceSettings, Sam2Engine
from sam2_inference.video.clips import Cut, VideoLimits, decode_clip

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from support import encoded  # tests/support.py: the clip encoder the tests use

WIDTH, HEIGHT, FPS = 1920, 1080, 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--clicks", type=int, default=15)
    args = parser.parse_args()
    settings = InferenceSettings(model="tiny", weights="random", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings.model_copy(update={"random_dir": Path(tmp)})
        engine = Sam2Engine.from_settings(settings)
    engine.warm_up()
    limits = VideoLimits.from_settings(settings)
    pixels = np.random.default_rng(1).integers(0, 255, (768, 1024, 3), dtype=np.uint8)
    image = DecodedImage(pixels=pixels, format="raw", image_id=image_id_for(pixels))
    engine.segment(SegmentRequest(image_id=image.image_id, point_coords=[[5, 5]]), image=image)
    click = SegmentRequest(image_id=image.image_id, point_coords=[[300, 200]], mask_format="rle")
    solo = [_ms(lambda: engine.segment(click)) for _ in range(args.clicks)]
    base = statistics.median(solo)

    start = (args.frames - 5) / FPS
    print(f"# Clicks while a {WIDTH}x{HEIGHT} clip of {args.frames} frames is decoded (CPU)\n")
    print(
        f"limits: {limits.max_decoded_frames} decoded frames, {limits.decode_cpu_s:.0f} CPU s; "
        f"`start` = {start:.2f} s\n"
    )
    clips = {
        "one keyframe (H.264)": _clip(args.frames, gop=None),
        "a keyframe every 250 frames (MPEG-4)": _clip(args.frames, gop=250),
    }
    print(
        "| decoding | clip outcome | decode s | click p50 ms | click max ms | p50 vs solo "
        "| max vs solo | clicks within 2x solo |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    print(f"| nothing (solo) | - | - | {base:.1f} | {max(solo):.1f} | 1.00x | - | - |")
    for name, clip in clips.items():
        for pause in (engine.let_clicks_pass, None):
            outcome: dict[str, str | float] = {}

            def decode(
                clip: bytes = clip,
                pause: Callable[[], None] | None = pause,
                outcome: dict[str, str | float] = outcome,
            ) -> None:
                started = time.perf_counter()
                try:
                    frames, _ = decode_clip(clip, Cut(start=start), limits, pause=pause)
                    outcome["result"] = f"{len(frames)} frames kept"
                except Exception as exc:  # the bound's refusal is the outcome of that row
                    outcome["result"] = f"{getattr(exc, 'code', type(exc).__name__)}"
                outcome["s"] = time.perf_counter() - started

            worker = threading.Thread(target=decode)
            worker.start()
            times = []
            while worker.is_alive() or not times:
                times.append(_ms(lambda: engine.segment(click)))
                time.sleep(0.02)
            worker.join()
            label = f"{name}{'' if pause else ', no pause'}"
            within = sum(t <= 2 * base for t in times)
            print(
                f"| {label} | {outcome['result']} | {outcome['s']:.1f} | "
                f"{statistics.median(times):.1f} | {max(times):.1f} | "
                f"{statistics.median(times) / base:.2f}x | {max(times) / base:.2f}x | "
                f"{within}/{len(times)} |",
                flush=True,
            )


def _clip(frames: int, *, gop: int | None) -> bytes:
    """A 1080p clip of a moving gradient: a keyframe every `gop` frames and no other."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]

    def gradient(index: int) -> np.ndarray:
        value = ((xx + yy + 4 * index) % 256).astype(np.uint8)
        return np.stack([value, value, value], axis=-1)

    return encoded("mp4", WIDTH, HEIGHT, frames, gop=gop, fps=FPS, picture=gradient)


def _ms(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


if __name__ == "__main__":
    main()
