"""The durable job queue (issue 30, core/jobs.py) on SQLite and on a real PostgreSQL server:
jobs made once per Idempotency-Key, items claimed in order under leases, a lapsed lease taken
again and its late worker's answer dropped (no item finished twice), cancellation, another
key's job invisible, and concurrent workers taking every item exactly once. Time is a
parameter: the tests move the clock instead of waiting."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sam2_gateway.core.job_files import JobFiles, JobResults
from sam2_gateway.core.jobs import MAX_ATTEMPTS, IdempotencyConflictError, JobItem, JobStore
from sam2_gateway.core.store import KeyStore
from support import SQL_TABLES as TABLES
from support import service_url

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
TEMPLATE = {"mode": "auto", "points_per_side": 8}
LEASE_S = 30.0


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[KeyStore, JobStore]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        url = service_url("SAM2_TEST_POSTGRES_URL")
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            for table in TABLES:
                connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()
    keys = KeyStore(url, "job-test-pepper")
    keys.migrate()
    yield keys, JobStore(keys.engine)
    keys.dispose()


@pytest.fixture
def jobs(stores: tuple[KeyStore, JobStore]) -> JobStore:
    return stores[1]


def _sources(count: int) -> list[dict[str, str]]:
    return [{"image_id": f"img_{i:032x}"} for i in range(count)]


def test_a_job_is_made_once_per_idempotency_key(jobs: JobStore) -> None:
    first, made = jobs.create("key_a", TEMPLATE, _sources(3), now=T0, idempotency_key="run-1")
    again, made_again = jobs.create("key_a", TEMPLATE, _sources(3), now=T0, idempotency_key="run-1")
    assert (made, made_again) == (True, False)
    assert again.job_id == first.job_id
    assert first.counts["queued"] == 3
    with pytest.raises(IdempotencyConflictError):
        jobs.create("key_a", TEMPLATE, _sources(4), now=T0, idempotency_key="run-1")
    other, made_other = jobs.create("key_b", TEMPLATE, _sources(3), now=T0, idempotency_key="run-1")
    assert made_other
    assert other.job_id != first.job_id
    assert [j.job_id for j in jobs.jobs("key_a")] == [first.job_id]


def test_items_are_claimed_in_order_and_finished_once(jobs: JobStore) -> None:
    job, _ = jobs.create("key_a", TEMPLATE, _sources(3), now=T0)
    claims = jobs.claim(now=T0, lease_s=LEASE_S, limit=2)
    assert [c.position for c in claims] == [0, 1]
    assert claims[0].template == TEMPLATE
    assert claims[0].source == {"image_id": f"img_{0:032x}"}
    assert jobs.status(job.job_id, "key_a").state == "running"  # type: ignore[union-attr]
    assert jobs.finish(claims[0], now=T0, answer='{"count": 1}')
    assert not jobs.finish(claims[0], now=T0, answer='{"count": 2}')  # once only
    assert jobs.finish(claims[1], now=T0, error={"code": "corrupt_image", "status": 422})
    [last] = jobs.claim(now=T0, lease_s=LEASE_S, limit=5)
    assert last.position == 2
    assert jobs.finish(last, now=T0 + timedelta(seconds=4), answer='{"count": 3}')
    status = jobs.status(job.job_id, "key_a")
    assert status is not None
    assert status.state == "done"
    assert (status.counts["done"], status.counts["failed"], status.counts["queued"]) == (2, 1, 0)
    assert status.finished_at == T0 + timedelta(seconds=4)
    items = list(jobs.items(job.job_id, "key_a", batch=2))  # two pages
    assert [(i.position, i.state) for i in items] == [(0, "done"), (1, "failed"), (2, "done")]
    assert items[0].answer == '{"count": 1}'
    assert items[1].error == {"code": "corrupt_image", "status": 422}
    assert jobs.claim(now=T0, lease_s=LEASE_S) == []


def test_a_lapsed_lease_is_taken_again_and_the_late_answer_dropped(jobs: JobStore) -> None:
    job, _ = jobs.create("key_a", TEMPLATE, _sources(2), now=T0)
    [dead] = jobs.claim(now=T0, lease_s=LEASE_S)
    [alive] = jobs.claim(now=T0, lease_s=LEASE_S)
    assert jobs.renew(alive, now=T0 + timedelta(seconds=20), lease_s=LEASE_S)
    later = T0 + timedelta(seconds=LEASE_S + 1)
    [again] = jobs.claim(now=later, lease_s=LEASE_S, limit=5)  # the renewed one is not taken
    assert (again.position, again.attempt) == (dead.position, 2)
    assert again.token != dead.token
    assert not jobs.renew(dead, now=later, lease_s=LEASE_S)  # the dead worker learns it lost
    assert not jobs.finish(dead, now=later, answer='{"late": true}')
    assert jobs.finish(again, now=later, answer='{"late": false}')
    assert jobs.finish(alive, now=later, answer='{"kept": true}')
    answers = [i.answer for i in jobs.items(job.job_id, "key_a")]
    assert answers == ['{"late": false}', '{"kept": true}']


def test_an_item_whose_workers_keep_dying_fails_instead_of_stalling(jobs: JobStore) -> None:
    job, _ = jobs.create("key_a", TEMPLATE, _sources(1), now=T0)
    moment = T0
    for attempt in range(1, MAX_ATTEMPTS + 1):
        [claim] = jobs.claim(now=moment, lease_s=LEASE_S)
        assert claim.attempt == attempt
        moment += timedelta(seconds=LEASE_S + 1)
    assert jobs.claim(now=moment, lease_s=LEASE_S) == []
    [item] = jobs.items(job.job_id, "key_a")
    assert item.state == "failed"
    assert item.error is not None
    assert item.error["code"] == "job_item_abandoned"
    assert jobs.status(job.job_id, "key_a").state == "done"  # type: ignore[union-attr]


def test_cancel_stops_running_items_and_starts_no_queued_one(jobs: JobStore) -> None:
    job, _ = jobs.create("key_a", TEMPLATE, _sources(4), now=T0)
    [running] = jobs.claim(now=T0, lease_s=LEASE_S)
    assert jobs.cancel(job.job_id, "key_b", now=T0) is None  # not that key's
    status = jobs.cancel(job.job_id, "key_a", now=T0 + timedelta(seconds=1))
    assert status is not None
    assert status.state == "cancelled"
    assert status.counts["cancelled"] == 4
    assert not jobs.renew(running, now=T0, lease_s=LEASE_S)  # its worker stops
    assert not jobs.finish(running, now=T0, answer="{}")
    assert jobs.claim(now=T0 + timedelta(hours=1), lease_s=LEASE_S, limit=10) == []


def test_another_keys_job_is_not_there(jobs: JobStore) -> None:
    job, _ = jobs.create("key_a", TEMPLATE, _sources(1), now=T0)
    assert jobs.status(job.job_id, "key_b") is None
    assert list(jobs.items(job.job_id, "key_b")) == []
    assert jobs.jobs("key_b") == []
    assert jobs.status("job_" + "0" * 24, "key_a") is None


def test_concurrent_workers_take_every_item_exactly_once(jobs: JobStore) -> None:
    """Four workers claiming at once (threads, each its own connections): every item is
    claimed by one of them, none twice; on PostgreSQL FOR UPDATE SKIP LOCKED lets them pass
    each other, on SQLite the compare-and-set does."""
    job, _ = jobs.create("key_a", TEMPLATE, _sources(40), now=T0)
    taken: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            while claims := jobs.claim(now=T0, lease_s=LEASE_S, limit=2):
                for claim in claims:
                    assert jobs.finish(claim, now=T0, answer=str(claim.position))
                    with lock:
                        taken.append(claim.position)
        except BaseException as exc:  # surfaced below, with the thread's error
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert errors == []
    assert Counter(taken) == Counter(range(40))
    assert jobs.status(job.job_id, "key_a").counts["done"] == 40  # type: ignore[union-attr]
    assert jobs.active_items("key_a") == 0


def _free_and_standard(keys: KeyStore) -> tuple[str, str]:
    """The ids of two keys in the store, of the free and the standard tier."""
    free = keys.create("free", frozenset({"jobs"}), rate_tier="free")[1].key_id
    return free, keys.create("standard", frozenset({"jobs"}), rate_tier="standard")[1].key_id


def test_a_key_runs_its_tiers_items_at_once_and_other_keys_go_ahead(
    stores: tuple[KeyStore, JobStore],
) -> None:
    jobs = stores[1]
    free, standard = _free_and_standard(stores[0])
    limits = ({"free": 2, "standard": 3}, 1)
    first, _ = jobs.create(free, TEMPLATE, _sources(6), now=T0)  # the oldest job
    jobs.create(free, TEMPLATE, _sources(2), now=T0)  # the bound is the key's, across jobs
    jobs.create(standard, TEMPLATE, _sources(6), now=T0)

    taken = jobs.claim(now=T0, lease_s=LEASE_S, limit=10, running_limits=limits)
    assert Counter(c.key_id for c in taken) == {free: 2, standard: 3}
    assert [c.position for c in taken if c.key_id == free] == [0, 1]  # still in item order
    assert jobs.claim(now=T0, lease_s=LEASE_S, limit=10, running_limits=limits) == []

    jobs.finish(taken[0], now=T0, answer="{}")  # one of the free key's items ends
    more = jobs.claim(now=T0, lease_s=LEASE_S, limit=10, running_limits=limits)
    assert [(c.key_id, c.job_id, c.position) for c in more] == [(free, first.job_id, 2)]

    later = T0 + timedelta(seconds=LEASE_S + 1)  # lapsed leases no longer count as running
    again = jobs.claim(now=later, lease_s=LEASE_S, limit=10, running_limits=limits)
    assert Counter(c.key_id for c in again) == {free: 2, standard: 3}
    rest = jobs.claim(now=later, lease_s=LEASE_S, limit=20)  # no bound: every item left
    assert len(rest) == 14 - 1 - len(again)


def test_a_finished_job_is_kept_for_its_tiers_days_then_deleted(
    stores: tuple[KeyStore, JobStore],
) -> None:
    jobs = stores[1]
    free, standard = _free_and_standard(stores[0])
    days = ({"free": 7.0, "standard": 30.0}, 7.0)
    short, _ = jobs.create(free, TEMPLATE, _sources(2), now=T0)
    long, _ = jobs.create(standard, TEMPLATE, _sources(1), now=T0)
    running, _ = jobs.create(free, TEMPLATE, _sources(5), now=T0)
    for claim in jobs.claim(now=T0, lease_s=LEASE_S, limit=3):  # the first two jobs' items
        jobs.finish(claim, now=T0, answer='{"mask": null}')
    assert jobs.status(short.job_id, free).state == "done"  # type: ignore[union-attr]

    assert jobs.expire(now=T0 + timedelta(days=6), retention_days=days) == []
    gone = jobs.expire(now=T0 + timedelta(days=8), retention_days=days)
    assert gone == [short.job_id]  # the free tier's 7 days are over; a job not ended stays
    assert jobs.status(short.job_id, free) is None
    assert list(jobs.items(short.job_id, free)) == []
    assert [j.job_id for j in jobs.jobs(free)] == [running.job_id]
    assert jobs.status(long.job_id, standard) is not None
    assert jobs.expire(now=T0 + timedelta(days=31), retention_days=days) == [long.job_id]


def test_answers_are_files_beside_the_database_and_go_with_their_job(
    stores: tuple[KeyStore, JobStore], tmp_path: Path
) -> None:
    keys, plain = stores
    results = JobResults(tmp_path / "results")
    jobs = JobStore(plain._engine, results)
    free, _ = _free_and_standard(keys)
    job, _ = jobs.create(free, TEMPLATE, _sources(2), now=T0)
    first, second = jobs.claim(now=T0, lease_s=LEASE_S, limit=2)
    answer = '{"masks": [], "count": 0, "image_shape": [4, 4]}'
    assert jobs.finish(first, now=T0, answer=answer)
    later = T0 + timedelta(seconds=LEASE_S + 1)  # the second's lease lapses and is taken again
    (retaken,) = jobs.claim(now=later, lease_s=LEASE_S, limit=1)
    assert not jobs.finish(second, now=later, answer='{"late": true}')  # dropped, file too
    assert jobs.finish(retaken, now=later, answer=answer)
    files = sorted(p.name for p in (tmp_path / "results" / job.job_id).iterdir())
    assert files == [f"0-{first.token}.json", f"1-{retaken.token}.json"]
    with plain._sessions() as session:  # the database holds names, not answers
        assert session.scalars(sa.select(JobItem.answer)).all() == [None, None]
    assert [i.answer for i in jobs.items(job.job_id, free)] == [answer, answer]
    days = ({"free": 7.0}, 7.0)
    assert jobs.expire(now=later + timedelta(days=8), retention_days=days) == [job.job_id]
    assert not (tmp_path / "results" / job.job_id).exists()


def test_an_uploaded_file_goes_when_the_last_job_that_sent_it_does(
    stores: tuple[KeyStore, JobStore], tmp_path: Path
) -> None:
    keys, plain = stores
    files = JobFiles(tmp_path / "files")
    jobs = JobStore(plain._engine, files=files)
    free, standard = _free_and_standard(keys)
    shared, own = files.put(b"sent by both keys"), files.put(b"sent by one")
    early, _ = jobs.create(free, TEMPLATE, [{"file": shared}, {"file": own}], now=T0)
    jobs.create(standard, TEMPLATE, [{"file": shared}], now=T0)
    jobs.cancel(early.job_id, free, now=T0)
    days = ({"free": 7.0, "standard": 30.0}, 7.0)
    assert jobs.expire(now=T0 + timedelta(days=8), retention_days=days) == [early.job_id]
    assert files.get(own) is None  # no job names it any more
    assert files.get(shared) == b"sent by both keys"  # the standard key's job still runs
