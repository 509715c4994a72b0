"""Clicks decoded on the client (issue 29) against a cached server click, in one run.

Starts inference and the gateway as processes on loopback (random tiny weights, CPU), as
bench/gateway.py does, then measures:

- the embedding's bytes per dtype and the decoder's size;
- the time to the first local click in Python (`Sam2Client.local`: the upload and encoder, the
  embedding download, the decoder download, loading it in onnxruntime, the first click);
- click latency: the Python SDK's local decoder (onnxruntime on this CPU) and Chromium's
  onnxruntime-web WASM (the playground, sdk-js/playground/bench-local.mjs) against a cached
  server click through the gateway (the Python SDK, and the playground in server mode);
- what a link with a 50 ms round trip adds to each (its round trips; transfer time depends on
  the link's bandwidth and is not measured here).

    .venv/bin/python bench/local_decode.py [--clicks 40] [--no-browser]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from gateway import _free_port, _start

ROOT = Path(__file__).parents[1]
RTT_MS = 50.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clicks", type=int, default=40)
    parser.add_argument("--no-browser", action="store_true", help="skip Chromium's WASM")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        port = _free_port()
        processes = _start(state, _free_port(), {"gateway": port}, None)
        try:
            _measure(f"http://127.0.0.1:{port}", (state / "key").read_text(), state, args)
        finally:
            for process in processes:
                process.send_signal(signal.SIGINT)
                process.wait(timeout=30)


def _measure(url: str, key: str, state: Path, args: argparse.Namespace) -> None:
    from sam2_sdk import Sam2Client

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(480, 640, 3), dtype=np.uint8)
    png = _png(image)  # a file's bytes, as a user sends them (hashed per call, not re-encoded)
    clicks = [[float(rng.uniform(0, 639)), float(rng.uniform(0, 479))] for _ in range(args.clicks)]
    with Sam2Client(api_key=key, base_url=url) as client:
        # The first local click, step by step, on an image the server has not seen.
        steps: dict[str, float] = {}
        started = time.perf_counter()
        answer = client.request(
            "POST", "/v1/segment", body={"point_coords": [[0, 0]]}, image=_png(image)
        )
        steps["upload + image encoder (one click)"] = _since(started)
        mark = time.perf_counter()
        embedding = client.download(f"/v1/images/{answer['image_id']}/embedding?dtype=float16")
        steps["embedding download (float16)"] = _since(mark)
        mark = time.perf_counter()
        client.download("/v1/models/tiny/decoder.onnx")
        steps["decoder: exported on first request after start, and downloaded"] = _since(mark)
        mark = time.perf_counter()
        decoder = client.download("/v1/models/tiny/decoder.onnx")
        steps["decoder download (already exported)"] = _since(mark)
        mark = time.perf_counter()
        from sam2_contract.models import ModelInfo
        from sam2_sdk import LocalSession

        session = LocalSession(embedding, decoder, ModelInfo.model_validate(answer["model"]))
        steps["decoder loaded (onnxruntime)"] = _since(mark)
        mark = time.perf_counter()
        session.segment(points=[clicks[0]])
        steps["first local click"] = _since(mark)
        once = ("upload", "embedding", "decoder download", "decoder loaded", "first local click")
        steps["total, the decoder already exported (the usual case)"] = sum(
            ms for step, ms in steps.items() if step.startswith(once)
        )
        sizes = {
            dtype: len(client.download(f"/v1/images/{answer['image_id']}/embedding?dtype={dtype}"))
            for dtype in ("float32", "float16", "int8")
        }
        # Click latency: the same clicks, alternately local (this process) and on the server.
        local = client.local(png, cache_dir=state / "decoders")
        for point in clicks[:5]:  # warm-up
            local.segment(points=[point])
            client.segment(png, points=[point])
        times: dict[str, list[float]] = {"local": [], "server": []}
        for point in clicks:
            mark = time.perf_counter()
            local.segment(points=[point])
            times["local"].append(_since(mark))
            mark = time.perf_counter()
            client.segment(png, points=[point])
            times["server"].append(_since(mark))
    browser = None if args.no_browser else _browser(url, key, png, state, args.clicks)
    _print(steps, sizes, len(decoder), times, browser)


def _browser(url: str, key: str, png: bytes, state: Path, clicks: int) -> dict | None:  # type: ignore[type-arg]
    playground = ROOT / "services" / "gateway" / "src" / "sam2_gateway" / "playground"
    if not (playground / "index.html").exists() or not shutil.which("node"):
        print("(no Chromium numbers: build the playground, cd sdk-js && npm run build:playground)")
        return None
    photo = state / "photo.png"
    photo.write_bytes(png)
    script = ROOT / "sdk-js" / "playground" / "bench-local.mjs"
    done = subprocess.run(
        ["node", str(script), url, key, str(photo), str(clicks)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if done.returncode != 0:
        print(f"(Chromium failed: {done.stderr[-2000:]})")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _print(
    steps: dict[str, float],
    sizes: dict[str, int],
    decoder: int,
    times: dict[str, list[float]],
    browser: dict | None,  # type: ignore[type-arg]
) -> None:
    print("# Clicks decoded on the client (issue 29)\n")
    print("| download | bytes | MiB |")
    print("|---|---:|---:|")
    for dtype, size in sizes.items():
        print(f"| embedding, {dtype} | {size:,} | {size / 2**20:.2f} |")
    print(f"| decoder (hiera-tiny, ONNX) | {decoder:,} | {decoder / 2**20:.2f} |")
    print("\n| to the first local click (Python, loopback) | ms |")
    print("|---|---:|")
    for step, ms in steps.items():
        print(f"| {step} | {ms:.0f} |")
    rows = [
        ("local, Python onnxruntime (this CPU)", times["local"], 0),
        ("server, cached click through the gateway (Python SDK)", times["server"], 1),
    ]
    if browser:
        rows.append(
            ("local, Chromium onnxruntime-web WASM", [c["ms"] for c in browser["local"]], 0)
        )
        rows.append(
            ("server, cached click (the playground)", [c["ms"] for c in browser["server"]], 1)
        )
    print(
        f"\n| click ({len(times['local'])} each) | p50 ms | p95 ms | round trips"
        f" | p50 over a {RTT_MS:.0f} ms RTT link |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, values, trips in rows:
        p50, p95 = statistics.median(values), float(np.percentile(values, 95))
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {trips} | {p50 + trips * RTT_MS:.1f} |")
    local, server = statistics.median(times["local"]), statistics.median(times["server"])
    print(f"\nPython: a local click takes {local / server:.2f}x a cached server click on loopback,")
    print(f"{local / (server + RTT_MS):.2f}x over a {RTT_MS:.0f} ms RTT link.")
    if browser:
        print(
            f"Chromium: file chosen to decoder ready {browser['readyMs']} ms on loopback"
            f" (upload, encoder, both downloads, WASM start); threads: {browser['threads']}."
        )
    print(
        "Starting a local session takes 3 round trips (a click that uploads, the embedding, the"
        f" decoder): {3 * RTT_MS:.0f} ms over a {RTT_MS:.0f} ms RTT link, plus the downloads'"
        " transfer time at the link's bandwidth (not measured)."
    )


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _png(pixels: np.ndarray) -> bytes:  # type: ignore[type-arg]
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


if __name__ == "__main__":
    main()
