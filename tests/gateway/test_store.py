"""The key store on SQLite and on a real PostgreSQL server; the rate limiter on real Redis.

PostgreSQL and Redis come from scripts/test-services (which .ci/run calls). Without them these
cases are skipped locally, and fail under CI, where skipping would hide a broken backend."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from sam2_contract import RateLimitError, Sam2ServiceError
from sam2_gateway.core.keys import parse_key, verify_key
from sam2_gateway.core.ratelimit import RateLimiter, SharedSlots
from sam2_gateway.core.store import KeyStore, UsageDelta
from support import SQL_TABLES as TABLES
from support import TcpForwarder, service_url

PEPPER = "store-test-pepper"


def _sql(url: str, statement: str) -> list[sa.Row[object]]:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            result = connection.execute(sa.text(statement))
            return list(result.all()) if result.returns_rows else []
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'keys.db'}"
    else:
        url = service_url("SAM2_TEST_POSTGRES_URL")
        for table in TABLES:
            _sql(url, f"DROP TABLE IF EXISTS {table}")
    store = KeyStore(url, PEPPER)
    store.migrate()
    store.migrate()  # idempotent
    yield store
    store.dispose()


MIGRATE = """
import sys, time
from sam2_gateway.core.store import KeyStore
store = KeyStore(sys.argv[1], "pepper")
store._engine.connect().close()  # connected and imported: what is left is the migration
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all begin at the same moment
store.migrate()
"""


def test_gateway_containers_starting_together_all_migrate_a_new_database() -> None:
    """Every gateway container migrates as it starts: six processes at once on an empty
    PostgreSQL database all succeed (one migrates, the others wait for its lock and find the
    schema current). Without the lock this failed in 1 of 2 runs here (a duplicate table)."""
    url = service_url("SAM2_TEST_POSTGRES_URL")
    for table in TABLES:
        _sql(url, f"DROP TABLE IF EXISTS {table}")
    at = str(time.time() + 4.0)
    command = [sys.executable, "-c", MIGRATE, url, at]
    starts = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    errors = [process.communicate(timeout=120)[1] for process in starts]
    assert [process.returncode for process in starts] == [0] * 6, errors
    assert len(_sql(url, "SELECT version_num FROM alembic_version")) == 1


def test_keys_round_trip_and_only_hashes_are_stored(any_store: KeyStore) -> None:
    expires = datetime.now(UTC) + timedelta(days=3)
    key, record = any_store.create(
        "ci", frozenset({"segment"}), rate_tier="free", expires_at=expires
    )
    stored = any_store.get(record.key_id)
    assert stored is not None
    assert verify_key(parse_key(key.full).full, stored.key_hash, PEPPER)
    assert not verify_key(key.full, stored.key_hash, "another-pepper")
    assert stored.scopes == frozenset({"segment"})
    assert stored.expires_at == expires.replace(microsecond=stored.expires_at.microsecond)  # type: ignore[union-attr]
    assert stored.expires_at.tzinfo is not None  # type: ignore[union-attr]
    dumped = repr(_sql(any_store.database_url, "SELECT * FROM api_keys"))
    assert record.key_id in dumped
    assert key.full not in dumped
    assert key.full.split("_")[2] not in dumped


def test_revoke_and_usage(any_store: KeyStore) -> None:
    _, record = any_store.create("ci", frozenset({"segment"}), rate_tier="free")
    any_store.record_usage([UsageDelta(record.key_id, 1, 1, 3, 10.5)])
    any_store.record_usage([UsageDelta(record.key_id, 2, 0, 1, 2.0)])
    [row] = any_store.usage(record.key_id)
    assert (row.requests, row.images, row.masks, row.gpu_ms) == (3, 1, 4, 12.5)
    assert any_store.get(record.key_id).last_used_at is not None  # type: ignore[union-attr]
    assert any_store.revoke(record.key_id) is True
    assert any_store.revoke(record.key_id) is False
    assert any_store.get(record.key_id).revoked_at is not None  # type: ignore[union-attr]
    assert [k.key_id for k in any_store.all_keys()] == [record.key_id]


def test_redis_rate_limit_is_shared_by_gateway_replicas() -> None:
    url = service_url("SAM2_TEST_REDIS_URL").replace("redis://", "async+redis://")
    key_id = uuid.uuid4().hex[:12]

    async def run() -> list[str]:
        replicas = [RateLimiter(url, {"t": "3/second"}, {"t": 4}) for _ in range(2)]
        outcomes = []
        for replica in [*replicas, *replicas]:
            try:
                state = await replica.hit(key_id, "t")
                outcomes.append(f"ok:{state.remaining}")
            except RateLimitError as exc:
                outcomes.append(f"429:{exc.retry_after}")
        await asyncio.sleep(1.1)
        await replicas[0].hit(key_id, "t")
        outcomes.append("ok after window")
        for replica in replicas:
            await replica.aclose()
        return outcomes

    assert asyncio.run(run()) == ["ok:2", "ok:1", "ok:0", "429:1", "ok after window"]


def test_redis_concurrency_slots_are_shared_by_gateway_replicas() -> None:
    url = service_url("SAM2_TEST_REDIS_URL").replace("redis://", "async+redis://")
    key_id = uuid.uuid4().hex[:12]

    async def run() -> list[str]:
        one, other = (RateLimiter(url, {"t": "100/second"}, {"t": 2}) for _ in range(2))
        outcomes = []

        async def third() -> None:
            try:
                async with other.slot(key_id, "t"):
                    outcomes.append("ok")
            except RateLimitError as exc:
                outcomes.append(f"{exc.status}:{exc.code}")

        async with one.slot(key_id, "t"):
            async with other.slot(key_id, "t"):
                await third()  # both slots are taken, one on each replica
            await third()  # one was freed
        await one.aclose()
        await other.aclose()
        return outcomes

    assert asyncio.run(run()) == ["429:too_many_concurrent", "ok"]


def test_a_running_request_keeps_its_slot_past_the_lease_and_a_dead_gateway_loses_it() -> None:
    """Leases are renewed while their request runs (a propagation stream runs for minutes);
    a gateway killed mid-request stops renewing, and its slot is free once the lease lapses."""
    url, prefix, key_id = service_url("SAM2_TEST_REDIS_URL"), uuid.uuid4().hex, "k"
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD_A_SLOT, url, prefix, key_id], stdout=subprocess.PIPE
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == b"held\n"
            assert asyncio.run(_watch_the_slot(holder, url, prefix, key_id)) == [False, False, True]
        finally:
            holder.kill()


async def _watch_the_slot(
    holder: subprocess.Popen[bytes], url: str, prefix: str, key_id: str
) -> list[bool]:
    """Whether the slot is free: while its holder runs, right after it is killed, and once its
    lease has lapsed."""
    slots = SharedSlots(url, prefix=prefix, lease_s=LEASE_S)

    async def free_now() -> bool:
        async with slots.hold(key_id, 1) as held:
            return held

    await asyncio.sleep(2 * LEASE_S)  # two leases: still held only if renewed
    seen = [await free_now()]
    holder.kill()
    await asyncio.to_thread(holder.wait)
    seen.append(await free_now())  # its last renewal has not lapsed yet
    await asyncio.sleep(LEASE_S + 0.2)
    seen.append(await free_now())
    await slots.aclose()
    return seen


LEASE_S = 1.5
_HOLD_A_SLOT = f"""
import asyncio, sys
from sam2_gateway.core.ratelimit import SharedSlots

async def hold() -> None:
    slots = SharedSlots(sys.argv[1], prefix=sys.argv[2], lease_s={LEASE_S})
    async with slots.hold(sys.argv[3], 1) as held:
        print("held" if held else "full", flush=True)
        await asyncio.sleep(600)

asyncio.run(hold())
"""


def test_redis_lost_mid_request_leaves_it_running_counted_and_fails_the_next_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, prefix = service_url("SAM2_TEST_REDIS_URL"), uuid.uuid4().hex
    parts = urlsplit(url)
    target = (parts.hostname or "127.0.0.1", parts.port or 6379)
    link = TcpForwarder(target)
    port = link.start()
    slots = SharedSlots(f"redis://127.0.0.1:{port}", prefix=prefix, lease_s=0.3)
    observer = SharedSlots(url, prefix=prefix, lease_s=0.3)  # another replica, Redis in reach

    async def free_now() -> bool:
        async with observer.hold("k", 1) as held:
            return held

    async def run() -> list[object]:
        seen: list[object] = []
        async with slots.hold("k", 1) as held:
            assert held
            nonlocal link
            link.stop()
            await asyncio.sleep(0.5)  # renewals fail and the lease lapses; the request goes on
            seen.append(await free_now())
            link = TcpForwarder(target)
            link.start(port)
            seen.append(await _until_false(free_now))  # a renewal counts it again
            link.stop()  # and Redis is gone again when it ends
        try:
            async with slots.hold("k", 1):
                seen.append("ran without a count")
        except Sam2ServiceError as exc:
            seen.append(f"{exc.status}:{exc.code}")
        await asyncio.sleep(0.4)  # the lease it could not free lapses by itself
        seen.append(await free_now())
        await slots.aclose()
        await observer.aclose()
        return seen

    assert asyncio.run(run()) == [True, False, "503:dependency_unavailable", True]
    assert "could not renew a concurrency lease" in caplog.text
    assert "a concurrency lease had lapsed: counted again" in caplog.text
    assert "could not free a concurrency slot" in caplog.text


async def _until_false(check: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> bool:
    """False as soon as `check` says so, else its last answer after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while (answer := await check()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return answer
