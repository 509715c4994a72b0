"""Bounded work through the gateway: a client that goes away stops its work at inference, the
model time that work used is metered like a finished request's, and metering survives a
gateway crash."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio
from sam2_gateway import KeyStore
from sam2_gateway.core.metering import (
    Counts,
    FileJournal,
    Journal,
    RedisJournal,
    UsageMeter,
)
from sam2_gateway.core.store import UsageDelta
from support import (
    PEPPER,
    RunningServer,
    bearer,
    free_port,
    image_b64,
    running_gateway,
    service_url,
)

LONG_AUTO = {
    "mode": "auto",
    "points_per_side": 8,
    "points_per_batch": 4,
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.0,
    "mask_format": "rle",
}


def _wait_for(condition: object, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)


def test_a_client_that_goes_away_stops_its_work_and_what_it_used_is_metered(
    tmp_path: Path, inference_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    database = f"sqlite:///{tmp_path / 'keys.db'}"
    with running_gateway(database, inference_server.url) as gateway:
        body = {"image": image_b64("portrait")} | LONG_AUTO
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{gateway.url}/v1/segment", json=body, headers=bearer(gateway.key), timeout=1.5
            )
        _wait_for(lambda: "cancelled by the gateway" in caplog.text)
        assert "cancelled by the gateway" in caplog.text  # inference stopped the work
        store = KeyStore(database, PEPPER)
        try:
            _wait_for(lambda: store.usage())  # the meter writes every second
            [usage] = store.usage()
        finally:
            store.dispose()
        assert (usage.requests, usage.masks) == (1, 0)
        assert usage.gpu_ms > 0  # the encoder pass and any decoder batches it ran
        click = {"image": image_b64("portrait"), "point_coords": [[9, 9]], "mask_format": "rle"}
        answer = httpx.post(
            f"{gateway.url}/v1/segment", json=click, headers=bearer(gateway.key), timeout=60
        )
        assert answer.status_code == 200


@pytest.mark.parametrize("journal_kind", ["file", "redis"])
def test_a_gateway_killed_mid_stream_loses_no_usage(
    tmp_path: Path, inference_server: RunningServer, signing_key: str, journal_kind: str
) -> None:
    database = f"sqlite:///{tmp_path / 'keys.db'}"
    if journal_kind == "file":
        journal_path = tmp_path / "usage.journal"
        where = {"SAM2_GATEWAY_USAGE_JOURNAL": str(journal_path)}
    else:  # several gateway replicas share Redis with their rate limiter
        redis_url = service_url("SAM2_TEST_REDIS_URL")
        where = {"SAM2_GATEWAY_RATE_LIMIT_STORAGE": "async+" + redis_url}
    store = KeyStore(database, PEPPER)
    store.migrate()
    key, record = store.create("crash", frozenset({"segment"}), rate_tier="dev")
    port = free_port()
    gateway = subprocess.Popen(
        [sys.executable, "-m", "sam2_gateway", "serve", "--port", str(port)],
        env=os.environ
        | where
        | {
            "SAM2_GATEWAY_DATABASE_URL": database,
            "SAM2_GATEWAY_KEY_PEPPER": PEPPER,
            "SAM2_GATEWAY_JWT_PRIVATE_KEY": signing_key,
            "SAM2_GATEWAY_INFERENCE_URL": inference_server.url,
        },
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/segment"
        _wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"))
        first = httpx.post(
            url,
            json={"image": image_b64("portrait"), "point_coords": [[9, 9]], "mask_format": "rle"},
            headers=bearer(key.full),
            timeout=60,
        ).json()
        answers = [first] + [
            httpx.post(
                url,
                json={
                    "image_id": first["image_id"],
                    "point_coords": [[x, 9]],
                    "mask_format": "rle",
                },
                headers=bearer(key.full),
                timeout=60,
            ).json()
            for x in (20, 30)
        ]
    finally:
        gateway.kill()  # SIGKILL right after the last answer: no shutdown flush
        gateway.wait()
    if journal_kind == "file":  # the next gateway on this journal writes what is left
        journal: Journal = FileJournal(journal_path)
    else:  # another replica takes over once the dead one's alive key has expired
        asyncio.run(_expire_alive_keys(redis_url))
        journal = RedisJournal(redis_url)
    asyncio.run(UsageMeter(store, journal=journal).stop())
    [usage] = store.usage(record.key_id)
    store.dispose()
    assert (usage.requests, usage.images) == (3, 1)
    assert usage.masks == 3  # one mask returned by each
    spent = sum(a["timings_ms"]["embed_ms"] + a["timings_ms"]["predict_ms"] for a in answers)
    assert usage.gpu_ms == pytest.approx(spent, abs=0.2)


async def _expire_alive_keys(url: str, prefix: str = "sam2:usage") -> None:
    """What 60 s without a flush does to a dead gateway's alive key (the clock, advanced)."""
    client = redis.asyncio.from_url(url)
    async for key in client.scan_iter(match=f"{prefix}:alive:*"):
        await client.delete(key)
    await client.aclose()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


class _FailingStore:
    def record_usage(self, deltas: list[UsageDelta]) -> None:
        raise ConnectionError("the store is down")


def test_the_journal_keeps_counts_through_a_failed_write_and_skips_a_torn_line(
    tmp_path: Path,
) -> None:
    store = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}", PEPPER)
    store.migrate()
    path = tmp_path / "usage.journal"

    async def crash_then_restart() -> None:
        journal = FileJournal(path)
        down = UsageMeter(_FailingStore(), journal=journal)  # type: ignore[arg-type]
        await down.add("k1", images=1, masks=3, gpu_ms=12.5)
        await down.flush()  # fails: the counts stay on disk
        with path.open("a") as torn:
            torn.write("k1\t1\t0")  # what a crash in the middle of a write leaves
        await journal.close()
        meter = UsageMeter(store, journal=FileJournal(path))
        await meter.add("k1", images=0, masks=1, gpu_ms=2.0)
        await meter.stop()

    asyncio.run(crash_then_restart())
    assert [(u.requests, u.images, u.masks, u.gpu_ms) for u in store.usage("k1")] == [
        (2, 1, 4, 14.5)
    ]
    store.dispose()
    assert not path.with_name("usage.journal.flushing").exists()


def test_a_replica_takes_over_only_what_gone_replicas_left() -> None:
    url = service_url("SAM2_TEST_REDIS_URL")
    prefix = f"sam2:usage-test:{os.getpid()}-{time.monotonic_ns()}"

    async def drill() -> tuple[dict[str, Any], dict[str, Any]]:
        alive, other = RedisJournal(url, prefix=prefix), RedisJournal(url, prefix=prefix)
        await alive.append("k1", Counts(1, 1, 3, 10.5))
        await other.append("k2", Counts(1, 0, 1, 2.0))
        while_alive = {k: vars(c) for k, c in (await other.take()).items()}
        await other.written()
        await _expire_alive_keys(url, prefix)  # `alive` stops refreshing: it crashed
        after = {k: vars(c) for k, c in (await other.take()).items()}
        await other.written()
        for journal in (alive, other):
            await journal.close()
        return while_alive, after

    while_alive, after = asyncio.run(drill())
    assert while_alive == {"k2": {"requests": 1, "images": 0, "masks": 1, "gpu_ms": 2.0}}
    assert after == {"k1": {"requests": 1, "images": 1, "masks": 3, "gpu_ms": 10.5}}
