"""A gateway killed (SIGKILL) in the middle of a batch job loses nothing (issue 30): a new
gateway process on the same database takes the dead one's items once their leases lapse and
finishes the job; every item is recorded once, and inference's own door (a recorder in front
of its app, by the hop's request ids) shows that only the items in flight at the kill were
sent to it again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sam2_contract.problems import REQUEST_ID_HEADER
from sam2_gateway import KeyStore
from sam2_gateway.core.tokens import generate_private_key_pem
from sam2_inference import create_app as create_inference_app
from sam2_inference.api.serving import BackgroundServer
from support import PEPPER, free_port, fresh_engine, image_b64

WORKERS = 2
LEASE_S = 3.0
ITEMS = 8
AUTO = {"mode": "auto", "points_per_side": 4}  # about a second an item on the CPU


class Recorder:
    """Inference's app, recording the request id of every segment call that reaches it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/internal/segment":
            headers = dict(scope["headers"])
            self.seen.append(headers.get(REQUEST_ID_HEADER.lower().encode(), b"").decode())
        await self.app(scope, receive, send)


@pytest.fixture
def inference(loaded_engine: Any, settings: Any) -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder(create_inference_app(settings, engine=fresh_engine(loaded_engine)))
    port = free_port()
    server = BackgroundServer(recorder, "127.0.0.1", port)
    server.start()
    yield f"http://127.0.0.1:{port}", recorder
    server.stop()


def _gateway(
    database: str, inference_url: str, port: int, key_pem: str, log: Path
) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "SAM2_GATEWAY_DATABASE_URL": database,
        "SAM2_GATEWAY_KEY_PEPPER": PEPPER,
        "SAM2_GATEWAY_JWT_PRIVATE_KEY": key_pem,
        "SAM2_GATEWAY_INFERENCE_URL": inference_url,
        "SAM2_GATEWAY_PORT": str(port),
        "SAM2_GATEWAY_JOB_WORKERS": str(WORKERS),
        "SAM2_GATEWAY_JOB_LEASE_S": str(LEASE_S),
    }
    with log.open("ab") as output:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "sam2_gateway", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=output,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code < 500:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    process.wait()
    raise AssertionError(f"the gateway did not start: {log.read_text()[-2000:]}")


def test_a_killed_gateway_loses_no_item_and_records_none_twice(
    inference: tuple[str, Recorder], tmp_path: Path
) -> None:
    inference_url, recorder = inference
    database = f"sqlite:///{tmp_path / 'jobs.db'}"
    pem = generate_private_key_pem()
    port = free_port()
    log = tmp_path / "gateway.log"
    first = _gateway(database, inference_url, port, pem, log)
    store = KeyStore(database, PEPPER)
    key, _ = store.create("jobs", frozenset({"auto", "jobs"}), rate_tier="dev")
    store.dispose()
    auth = {"authorization": f"Bearer {key.full}"}
    base = f"http://127.0.0.1:{port}"
    try:
        image_id = httpx.post(
            f"{base}/v1/segment",
            json={"image": image_b64("landscape")} | AUTO,
            headers=auth,
            timeout=120,
        ).json()["image_id"]
        recorder.seen.clear()
        job = httpx.post(
            f"{base}/v1/jobs",
            json={"request": AUTO, "items": [{"image_id": image_id}] * ITEMS},
            headers=auth,
        ).json()
        while True:  # kill it once some items are done and others in flight
            counts = httpx.get(f"{base}/v1/jobs/{job['job_id']}", headers=auth).json()["counts"]
            if counts["done"] >= 2 and counts["running"] >= 1:
                break
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        done_before_kill = counts["done"]
    finally:
        if first.poll() is None:
            first.kill()
    second = _gateway(database, inference_url, port, pem, log)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            info = httpx.get(f"{base}/v1/jobs/{job['job_id']}", headers=auth).json()
            if info["state"] == "done":
                break
            time.sleep(0.2)
        assert info["state"] == "done", info
        assert info["counts"]["done"] == ITEMS
        lines = httpx.get(f"{base}/v1/jobs/{job['job_id']}/results", headers=auth).text
    finally:
        second.send_signal(signal.SIGINT)
        second.wait(timeout=30)
    results = [line for line in lines.splitlines() if line]
    assert len(results) == ITEMS
    assert all('"status":200' in line for line in results)
    # Inference's door: request ids are <job>-<item>-<attempt>. Every item reached it; only
    # those in flight at the kill (at most the dead process's workers) came a second time.
    per_item = Counter(rid.rsplit("-", 2)[1] for rid in recorder.seen if rid.startswith("job_"))
    assert set(per_item) == {str(i) for i in range(ITEMS)}
    again = [item for item, count in per_item.items() if count > 1]
    assert len(again) <= WORKERS
    assert all(count <= 2 for count in per_item.values())
    assert done_before_kill >= 2
