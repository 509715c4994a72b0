"""The key store on SQLite and on a real PostgreSQL server; the rate limiter on real Redis.

PostgreSQL and Redis come from scripts/test-services (which .ci/run calls). Without them these
cases are skipped locally, and fail under CI, where skipping would hide a broken backend."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sam2_contract import RateLimitError
from sam2_gateway.core.keys import parse_key, verify_key
from sam2_gateway.core.ratelimit import RateLimiter
from sam2_gateway.store import KeyStore, UsageDelta

PEPPER = "store-test-pepper"


def _service_url(variable: str) -> str:
    url = os.environ.get(variable)
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(f"{variable} is not set: .ci/run must start the server (scripts/test-services)")
    pytest.skip(f'{variable} not set; run: eval "$(scripts/test-services)"')


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
        url = _service_url("SAM2_TEST_POSTGRES_URL")
        for table in ("usage", "api_keys", "alembic_version"):
            _sql(url, f"DROP TABLE IF EXISTS {table}")
    store = KeyStore(url, PEPPER)
    store.migrate()
    store.migrate()  # idempotent
    yield store
    store.dispose()


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
    url = _service_url("SAM2_TEST_REDIS_URL").replace("redis://", "async+redis://")
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
