"""Gateway overhead: a cached click through gateway + inference vs inference direct.

Starts both services as separate processes on loopback (random tiny weights, CPU), uploads one
image, then sends the same cached click (`image_id`, RLE) alternately to the gateway and to
the inference service, and prints p50/p95 of each and their difference. With `--redis URL` a
second gateway, whose limits and usage journal are in that Redis (as replicas share them),
takes its turn in the same loop.

    .venv/bin/python bench/gateway.py [--requests 300] [--redis redis://127.0.0.1:6379]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--redis", help="also a gateway with its limits in this Redis")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        inference_port = _free_port()
        gateways = {"gateway + inference": _free_port()}
        if args.redis:
            gateways["gateway (Redis) + inference"] = _free_port()
        processes = _start(state, inference_port, gateways, args.redis)
        try:
            _measure(inference_port, gateways, state, args.requests)
        finally:
            for process in processes:
                process.send_signal(signal.SIGINT)
                process.wait(timeout=30)


def _start(
    state: Path, inference_port: int, gateways: dict[str, int], redis: str | None
) -> list[subprocess.Popen[bytes]]:
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    inference = subprocess.Popen(
        [sys.executable, "-m", "sam2_inference", "serve", "--weights", "random", "--device", "cpu"],
        env=os.environ | {"SAM2_PORT": str(inference_port), "SAM2_RANDOM_DIR": str(state)},
        **quiet,  # type: ignore[arg-type]
    )
    _wait(f"http://127.0.0.1:{inference_port}/readyz", ok=200, timeout_s=300)
    from sam2_gateway.core.tokens import generate_private_key_pem

    gateway_env = os.environ | {
        "SAM2_GATEWAY_DATABASE_URL": f"sqlite:///{state / 'gw.db'}",
        "SAM2_GATEWAY_KEY_PEPPER": "bench-pepper-bench-pepper",
        "SAM2_GATEWAY_JWT_PRIVATE_KEY": generate_private_key_pem(),
        "SAM2_GATEWAY_INFERENCE_URL": f"http://127.0.0.1:{inference_port}",
    }
    key = subprocess.run(
        [
            sys.executable,
            "-m",
            "sam2_gateway",
            "keys",
            "create",
            "--name",
            "bench",
            "--tier",
            "dev",
        ],
        env=gateway_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    (state / "key").write_text(key)
    processes = [inference]
    for name, port in gateways.items():
        shared = {"SAM2_GATEWAY_RATE_LIMIT_STORAGE": f"async+{redis}"} if "Redis" in name else {}
        processes.insert(
            0,
            subprocess.Popen(
                [sys.executable, "-m", "sam2_gateway", "serve"],
                env=gateway_env | shared | {"SAM2_GATEWAY_PORT": str(port)},
                **quiet,  # type: ignore[arg-type]
            ),
        )
        _wait(f"http://127.0.0.1:{port}/readyz", ok=200, timeout_s=60)
    return processes


def _measure(inference_port: int, gateways: dict[str, int], state: Path, requests: int) -> None:
    key = (state / "key").read_text()
    clients = {"inference direct": httpx.Client(base_url=f"http://127.0.0.1:{inference_port}")}
    for name, port in gateways.items():
        clients[name] = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
        )
    click = {"point_coords": [[320, 240]], "point_labels": [1], "mask_format": "rle"}
    # The gateways cache under the key's tenant, inference direct under its own: upload to both.
    upload = {"image": _image()} | click
    first_gateway = clients[next(iter(gateways))]
    image_id = first_gateway.post("/v1/segment", json=upload, timeout=60).json()["image_id"]
    clients["inference direct"].post("/v1/segment", json=upload, timeout=60).raise_for_status()
    body = {"image_id": image_id} | click
    times: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(10):  # warm-up
        for client in clients.values():
            client.post("/v1/segment", json=body, timeout=60).raise_for_status()
    for _ in range(requests):
        for name, client in clients.items():
            started = time.perf_counter()
            response = client.post("/v1/segment", json=body, timeout=60)
            times[name].append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    print(f"# Gateway overhead on a cached click ({requests} requests each, interleaved)\n")
    print("| path | p50 ms | p95 ms |")
    print("|---|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {_pct(values, 50):.1f} | {_pct(values, 95):.1f} |")
    direct = times["inference direct"]
    for name in gateways:
        added50 = _pct(times[name], 50) - _pct(direct, 50)
        added95 = _pct(times[name], 95) - _pct(direct, 95)
        label = name.removesuffix(" + inference")
        print(f"| added by the {label} | {added50:.1f} | {added95:.1f} |")


def _pct(values: list[float], q: int) -> float:
    return float(np.percentile(values, q)) if q != 50 else statistics.median(values)


def _image() -> str:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, size=(480, 640, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _wait(url: str, *, ok: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == ok:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"{url} did not answer {ok} in {timeout_s:.0f} s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    main()
