"""Video sessions of several keys against one inference process's memory (issue 34).

    .venv/bin/python bench/video_memory.py [--frames 300] [--keys 3] [--sessions 2]

The inference app in this process (hiera-tiny, random weights, CPU, the default video memory
budget: a quarter of this host's memory), a 1920x1080 clip of `--frames` JPEG frames uploaded
by each key, then each key asks for `--sessions` sessions in turn; after every answer a click
by another tenant is timed. Prints each attempt's answer, the budget's use, and the process's
RSS (now, and its peak during the attempt, sampled every 20 ms).
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image
from sam2_contract.wire import NAMESPACE_HEADER
from sam2_inference import InferenceSettings, Sam2Engine, create_app
from sam2_inference.video.service import VideoService

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from support import post_segment, rss, rss_peaks  # tests/support.py: RSS sampler, the hop

WIDTH, HEIGHT = 1920, 1080


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--keys", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = InferenceSettings(
            model="tiny",
            weights="random",
            device="cpu",
            random_dir=Path(tmp),
            video_dir=Path(tmp) / "videos",
        )
        engine = Sam2Engine.from_settings(settings)
        engine.warm_up()
        videos = VideoService(settings)
        with TestClient(create_app(settings, engine=engine, videos=videos)) as client:
            _run(client, videos, args)


def _run(client: TestClient, videos: VideoService, args: argparse.Namespace) -> None:
    memory = videos.sessions.memory
    pid = os.getpid()
    files = [("frames", (f"{i:05d}.jpg", _frame(i), "image/jpeg")) for i in range(args.frames)]
    keys = [{NAMESPACE_HEADER: f"key{k}"} for k in range(args.keys)]
    video_ids = {}
    for key in keys:
        answer = client.post("/v1/videos", files=files, headers=key)
        assert answer.status_code == 200, answer.text
        video_ids[key[NAMESPACE_HEADER]] = answer.json()["video_id"]
    image = _click_image()
    click = {"image": image, "point_coords": [[300, 200]], "mask_format": "rle"}
    clicker = {NAMESPACE_HEADER: "clicker"}
    image_id = post_segment(client, click, headers=clicker).json()["image_id"]
    by_id = {"image_id": image_id, "point_coords": [[300, 200]], "mask_format": "rle"}
    print(
        f"# {args.keys} keys x {args.sessions} sessions of a {WIDTH}x{HEIGHT} clip of "
        f"{args.frames} frames (CPU, random weights)\n"
    )
    print(
        f"video memory budget {memory.total / 2**30:.2f} GiB; process RSS before the sessions "
        f"{rss(pid) / 2**30:.2f} GiB\n"
    )
    print(
        "| attempt | key | answer | s | budget used | RSS after | RSS peak during "
        "| another tenant's click |"
    )
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    attempt = 0
    for _ in range(args.sessions):
        for key in keys:
            attempt += 1
            name = key[NAMESPACE_HEADER]
            with rss_peaks({"inference": pid}) as grown:
                before = rss(pid)
                started = time.monotonic()
                answer = client.post(f"/v1/videos/{video_ids[name]}/sessions", headers=key)
                seconds = time.monotonic() - started
            seen = (
                "200"
                if answer.status_code == 200
                else (f"{answer.status_code} {answer.json()['code']}")
            )
            clicked = time.perf_counter()
            status = post_segment(client, by_id, headers=clicker).status_code
            click_ms = (time.perf_counter() - clicked) * 1000
            print(
                f"| {attempt} | {name} | {seen} | {seconds:.1f} | {memory.used / 2**30:.2f} GiB "
                f"| {rss(pid) / 2**30:.2f} GiB | {(before + grown['inference']) / 2**30:.2f} GiB "
                f"| {status}, {click_ms:.0f} ms |",
                flush=True,
            )


def _frame(index: int) -> bytes:
    yy, xx = np.mgrid[0:HEIGHT:4, 0:WIDTH:4]
    small = ((xx + yy + 8 * index) % 256).astype(np.uint8)
    pixels = Image.fromarray(np.stack([small] * 3, axis=-1)).resize((WIDTH, HEIGHT))
    out = io.BytesIO()
    pixels.save(out, "JPEG", quality=80)
    return out.getvalue()


def _click_image() -> str:
    pixels = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


if __name__ == "__main__":
    main()
