"""Durable batch jobs (issue 30): jobs and their items in the gateway's SQL store, taken by
workers under leases.

A job is a request template and its items (one image each), in order. A worker `claim`s items:
each claimed item is `running` under a lease (a random token and a deadline) that the worker
`renew`s while it works. A worker that dies stops renewing; once its lease has lapsed, another
`claim` takes the item again (up to MAX_ATTEMPTS times). An item is finished (`done` with its
answer, or `failed` with its problem) only by the holder of its current lease, in one
conditional UPDATE: a worker whose lease lapsed and was taken finds its token stale, and its
late answer is dropped, so no item is finished twice. Cancelling a job cancels its queued items
at once; a running item's worker learns it at its next `renew` and stops.

Claiming is a compare-and-set (`UPDATE ... WHERE state = 'queued' OR lease lapsed`), correct on
any SQL database and on any number of workers; on PostgreSQL the candidates are read `FOR
UPDATE SKIP LOCKED`, so concurrent workers take different items instead of racing for the same.
Time comes from the caller (`now`): a clock is the boundary tests replace.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sam2_contract.webhooks import new_secret
from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from sam2_gateway.core.job_files import JobFiles, JobResults
from sam2_gateway.core.store import ApiKey, Base

__all__ = [
    "Base",
    "Claim",
    "Delivery",
    "IdempotencyConflictError",
    "ItemRecord",
    "JobStatus",
    "JobStore",
]

JobState = Literal["queued", "running", "done", "cancelled"]
ItemState = Literal["queued", "running", "done", "failed", "cancelled"]
ITEM_STATES: tuple[ItemState, ...] = ("queued", "running", "done", "failed", "cancelled")
MAX_ATTEMPTS = 3
"""Leases an item may lapse before it fails (`job_item_abandoned`): a poison image that kills
every worker that takes it does not stall its job forever."""
JOB_ID_PREFIX = "job_"
WEBHOOK_ATTEMPTS = 6
ROTATION_OVERLAP = timedelta(hours=24)
"""How long a rotated-out webhook secret still signs deliveries (beside the new one)."""


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("key_id", "idempotency_key", name="uq_jobs_idempotency"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(40), unique=True, index=True)
    key_id: Mapped[str] = mapped_column(String(12), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    template: Mapped[str] = mapped_column(Text)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    item_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    webhook_state: Mapped[str | None] = mapped_column(String(16))
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    webhook_next_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    webhook_error: Mapped[str | None] = mapped_column(Text)


class WebhookSecret(Base):
    """A key's webhook signing secret, and the one before it while a rotation is recent.
    Kept as it is: an HMAC needs the secret itself (the key's owner reads it to verify)."""

    __tablename__ = "webhook_secrets"

    key_id: Mapped[str] = mapped_column(String(12), primary_key=True)
    secret: Mapped[str] = mapped_column(Text)
    previous: Mapped[str | None] = mapped_column(Text)
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class JobItem(Base):
    __tablename__ = "job_items"
    __table_args__ = (
        UniqueConstraint("job_id", "position", name="uq_job_items_position"),
        Index("ix_job_items_claim", "state", "lease_until"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.job_id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answer: Mapped[str | None] = mapped_column(Text)
    """An answer kept in the database (before answer files, or a store without them)."""
    answer_file: Mapped[str | None] = mapped_column(String(120))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdempotencyConflictError(Exception):
    """The Idempotency-Key names a job created from another request."""


@dataclass(frozen=True, slots=True)
class Claim:
    """An item a worker holds: what to run, and the lease token that finishes it."""

    item_id: int
    job_id: str
    key_id: str
    position: int
    source: dict[str, Any]
    template: dict[str, Any]
    token: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """A job's webhook to send now: the job has ended and its URL has not answered 2xx yet."""

    job_id: str
    key_id: str
    url: str
    attempt: int


@dataclass(frozen=True, slots=True)
class JobStatus:
    job_id: str
    key_id: str
    state: JobState
    counts: dict[ItemState, int]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    webhook_url: str | None
    mean_item_s: float | None
    """The mean time of a finished item, from its start to its end (None before the first)."""
    webhook_state: str | None = None
    """None (no webhook_url, or the job runs), pending, sent or failed."""
    webhook_attempts: int = 0
    webhook_error: str | None = None


@dataclass(frozen=True, slots=True)
class ItemRecord:
    position: int
    state: ItemState
    source: dict[str, Any]
    answer: str | None
    """The answer's JSON as inference gave it (done items)."""
    error: dict[str, Any] | None
    """The item's problem (failed items)."""


class JobStore:
    """Jobs and items in the same database as the keys (its migrations create both)."""

    def __init__(
        self,
        engine: Engine,
        results: JobResults | None = None,
        files: JobFiles | None = None,
    ) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.results = results
        """Where answers are kept as files (None: in the database)."""
        self.files = files
        """Where uploaded images are kept: `expire` removes those no job names any more."""

    def create(
        self,
        key_id: str,
        template: dict[str, Any],
        sources: Sequence[dict[str, Any]],
        *,
        now: datetime,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
    ) -> tuple[JobStatus, bool]:
        """A new job of `sources` (queued, in order), or, for an Idempotency-Key this key has
        used, the job it made (False): the same request again is the same job, another request
        under that key is IdempotencyConflictError."""
        digest = _digest(template, sources, webhook_url)
        if idempotency_key is not None:
            known = self._by_idempotency(key_id, idempotency_key)
            if known is not None:
                if known.request_hash != digest:
                    raise IdempotencyConflictError(idempotency_key)
                return self._must(known.job_id, key_id), False
        job_id = JOB_ID_PREFIX + secrets.token_hex(12)
        job = Job(
            job_id=job_id,
            key_id=key_id,
            idempotency_key=idempotency_key,
            request_hash=digest,
            template=json.dumps(template),
            webhook_url=webhook_url,
            state="queued",
            item_count=len(sources),
            created_at=now,
        )
        items = [
            JobItem(job_id=job_id, position=i, source=json.dumps(s), state="queued", attempts=0)
            for i, s in enumerate(sources)
        ]
        try:
            with self._sessions.begin() as session:
                session.add(job)
                session.flush()  # the job row first: its items refer to it
                session.add_all(items)
        except Exception:
            # Two creates with one Idempotency-Key at once: the unique index let one in.
            if idempotency_key is not None:
                known = self._by_idempotency(key_id, idempotency_key)
                if known is not None and known.request_hash == digest:
                    return self._must(known.job_id, key_id), False
            raise
        return self._must(job_id, key_id), True

    def claim(
        self,
        *,
        now: datetime,
        lease_s: float,
        limit: int = 1,
        running_limits: tuple[Mapping[str, int], int] | None = None,
    ) -> list[Claim]:
        """Up to `limit` items to run, oldest job first and in item order: queued ones, and
        running ones whose lease lapsed (taken again, or failed after MAX_ATTEMPTS).
        `running_limits` ({rate tier: items}, and for a tier not listed) bounds the items of
        one key running at once: a key at its bound is passed over, so other keys' items go
        ahead of its queued ones."""
        lapsed = (JobItem.state == "running") & (JobItem.lease_until < now)
        takeable = or_(JobItem.state == "queued", lapsed)
        claims: list[Claim] = []
        with self._sessions.begin() as session:
            room = self._room(session, now, running_limits)
            candidates = (
                select(JobItem.id, JobItem.attempts, JobItem.job_id, Job.key_id)
                .join(Job, Job.job_id == JobItem.job_id)
                .where(takeable, Job.state.in_(("queued", "running")))
                .order_by(Job.id, JobItem.position)
                .limit(limit * 4)
            )
            full = [key for key, left in room.items() if left <= 0]
            if full:
                candidates = candidates.where(Job.key_id.not_in(full))
            if self._engine.dialect.name == "postgresql":
                candidates = candidates.with_for_update(skip_locked=True, of=JobItem)
            for item_id, attempts, job_id, key_id in session.execute(candidates).all():
                if len(claims) >= limit:
                    break
                if key_id in room and room[key_id] <= 0:
                    continue  # this claim filled the key's bound
                if attempts >= MAX_ATTEMPTS:
                    self._abandon(session, item_id, job_id, now)
                    continue
                token = secrets.token_hex(16)
                taken = session.execute(
                    update(JobItem)
                    .where(JobItem.id == item_id, takeable)
                    .values(
                        state="running",
                        lease_token=token,
                        lease_until=now + timedelta(seconds=lease_s),
                        attempts=JobItem.attempts + 1,
                        started_at=now,
                    )
                )
                if not taken.rowcount:  # type: ignore[attr-defined]
                    continue  # another worker took it between the read and the write
                session.execute(
                    update(Job)
                    .where(Job.job_id == job_id, Job.state == "queued")
                    .values(state="running", started_at=now)
                )
                claims.append(self._claim(session, item_id, token))
                if key_id in room:
                    room[key_id] -= 1
        return claims

    def _room(
        self,
        session: Session,
        now: datetime,
        running_limits: tuple[Mapping[str, int], int] | None,
    ) -> dict[str, int]:
        """Items each key with items waiting may still start (its tier's bound less its
        items running under a live lease); empty without `running_limits`."""
        if running_limits is None:
            return {}
        listed, unlisted = running_limits
        live = (JobItem.state == "running") & (JobItem.lease_until >= now)
        waiting = select(Job.key_id).where(Job.state.in_(("queued", "running"))).distinct()
        tiers = dict(
            session.execute(
                select(ApiKey.key_id, ApiKey.rate_tier).where(ApiKey.key_id.in_(waiting))
            ).all()
        )
        running = dict(
            session.execute(
                select(Job.key_id, func.count(JobItem.id))
                .join(Job, Job.job_id == JobItem.job_id)
                .where(live, Job.key_id.in_(waiting))
                .group_by(Job.key_id)
            ).all()
        )
        return {
            key: listed.get(tiers.get(key, ""), unlisted) - int(running.get(key, 0))
            for key in {*tiers, *running}
        }

    def renew(self, claim: Claim, *, now: datetime, lease_s: float) -> bool:
        """Extend the lease; False when it is no longer this worker's (it lapsed and another
        took the item) or the job was cancelled: the worker stops."""
        with self._sessions.begin() as session:
            renewed = session.execute(
                update(JobItem)
                .where(*_held(claim))
                .values(lease_until=now + timedelta(seconds=lease_s))
            )
            return bool(renewed.rowcount)  # type: ignore[attr-defined]

    def finish(
        self,
        claim: Claim,
        *,
        now: datetime,
        answer: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> bool:
        """Record the item's answer (done) or its problem (failed), if the lease is still this
        worker's; whether it was recorded. The job is done when its last item is. With
        `results`, the answer is written to its file first, and removed when not recorded."""
        answer_file = None
        if answer is not None and self.results is not None:
            answer_file = self.results.put(claim.job_id, claim.position, claim.token, answer)
            answer = None
        recorded = self._finish(claim, now, answer, answer_file, error)
        if not recorded and answer_file is not None and self.results is not None:
            self.results.discard(answer_file)
        return recorded

    def _finish(
        self,
        claim: Claim,
        now: datetime,
        answer: str | None,
        answer_file: str | None,
        error: dict[str, Any] | None,
    ) -> bool:
        with self._sessions.begin() as session:
            finished = session.execute(
                update(JobItem)
                .where(*_held(claim))
                .values(
                    state="failed" if error is not None else "done",
                    answer=answer,
                    answer_file=answer_file,
                    error=json.dumps(error) if error is not None else None,
                    lease_token=None,
                    lease_until=None,
                    finished_at=now,
                )
            )
            if not finished.rowcount:  # type: ignore[attr-defined]
                return False
            self._close_if_finished(session, claim.job_id, now)
            return True

    def cancel(self, job_id: str, key_id: str, *, now: datetime) -> JobStatus | None:
        """Cancel a job of this key: its queued and running items are cancelled (a running
        item's worker stops at its next renew); None if the key has no such job."""
        with self._sessions.begin() as session:
            job = session.scalar(select(Job).where(Job.job_id == job_id, Job.key_id == key_id))
            if job is None:
                return None
            if job.state in ("queued", "running"):
                job.state, job.finished_at = "cancelled", now
                if job.webhook_url is not None:
                    job.webhook_state, job.webhook_next_at = "pending", now
                session.execute(
                    update(JobItem)
                    .where(JobItem.job_id == job_id, JobItem.state.in_(("queued", "running")))
                    .values(state="cancelled", lease_token=None, lease_until=None, finished_at=now)
                )
        return self._status(job_id, key_id)

    def status(self, job_id: str, key_id: str) -> JobStatus | None:
        """A job of this key (another key's is None, as an unknown one)."""
        return self._status(job_id, key_id)

    def jobs(self, key_id: str, *, limit: int = 50) -> list[JobStatus]:
        """This key's jobs, newest first."""
        with self._sessions() as session:
            ids = session.scalars(
                select(Job.job_id).where(Job.key_id == key_id).order_by(Job.id.desc()).limit(limit)
            ).all()
        return [s for s in (self._status(i, key_id) for i in ids) if s is not None]

    def items(self, job_id: str, key_id: str, *, batch: int = 200) -> Iterable[ItemRecord]:
        """The job's items in order, read `batch` at a time (a job's answers may not fit in
        memory at once); nothing for another key's job."""
        if self._status(job_id, key_id) is None:
            return
        after = -1
        while True:
            with self._sessions() as session:
                rows = session.scalars(
                    select(JobItem)
                    .where(JobItem.job_id == job_id, JobItem.position > after)
                    .order_by(JobItem.position)
                    .limit(batch)
                ).all()
            for row in rows:
                yield ItemRecord(
                    position=row.position,
                    state=row.state,  # type: ignore[arg-type]
                    source=json.loads(row.source),
                    answer=self._answer(row),
                    error=json.loads(row.error) if row.error else None,
                )
            if len(rows) < batch:
                return
            after = rows[-1].position

    def expire(
        self, *, now: datetime, retention_days: tuple[Mapping[str, float], float]
    ) -> list[str]:
        """Delete the jobs (with their items and answers) that ended longer ago than their
        key's tier keeps them ({rate tier: days}, and for a tier not listed); their ids."""
        listed, unlisted = retention_days
        shortest = min([*listed.values(), unlisted])
        ended = (Job.state.in_(("done", "cancelled"))) & (
            Job.finished_at < now - timedelta(days=shortest)
        )
        with self._sessions.begin() as session:
            rows = session.execute(
                select(Job.job_id, Job.finished_at, ApiKey.rate_tier)
                .outerjoin(ApiKey, ApiKey.key_id == Job.key_id)
                .where(ended)
                .limit(500)
            ).all()
            gone = [
                job_id
                for job_id, finished, tier in rows
                if finished is not None
                and _utc(finished) + timedelta(days=listed.get(tier or "", unlisted)) < now
            ]
            uploaded: set[str] = set()
            if gone:
                for source in session.scalars(
                    select(JobItem.source).where(JobItem.job_id.in_(gone))
                ):
                    name = json.loads(source).get("file")
                    if isinstance(name, str):
                        uploaded.add(name)
                session.execute(delete(JobItem).where(JobItem.job_id.in_(gone)))
                session.execute(delete(Job).where(Job.job_id.in_(gone)))
            # An uploaded file is kept by its hash once for every job that sent it.
            orphans = [
                name
                for name in sorted(uploaded)
                if session.scalar(
                    select(func.count(JobItem.id)).where(JobItem.source.contains(name))
                )
                == 0
            ]
        for job_id in gone if self.results is not None else ():
            self.results.drop(job_id)  # type: ignore[union-attr]
        for name in orphans if self.files is not None else ():
            self.files.remove(name)  # type: ignore[union-attr]
        return gone

    def _answer(self, row: JobItem) -> str | None:
        if row.answer_file is None or self.results is None:
            return row.answer
        return self.results.get(row.answer_file)

    def by_idempotency_key(self, key_id: str, idempotency_key: str) -> JobStatus | None:
        """The job this key made with this Idempotency-Key, if any."""
        known = self._by_idempotency(key_id, idempotency_key)
        return None if known is None else self._status(known.job_id, key_id)

    def active_jobs(self, key_id: str) -> int:
        """This key's jobs queued or running (the tier's bound on jobs at once)."""
        with self._sessions() as session:
            count = session.scalar(
                select(func.count(Job.id)).where(
                    Job.key_id == key_id, Job.state.in_(("queued", "running"))
                )
            )
        return int(count or 0)

    def waiting_items(self) -> int:
        """Items of every key queued or running (a job-worker fleet stops when none are)."""
        with self._sessions() as session:
            count = session.scalar(
                select(func.count(JobItem.id)).where(JobItem.state.in_(("queued", "running")))
            )
        return int(count or 0)

    def active_items(self, key_id: str) -> int:
        """This key's items queued or running, across its jobs (the tier's bound)."""
        with self._sessions() as session:
            count = session.scalar(
                select(func.count(JobItem.id))
                .join(Job, Job.job_id == JobItem.job_id)
                .where(Job.key_id == key_id, JobItem.state.in_(("queued", "running")))
            )
        return int(count or 0)

    # Webhooks

    def secrets(self, key_id: str, *, now: datetime) -> list[str]:
        """The key's signing secrets, the current one first (made on first use), then the
        rotated-out one while ROTATION_OVERLAP lasts."""
        with self._sessions.begin() as session:
            row = session.get(WebhookSecret, key_id)
            if row is None:
                row = WebhookSecret(key_id=key_id, secret=new_secret())
                session.add(row)
            kept = [row.secret]
            rotated = _utc(row.rotated_at) if row.rotated_at else None
            if row.previous and rotated is not None and now - rotated < ROTATION_OVERLAP:
                kept.append(row.previous)
            return kept

    def rotate_secret(self, key_id: str, *, now: datetime) -> str:
        """A new current secret; the old one still signs beside it for ROTATION_OVERLAP."""
        current = self.secrets(key_id, now=now)[0]
        with self._sessions.begin() as session:
            row = session.get_one(WebhookSecret, key_id)
            row.previous, row.secret, row.rotated_at = current, new_secret(), now
            return row.secret

    def due_webhooks(self, *, now: datetime, hold_s: float, limit: int) -> list[Delivery]:
        """Webhooks to send now, each held for `hold_s` (another worker does not send it
        meanwhile; a sender that dies lets it come due again)."""
        due = (Job.webhook_state == "pending") & (Job.webhook_next_at <= now)
        deliveries: list[Delivery] = []
        with self._sessions.begin() as session:
            rows = session.execute(
                select(Job.job_id, Job.key_id, Job.webhook_url, Job.webhook_attempts)
                .where(due)
                .order_by(Job.webhook_next_at)
                .limit(limit)
            ).all()
            for job_id, key_id, url, attempts in rows:
                if url is None:  # a pending webhook always has its URL
                    continue
                held = session.execute(
                    update(Job)
                    .where(Job.job_id == job_id, due)
                    .values(webhook_next_at=now + timedelta(seconds=hold_s))
                )
                if held.rowcount:  # type: ignore[attr-defined]
                    deliveries.append(Delivery(job_id, key_id, url, (attempts or 0) + 1))
        return deliveries

    def webhook_result(
        self, delivery: Delivery, *, now: datetime, error: str | None, retry_s: float
    ) -> None:
        """Record a delivery: sent, or failed (sent again after retry_s x 4^(attempt - 1),
        given up after WEBHOOK_ATTEMPTS)."""
        values: dict[str, Any] = {"webhook_attempts": delivery.attempt, "webhook_error": error}
        if error is None:
            values |= {"webhook_state": "sent", "webhook_next_at": None}
        elif delivery.attempt >= WEBHOOK_ATTEMPTS:
            values |= {"webhook_state": "failed", "webhook_next_at": None}
        else:
            wait = timedelta(seconds=retry_s * 4 ** (delivery.attempt - 1))
            values |= {"webhook_next_at": now + wait}
        with self._sessions.begin() as session:
            session.execute(update(Job).where(Job.job_id == delivery.job_id).values(**values))

    def _must(self, job_id: str, key_id: str) -> JobStatus:
        status = self._status(job_id, key_id)
        assert status is not None  # just written by this key
        return status

    def _by_idempotency(self, key_id: str, idempotency_key: str) -> Job | None:
        with self._sessions() as session:
            return session.scalar(
                select(Job).where(Job.key_id == key_id, Job.idempotency_key == idempotency_key)
            )

    def _claim(self, session: Session, item_id: int, token: str) -> Claim:
        item = session.get_one(JobItem, item_id)
        job = session.scalar(select(Job).where(Job.job_id == item.job_id))
        assert job is not None
        return Claim(
            item_id=item_id,
            job_id=item.job_id,
            key_id=job.key_id,
            position=item.position,
            source=json.loads(item.source),
            template=json.loads(job.template),
            token=token,
            attempt=item.attempts,
        )

    def _abandon(self, session: Session, item_id: int, job_id: str, now: datetime) -> None:
        """An item whose lease lapsed MAX_ATTEMPTS times fails: its workers kept dying."""
        problem = {
            "code": "job_item_abandoned",
            "status": 500,
            "detail": f"the item's worker stopped {MAX_ATTEMPTS} times while running it",
        }
        session.execute(
            update(JobItem)
            .where(JobItem.id == item_id, JobItem.state == "running")
            .values(state="failed", error=json.dumps(problem), lease_token=None, finished_at=now)
        )
        self._close_if_finished(session, job_id, now)

    def _close_if_finished(self, session: Session, job_id: str, now: datetime) -> None:
        left = session.scalar(
            select(func.count(JobItem.id)).where(
                JobItem.job_id == job_id, JobItem.state.in_(("queued", "running"))
            )
        )
        if not left:
            session.execute(
                update(Job)
                .where(Job.job_id == job_id, Job.state.in_(("queued", "running")))
                .values(state="done", finished_at=now)
            )
            session.execute(
                update(Job)
                .where(Job.job_id == job_id, Job.webhook_url.is_not(None))
                .where(Job.webhook_state.is_(None))
                .values(webhook_state="pending", webhook_next_at=now)
            )

    def _status(self, job_id: str, key_id: str) -> JobStatus | None:
        with self._sessions() as session:
            job = session.scalar(select(Job).where(Job.job_id == job_id, Job.key_id == key_id))
            if job is None:
                return None
            counted: dict[str, int] = dict.fromkeys(ITEM_STATES, 0)
            for state, count in session.execute(
                select(JobItem.state, func.count(JobItem.id))
                .where(JobItem.job_id == job_id)
                .group_by(JobItem.state)
            ):
                counted[state] = int(count)
            finished = session.execute(
                select(JobItem.started_at, JobItem.finished_at).where(
                    JobItem.job_id == job_id,
                    JobItem.state.in_(("done", "failed")),
                    JobItem.started_at.is_not(None),
                )
            ).all()
        spans = [
            (_utc(end) - _utc(start)).total_seconds() for start, end in finished if start and end
        ]
        return JobStatus(
            job_id=job.job_id,
            key_id=job.key_id,
            state=job.state,  # type: ignore[arg-type]
            counts=counted,  # type: ignore[arg-type]  # the states are ITEM_STATES
            created_at=_utc(job.created_at),
            started_at=_utc(job.started_at) if job.started_at else None,
            finished_at=_utc(job.finished_at) if job.finished_at else None,
            webhook_url=job.webhook_url,
            mean_item_s=sum(spans) / len(spans) if spans else None,
            webhook_state=job.webhook_state,
            webhook_attempts=job.webhook_attempts or 0,
            webhook_error=job.webhook_error,
        )


def _held(claim: Claim) -> tuple[Any, ...]:
    """The item is still this claim's: running under its lease token (not lapsed and taken,
    not cancelled, not finished)."""
    return (
        JobItem.id == claim.item_id,
        JobItem.lease_token == claim.token,
        JobItem.state == "running",
    )


def _digest(
    template: dict[str, Any], sources: Sequence[dict[str, Any]], webhook: str | None
) -> str:
    text = json.dumps([template, list(sources), webhook], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _utc(moment: datetime) -> datetime:
    """SQLite drops time zones; every stored time is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
