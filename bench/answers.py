"""Peak memory of the gateway and inference processes for the largest answers.

Starts inference (random weights, CPU) and a gateway as their own processes, uploads one
16 MP photo (4624x3468, the largest accepted), then sends each case by `image_id` (the
8-object bool2d case as an upload, so the gateway can refuse it before any model work) and
samples both processes' resident memory every 20 ms. Prints a markdown table: what each case
got, its answer size, and each process's peak RSS during it over its RSS before it.

    .venv/bin/python bench/answers.py                    # this gateway
    .venv/bin/python bench/answers.py --gateway-src DIR  # another gateway's source (before/after)
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
import gateway as stack  # bench/gateway.py: starts the two processes
from support import large_photo_b64, rss_peaks  # tests/support.py, as the campaign test

HEIGHT, WIDTH = 3468, 4624
CLICK = {"point_coords": [[2300, 1700]], "point_labels": [1]}
OBJECTS = {
    "objects": [{"box_coords": [40 + 500 * i, 300, 540 + 500 * i, 3000]} for i in range(8)],
    "return_all_masks": True,
}
CASES: dict[str, tuple[dict[str, Any], int]] = {  # the request, and how many at once
    "click, bool2d (1 mask)": ({} | CLICK, 1),
    "click, png": (CLICK | {"mask_format": "png"}, 1),
    "click, polygon": (CLICK | {"mask_format": "polygon"}, 1),
    "click, rle + render png": (CLICK | {"mask_format": "rle", "render": "png"}, 1),
    "8 objects, all masks, bool2d (upload)": (OBJECTS, 1),
    "8 objects, all masks, png": (OBJECTS | {"mask_format": "png"}, 1),
    "8 objects, all masks, rle": (OBJECTS | {"mask_format": "rle"}, 1),
    "click, bool2d, 8 at once": ({} | CLICK, 8),
    "8 objects, all masks, png, 8 at once": (OBJECTS | {"mask_format": "png"}, 8),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gateway-src", help="PYTHONPATH for the gateway process")
    parser.add_argument("--only", nargs="*", help="case names (substrings) to run")
    args = parser.parse_args()
    if args.gateway_src:
        os.environ["PYTHONPATH"] = args.gateway_src
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        inference_port, gateway_port = stack._free_port(), stack._free_port()
        processes = stack._start(state, inference_port, {"gateway": gateway_port}, None)
        gateway_process, inference_process = processes
        try:
            _measure(state, gateway_port, gateway_process.pid, inference_process.pid, args.only)
        finally:
            for process in processes:
                process.send_signal(signal.SIGINT)
                process.wait(timeout=60)


def _measure(
    state: Path, port: int, gateway_pid: int, inference_pid: int, only: list[str] | None
) -> None:
    key = (state / "key").read_text()
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
    )
    photo = large_photo_b64(HEIGHT, WIDTH)
    first = client.post(
        "/v1/segment", json={"image": photo, "mask_format": "rle"} | CLICK, timeout=600
    )
    first.raise_for_status()
    image_id = first.json()["image_id"]
    print(f"# Peak RSS for the largest answers ({WIDTH}x{HEIGHT}, random weights, CPU)\n")
    print(
        "| case | answers | answer size | gateway peak over before "
        "| inference peak over before | s |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for name, (request, at_once) in CASES.items():
        if only and not any(part in name for part in only):
            continue
        body = request | ({"image": photo} if "(upload)" in name else {"image_id": image_id})
        with rss_peaks({"gateway": gateway_pid, "inference": inference_pid}) as peaks:
            started = time.monotonic()
            with ThreadPoolExecutor(at_once) as pool:
                answers = list(pool.map(lambda sent: _post(client, sent), [body] * at_once))
            seconds = time.monotonic() - started
        kinds: dict[str, int] = {}
        for answer in answers:
            kind = str(answer.status_code)
            if answer.status_code != 200:
                kind += " " + answer.json().get("code", "")
            kinds[kind] = kinds.get(kind, 0) + 1
        seen = ", ".join(f"{kind} x{n}" for kind, n in sorted(kinds.items()))
        size = max(len(answer.content) for answer in answers)
        print(
            f"| {name} | {seen} | {_mib(size)} | {_mib(peaks['gateway'])} | "
            f"{_mib(peaks['inference'])} | {seconds:.0f} |",
            flush=True,
        )
        del answers


def _post(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return client.post("/v1/segment", json=body, timeout=900)


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


if __name__ == "__main__":
    main()
