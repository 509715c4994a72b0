"""Issue 34's attack campaign, kept in CI: the cases that took the service down for everyone,
against a gateway and an inference service in their own processes (loopback, the test
checkpoint), each with both processes' peak RSS over their RSS before it. Every case must be
refused with its documented 4xx, and the gateway must stay under its stated bound
(docs/reliability.md: 512 MiB of answers; asserted here as 1 GiB over its resting size)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from reliability.report import Report
from support import bypass_ts, encoded, free_port, large_photo_b64, remuxed, rss_peaks

GATEWAY = [sys.executable, "-m", "sam2_gateway"]
GATEWAY_BOUND = 1 << 30
HEIGHT, WIDTH = 3468, 4624  # the campaign's 16 MP JPEG, the largest image accepted
BOXES = {"mode": "box", "return_all_masks": True}


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{url} exited with {process.returncode}"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} not ready in {timeout_s} s")


@contextmanager
def _stack(checkpoint: Path, state: Path) -> Iterator[tuple[str, str, dict[str, int]]]:
    """Inference and gateway processes; the gateway's URL, a dev key and both pids."""
    from sam2_gateway.core.tokens import generate_private_key_pem

    inference_port, gateway_port = free_port(), free_port()
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    inference = subprocess.Popen(
        [sys.executable, "-m", "sam2_inference", "serve", "--port", str(inference_port)],
        env=os.environ
        | {
            "SAM2_WEIGHTS": str(checkpoint),
            "SAM2_DEVICE": "cpu",
            "SAM2_VIDEO_DIR": str(state / "videos"),
        },
        **quiet,
    )
    gateway_env = os.environ | {
        "SAM2_GATEWAY_DATABASE_URL": f"sqlite:///{state / 'keys.db'}",
        "SAM2_GATEWAY_KEY_PEPPER": "campaign-pepper-campaign",
        "SAM2_GATEWAY_JWT_PRIVATE_KEY": generate_private_key_pem(),
        "SAM2_GATEWAY_INFERENCE_URL": f"http://127.0.0.1:{inference_port}",
        "SAM2_GATEWAY_PORT": str(gateway_port),
    }
    gateway = None
    try:
        _wait_ready(f"http://127.0.0.1:{inference_port}", inference)
        created = subprocess.run(
            [*GATEWAY, "keys", "create", "--name", "campaign", "--tier", "dev"],
            env=gateway_env,
            capture_output=True,
            text=True,
            check=True,
        )
        key = created.stdout.split()[0]
        gateway = subprocess.Popen([*GATEWAY, "serve"], env=gateway_env, **quiet)
        url = f"http://127.0.0.1:{gateway_port}"
        _wait_ready(url, gateway)
        yield url, key, {"gateway": gateway.pid, "inference": inference.pid}
    finally:
        for process in (gateway, inference):
            if process is not None:
                process.kill()
                process.wait()


def _head(port: int, size: int) -> bytes:
    base = b"GET /v1/models HTTP/1.1\r\nhost: t\r\nx-padding: \r\nconnection: close\r\n\r\n"
    head = base.replace(b"x-padding: ", b"x-padding: " + b"x" * (size - len(base)))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        return sock.recv(200)


@pytest.mark.slow
def test_the_campaign_cases_are_refused_and_the_gateway_stays_bounded(
    checkpoint: Path, tmp_path: Path, report: Report
) -> None:
    with _stack(checkpoint, tmp_path) as (url, key, pids):
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600)
        photo = large_photo_b64(HEIGHT, WIDTH)
        first = client.post(
            "/v1/segment",
            json={"image": photo, "point_coords": [[2300, 1700]], "mask_format": "rle"},
        )
        assert first.status_code == 200, first.text
        image_id = first.json()["image_id"]
        boxes = [[0, 0, 4000, 3000]]
        cases: list[tuple[str, Any, tuple[int, str]]] = [
            (
                "16 MP, 8 boxes, all masks, bool2d, by image_id (item 1)",
                {"json": BOXES | {"image_id": image_id, "box_coords": boxes * 8}},
                (422, "answer_too_large"),
            ),
            (
                "16 MP, 64 boxes, all masks, bool2d, by image_id",
                {"json": BOXES | {"image_id": image_id, "box_coords": boxes * 64}},
                (422, "answer_too_large"),
            ),
            (
                "16 MP, 8 boxes, all masks, bool2d, uploaded",
                {"json": BOXES | {"image": photo, "box_coords": boxes * 8}},
                (422, "answer_too_large"),
            ),
            (
                "auto, points_per_side 1, a crop layer, factor 8 (item 5)",
                {
                    "json": {
                        "image_id": image_id,
                        "mode": "auto",
                        "points_per_side": 1,
                        "crop_n_layers": 1,
                        "crop_n_points_downscale_factor": 8,
                    }
                },
                (422, "invalid_parameter"),
            ),
            (
                "MPEG-TS: 64x64 then 640x640 frames (item 3)",
                {"files": {"video": ("s.ts", bypass_ts())}, "data": {"start": "0.1"}},
                (422, "invalid_video"),
            ),
            (
                "64x64 then 4096x4096 frames in an MP4 whose header says 64x64",
                {"files": {"video": ("s.mp4", remuxed(bypass_ts(4096), "mp4"))}},
                (422, "video_too_large"),
            ),
            (
                "4,000 frames (400 s), one keyframe, start=399 (item 4, 64x48)",
                {
                    "files": {"video": ("l.mp4", encoded("mp4", 64, 48, 4000, gop=None))},
                    "data": {"start": "399.0"},
                },
                (422, "video_too_large"),
            ),
        ]
        for name, request, expected in cases:
            path = "/v1/videos" if "files" in request else "/v1/segment"
            with rss_peaks(pids) as peaks:
                answer = client.post(path, **request)
            code = "" if answer.status_code == 200 else answer.json()["code"]
            assert (answer.status_code, code) == expected, (name, answer.text[:300])
            if answer.status_code != 200:
                assert answer.json()["hint"], name
            assert peaks["gateway"] < GATEWAY_BOUND, (name, peaks)
            report.add(
                f"campaign: {name}",
                "one request, gateway and inference in their own processes",
                f"{answer.status_code} {code or 'stored'}; gateway peak +{peaks['gateway'] >> 20} "
                f"MiB, inference peak +{peaks['inference'] >> 20} MiB",
            )
        port = int(url.rsplit(":", 1)[1])
        for size in (33 << 10, 35 << 10):
            with rss_peaks(pids) as peaks:
                answer = _head(port, size)
            assert answer.startswith(b"HTTP/1.1 431"), size
        client.close()
        report.add(
            "campaign: 33 and 35 KiB request heads (item 6)",
            "raw sockets to the gateway",
            f"431 headers_too_large x2; gateway peak +{peaks['gateway'] >> 20} MiB",
        )
