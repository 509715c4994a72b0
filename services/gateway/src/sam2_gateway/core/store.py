"""API keys and usage in SQL (SQLAlchemy 2): SQLite by default, PostgreSQL via DATABASE_URL.

The schema is owned by the Alembic migrations in the package's `migrations/`;
`KeyStore.migrate()` brings a database to the latest revision. No plaintext key is ever
stored: only `hash_key(key)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    bindparam,
    create_engine,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from starlette.concurrency import run_in_threadpool

from sam2_gateway.core.guard import DependencyGuard, dependency_down
from sam2_gateway.core.keys import ParsedKey, generate_key, hash_key

T = TypeVar("T")
MIGRATIONS = Path(__file__).parents[1] / "migrations"
MIGRATE_LOCK = 0x53414D32  # "SAM2": the PostgreSQL advisory lock a migration holds


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(12), unique=True, index=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[str] = mapped_column(String(200))
    rate_tier: Mapped[str] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Usage(Base):
    __tablename__ = "usage"

    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.key_id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    images: Mapped[int] = mapped_column(Integer, default=0)
    masks: Mapped[int] = mapped_column(Integer, default=0)
    gpu_ms: Mapped[float] = mapped_column(Float, default=0.0)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: str
    key_hash: str
    name: str
    scopes: frozenset[str]
    rate_tier: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class UsageDelta:
    """Usage to add to a key's counters."""

    key_id: str
    requests: int
    images: int
    masks: int
    gpu_ms: float


@dataclass(frozen=True, slots=True)
class UsageRow:
    key_id: str
    day: date
    requests: int
    images: int
    masks: int
    gpu_ms: float


_BY_KEY_ID = select(ApiKey.__table__).where(ApiKey.__table__.c.key_id == bindparam("key_id"))


class KeyStore:
    """Key records and usage counters."""

    def __init__(
        self, database_url: str, pepper: str, *, timeout_s: float = 1.5, retry_s: float = 2.0
    ) -> None:
        self.database_url = database_url
        # Pre-ping catches dropped server connections; a local SQLite file has none to drop.
        networked = not database_url.startswith("sqlite")
        # A database across the network answers in bounded time or is reported down: the
        # connection in whole seconds (libpq's unit), a statement waiting for a lock by the
        # server, a checkout from a pool whose connections are all stuck by the pool, and a
        # call to a server that stopped answering by the guard (which a driver blocked on its
        # socket cannot be interrupted by, so the calls of async callers go through it).
        connect_args = (
            {
                "connect_timeout": max(2, math.ceil(timeout_s)),
                "options": f"-c statement_timeout={int(timeout_s * 1000)}",
            }
            if networked
            else {}
        )
        pool = {"pool_timeout": timeout_s} if networked else {}
        self._engine: Engine = create_engine(
            database_url, pool_pre_ping=networked, connect_args=connect_args, **pool
        )
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._pepper = pepper
        self.guard = DependencyGuard(
            "key store", timeout_s=timeout_s, open_s=retry_s, failures=(DBAPIError, TimeoutError)
        )

    @property
    def engine(self) -> Engine:
        """The database's engine, which the job store (core/jobs.py) shares."""
        return self._engine

    def migrate(self) -> None:
        """Upgrade the schema to the newest Alembic revision (idempotent). On PostgreSQL one
        process at a time: every gateway container migrates as it starts, and two creating the
        same tables at once would fail one of them."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self._engine.begin() as connection:
            if connection.dialect.name == "postgresql":  # held until this transaction ends
                lock = text("SELECT pg_advisory_xact_lock(:key)")
                connection.execute(lock, {"key": MIGRATE_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def create(
        self,
        name: str,
        scopes: frozenset[str],
        *,
        rate_tier: str,
        expires_at: datetime | None = None,
    ) -> tuple[ParsedKey, KeyRecord]:
        """A new key: the caller shows `ParsedKey.full` once; only its hash is stored."""
        key = generate_key()
        row = ApiKey(
            key_id=key.key_id,
            key_hash=hash_key(key.full, self._pepper),
            name=name,
            scopes=" ".join(sorted(scopes)),
            rate_tier=rate_tier,
            created_at=_now(),
            expires_at=expires_at,
        )
        with self._sessions.begin() as session:
            session.add(row)
        return key, _record(row)

    def get(self, key_id: str) -> KeyRecord | None:
        # Core, not the ORM: this runs on every request and the ORM costs ~4x more.
        with self._engine.connect() as connection:
            row = connection.execute(_BY_KEY_ID, {"key_id": key_id}).first()
        return _record(row) if row else None

    async def aget(self, key_id: str) -> KeyRecord | None:
        """`get` for async callers: inline on SQLite (a local read of ~0.1 ms costs less than
        a thread hop), in a worker thread behind the guard for a database across the network.
        A database that fails or does not answer in time is `503 dependency_unavailable`."""
        if self._engine.dialect.name == "sqlite":
            try:
                return self.get(key_id)
            except DBAPIError as exc:
                raise dependency_down("key store") from exc
        return await self._guarded(partial(self.get, key_id))

    async def ausage(self, key_id: str, *, since: date) -> list[UsageRow]:
        """`usage` of one key for async callers, behind the guard."""
        return await self._guarded(partial(self.usage, key_id, since=since))

    async def arecord_usage(self, deltas: list[UsageDelta]) -> None:
        """`record_usage` for the meter's flush, behind the guard."""
        await self._guarded(partial(self.record_usage, deltas))

    async def check(self, *, timeout_s: float) -> None:
        """Raise `dependency_down` unless the database answers a trivial query in time."""
        await self._guarded(self._ping, timeout_s=timeout_s)

    async def _guarded(self, call: Callable[[], T], *, timeout_s: float | None = None) -> T:
        return await self.guard.call(lambda: run_in_threadpool(call), timeout_s=timeout_s)

    def _ping(self) -> None:
        with self._engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def all_keys(self) -> list[KeyRecord]:
        with self._sessions() as session:
            return [_record(r) for r in session.scalars(select(ApiKey).order_by(ApiKey.id))]

    def revoke(self, key_id: str) -> bool:
        with self._sessions.begin() as session:
            result = session.execute(
                update(ApiKey)
                .where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def record_usage(self, deltas: list[UsageDelta]) -> None:
        """Add usage to today's counters (UTC) and stamp each key's last use, in one commit."""
        now = _now()
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        with self._sessions.begin() as session:
            for delta in deltas:
                values = {"key_id": delta.key_id, "day": now.date(), "requests": delta.requests}
                values |= {"images": delta.images, "masks": delta.masks, "gpu_ms": delta.gpu_ms}
                upsert = (
                    dialect.insert(Usage)
                    .values(**values)
                    .on_conflict_do_update(
                        index_elements=[Usage.key_id, Usage.day],
                        set_={
                            "requests": Usage.requests + delta.requests,
                            "images": Usage.images + delta.images,
                            "masks": Usage.masks + delta.masks,
                            "gpu_ms": Usage.gpu_ms + delta.gpu_ms,
                        },
                    )
                )
                session.execute(upsert)
                session.execute(
                    update(ApiKey).where(ApiKey.key_id == delta.key_id).values(last_used_at=now)
                )

    def usage(self, key_id: str | None = None, *, since: date | None = None) -> list[UsageRow]:
        """Usage per key and UTC day, oldest first: every key's, or `key_id`'s, from `since`."""
        query = select(Usage).order_by(Usage.key_id, Usage.day)
        if key_id is not None:
            query = query.where(Usage.key_id == key_id)
        if since is not None:
            query = query.where(Usage.day >= since)
        with self._sessions() as session:
            return [
                UsageRow(u.key_id, u.day, u.requests, u.images, u.masks, u.gpu_ms)
                for u in session.scalars(query)
            ]

    def dispose(self) -> None:
        self._engine.dispose()


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(moment: datetime | None) -> datetime | None:
    """SQLite drops time zones; every stored time is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _record(row: ApiKey | Any) -> KeyRecord:
    """A KeyRecord from an ORM object or a Core row (same attribute names)."""
    return KeyRecord(
        key_id=row.key_id,
        key_hash=row.key_hash,
        name=row.name,
        scopes=frozenset(row.scopes.split()),
        rate_tier=row.rate_tier,
        created_at=_utc(row.created_at) or _now(),
        expires_at=_utc(row.expires_at),
        revoked_at=_utc(row.revoked_at),
        last_used_at=_utc(row.last_used_at),
    )
