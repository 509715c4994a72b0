"""The bad-input corpus and a short bounded load, through the real gateway and inference."""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from inference.api.test_bad_input import CASES
from reliability.report import Report
from support import GatewayServer, bearer, image_b64, raw_exchange

HOSTILE: list[tuple[str, bytes, int, str]] = [
    ("JSON nested 5,000 deep", b"[" * 5000 + b"]" * 5000, 400, "invalid_json"),
    ("a 5,000-digit integer", b'{"points_per_batch": ' + b"9" * 5000 + b"}", 400, "invalid_json"),
    (
        "a boolean for a flag",
        b'{"image_id": "img_' + b"c" * 32 + b'", "point_coords": [[1, 1]], "multimask_output": '
        b'"yes"}',
        422,
        "invalid_parameter",
    ),
]


def _problem(answer: httpx.Response) -> tuple[int, str]:
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.text
    assert "Traceback" not in answer.text
    return answer.status_code, answer.json()["code"]


def test_the_bad_input_corpus_gets_its_problems_through_the_gateway(
    target: GatewayServer, report: Report
) -> None:
    seen: Counter[str] = Counter()
    with httpx.Client(base_url=target.url, headers=bearer(target.key), timeout=60) as client:
        for name, body, status, code in CASES + HOSTILE:
            if name == "body too large":  # the gateway's limit is 32 MiB, not the corpus's
                body = body | {"image": "A" * (33 << 20)}
            if isinstance(body, bytes):
                answer = client.post(
                    "/v1/segment", content=body, headers={"content-type": "application/json"}
                )
            else:
                answer = client.post("/v1/segment", json=body)
            assert _problem(answer) == (status, code), name
            seen[code] += 1
        # Credentials and heads an attacker would try.
        for credential in ("", "Bearer", "Basic abc", "Bearer sam2_x", "Bearer " + "a" * 4000):
            answer = httpx.post(
                f"{target.url}/v1/segment",
                json={"image_id": "img_" + "d" * 32, "point_coords": [[1, 1]]},
                headers={"authorization": credential} if credential else {},
                timeout=10,
            )
            assert answer.status_code == 401
            seen[answer.json()["code"]] += 1
        # A 32 MB header is refused after its first 32 KiB.
        port = int(target.url.rsplit(":", 1)[1])
        bomb = b"GET /v1/models HTTP/1.1\r\nhost: t\r\nauthorization: Bearer %s\r\n\r\n" % (
            b"a" * (32 << 20)
        )
        head, _, body = raw_exchange(port, bomb).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431"), head
        seen[json.loads(body)["code"]] += 1
        assert client.post("/v1/segment", json=CASES[0][1]).status_code == 422  # still serving
    total = sum(seen.values())
    codes = ", ".join(f"{code} x{n}" for code, n in sorted(seen.items()))
    report.add(
        "bad-input corpus",
        f"{total} hostile or malformed requests (tests/inference/api/test_bad_input.py's corpus, "
        "deep JSON, huge numbers, loose types, bad credentials, a 32 MB header)",
        f"each its documented problem: {codes}; no 5xx, no traceback; served on afterwards",
    )


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_short_bounded_load_leaves_memory_bounded(target: GatewayServer, report: Report) -> None:
    """Four clients at once, each uploading an image and clicking on it, a small automatic-mode
    job and a bad request, in two rounds. The inference service runs in this process, so its
    memory is this process's: sampled before, after the first round (allocator arenas, caches
    and buffers grow on first use) and after the second (which must not grow further)."""
    samples = [_rss_mib()]
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    for _ in range(2):
        _round(target, statuses, latencies)
        samples.append(_rss_mib())
    requests = sum(statuses.values())
    assert requests == 2 * 4 * 13
    assert statuses[200] == 2 * 4 * 12, statuses
    assert statuses[422] == 2 * 4, statuses
    assert samples[2] - samples[1] < 256, samples  # no growth from request to request
    report.add(
        "bounded load",
        f"{requests} requests, two rounds of 4 clients at once (uploads, clicks by image_id, "
        "auto 4x4, bad requests)",
        f"{statuses[200]} x 200, {statuses[422]} x 422 (the bad ones), no 5xx; median "
        f"{statistics.median(latencies):.0f} ms; inference process memory "
        f"{samples[0]:.0f} -> {samples[1]:.0f} (first round) -> {samples[2]:.0f} MiB (second)",
    )


def _round(target: GatewayServer, statuses: Counter[int], latencies: list[float]) -> None:
    lock = threading.Lock()

    def client(seed: int) -> None:
        with httpx.Client(base_url=target.url, headers=bearer(target.key), timeout=120) as http:
            image = image_b64("landscape" if seed % 2 else "portrait")
            upload = {"image": image, "point_coords": [[5 + seed, 5]], "mask_format": "rle"}
            image_id = _timed(http, upload, statuses, latencies, lock)["image_id"]
            for x in range(10):
                click = {"image_id": image_id, "point_coords": [[x * 5 + 1, 9]]}
                _timed(http, click | {"mask_format": "rle"}, statuses, latencies, lock)
            auto = {"image_id": image_id, "mode": "auto", "points_per_side": 4}
            _timed(http, auto | {"mask_format": "rle"}, statuses, latencies, lock)
            _timed(http, {"image_id": image_id}, statuses, latencies, lock)  # 422

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)


def _timed(
    http: httpx.Client,
    body: dict[str, Any],
    statuses: Counter[int],
    latencies: list[float],
    lock: threading.Lock,
) -> dict[str, Any]:
    started = time.perf_counter()
    answer = http.post("/v1/segment", json=body)
    with lock:
        statuses[answer.status_code] += 1
        latencies.append((time.perf_counter() - started) * 1000)
    result: dict[str, Any] = answer.json()
    return result
