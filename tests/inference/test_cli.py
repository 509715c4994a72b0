"""The CLI starts a real server that answers the original request and stops cleanly on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from support import free_port, image_b64, post_segment


def test_serve_answers_and_stops_on_sigint(checkpoint: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sam2_inference",
            "serve",
            "--weights",
            str(checkpoint),
            "--device",
            "cpu",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        original = {
            "image": image_b64("landscape"),
            "mode": "point",
            "point_coords": [[100, 50]],
            "point_labels": [1],
        }
        response = post_segment(httpx, base_url=base, body=original, timeout=60)
        assert response.status_code == 200
        body = response.json()
        assert len(body["mask"]) == 120
        assert len(body["mask"][0]) == 200
        assert body["image_shape"] == [120, 200]
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    assert "RANDOM WEIGHTS" in output
    assert "Traceback" not in output
