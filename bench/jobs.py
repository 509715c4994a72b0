"""A click while a batch job runs (issue 30): a cached click's latency through the gateway with
the service idle, then while a 40-image automatic-mode job of the same key is being answered
by the gateway's workers, in the same run.

Starts inference and a gateway as separate processes on loopback (random tiny weights, CPU;
the gateway's embedded job workers, `SAM2_GATEWAY_JOB_WORKERS`, default 2), uploads the click's
image, times `--clicks` clicks alone, creates the job (40 distinct images sent as files), waits
until its first item runs, times the same clicks at random moments while it runs, then cancels
the job. Prints a markdown table; the ratio compares two numbers measured in this run.

    .venv/bin/python bench/jobs.py [--clicks 20] [--points-per-side 8]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from gateway import _free_port, _image, _pct, _start  # bench/gateway.py

ITEMS = 40


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--points-per-side", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        inference_port, gateway_port = _free_port(), _free_port()
        processes = _start(state, inference_port, {"gateway": gateway_port}, None)
        try:
            _measure(gateway_port, state, args.clicks, args.points_per_side)
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=30)


def _measure(port: int, state: Path, clicks: int, points_per_side: int) -> None:
    key = (state / "key").read_text()
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
    )
    click = {"point_coords": [[320, 240]], "point_labels": [1], "mask_format": "rle"}
    image_id = client.post("/v1/segment", json={"image": _image()} | click, timeout=120).json()[
        "image_id"
    ]
    body = {"image_id": image_id} | click
    rng = random.Random(0)
    for _ in range(5):  # warm-up
        client.post("/v1/segment", json=body, timeout=60).raise_for_status()
    alone = [_click(client, body, rng) for _ in range(clicks)]

    request = {"mode": "auto", "points_per_side": points_per_side}
    files = [("image", (f"{i}.png", _picture(i), "image/png")) for i in range(ITEMS)]
    created = client.post(
        "/v1/jobs",
        data={"request": json.dumps({"request": request, "items": []})},
        files=files,
        timeout=120,
    )
    created.raise_for_status()
    job_id = created.json()["job_id"]
    while _info(client, job_id)["counts"]["running"] == 0:
        time.sleep(0.1)
    started = _info(client, job_id)
    during = [_click(client, body, rng) for _ in range(clicks)]
    seen = _info(client, job_id)
    client.delete(f"/v1/jobs/{job_id}", timeout=30).raise_for_status()
    finished = seen["counts"]["done"] - started["counts"]["done"]

    print(
        f"# A click during a {ITEMS}-image automatic-mode job (points_per_side "
        f"{points_per_side}; hiera-tiny, random weights, CPU)\n"
    )
    print("| click | p50 ms | p95 ms | max ms |")
    print("|---|---:|---:|---:|")
    for name, values in (("alone", alone), ("during the job", during)):
        print(f"| {name} | {_pct(values, 50):.0f} | {_pct(values, 95):.0f} | {max(values):.0f} |")
    print(
        f"| during / alone | {_pct(during, 50) / _pct(alone, 50):.2f}x "
        f"| {_pct(during, 95) / _pct(alone, 95):.2f}x | |"
    )
    print(
        f"\n{clicks} clicks each; while they ran the job finished {finished} items "
        f"({seen['counts']['running']} running at the end); then it was cancelled."
    )


def _click(client: httpx.Client, body: dict[str, object], rng: random.Random) -> float:
    time.sleep(rng.uniform(0.05, 0.4))  # at random moments of the job's work
    started = time.perf_counter()
    client.post("/v1/segment", json=body, timeout=120).raise_for_status()
    return (time.perf_counter() - started) * 1000


def _info(client: httpx.Client, job_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/jobs/{job_id}", timeout=30)
    answer.raise_for_status()
    info: dict[str, Any] = answer.json()
    return info


def _picture(seed: int) -> bytes:
    pixels = np.random.default_rng(100 + seed).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


if __name__ == "__main__":
    main()
