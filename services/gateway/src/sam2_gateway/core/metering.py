"""Usage metering off the request path: counts are written to the store in one transaction per
flush (every second, and at shutdown), so a click never waits on a database commit.

Between flushes the counts are kept where a crash of the gateway process does not lose them, a
journal, before the request's answer leaves:

- `FileJournal` (`SAM2_GATEWAY_USAGE_JOURNAL=/path`, the local stack's default): one `write`
  to an append-only file per request. The file belongs to one gateway process; the next
  process on it writes what a crashed one left.
- `RedisJournal` (when the rate limiter uses Redis, as several gateway replicas on Modal do):
  one pipelined round trip per request into a hash of this process's. Every process's flush
  also takes over the hashes of processes that stopped refreshing theirs (crashed) for 60 s.

A flush takes the journal's counts aside, writes their sum to the store, then deletes them; a
failed write keeps them for the next flush, and a crash between the commit and the delete (a
window of microseconds) would count that flush twice. Without a journal (in memory) a crash
loses at most the last second; a journal that fails keeps the counts in memory instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool

from sam2_gateway.core.guard import DependencyGuard
from sam2_gateway.core.ratelimit import redis_client, redis_guard, shared_redis_url
from sam2_gateway.core.store import KeyStore, UsageDelta

log = logging.getLogger(__name__)

Totals = defaultdict[str, "Counts"]


@dataclass
class Counts:
    requests: int = 0
    images: int = 0
    masks: int = 0
    gpu_ms: float = 0.0

    def add(self, other: Counts) -> None:
        self.requests += other.requests
        self.images += other.images
        self.masks += other.masks
        self.gpu_ms += other.gpu_ms


class Journal(Protocol):
    async def append(self, key_id: str, counts: Counts) -> None: ...

    async def take(self) -> dict[str, Counts]:
        """What the journal holds (and what earlier flushes or processes left unwritten); it
        stays in the journal until `written()`."""
        ...

    async def written(self) -> None:
        """The taken counts are in the store."""
        ...

    async def close(self) -> None: ...


class FileJournal:
    """Counts appended to a file as they happen, taken from it a flush at a time."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._taken = path.with_name(path.name + ".flushing")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._open()

    async def append(self, key_id: str, counts: Counts) -> None:
        c = counts
        line = f"{key_id}\t{c.requests}\t{c.images}\t{c.masks}\t{c.gpu_ms!r}\n"
        os.write(self._fd, line.encode())

    async def take(self) -> dict[str, Counts]:
        return await run_in_threadpool(self._take)

    async def written(self) -> None:
        self._taken.unlink(missing_ok=True)

    async def close(self) -> None:
        os.close(self._fd)

    def _take(self) -> dict[str, Counts]:
        if not self._taken.exists():
            os.close(self._fd)
            self._path.rename(self._taken)
            self._fd = self._open()
        totals: Totals = defaultdict(Counts)
        for line in self._taken.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) != 5:  # a line cut short by a crash mid-write
                log.warning("skipping a torn usage-journal line")
                continue
            key_id, requests, images, masks, gpu_ms = fields
            totals[key_id].add(Counts(int(requests), int(images), int(masks), float(gpu_ms)))
        return totals

    def _open(self) -> int:
        fd = os.open(self._path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.write(fd, b"\n")  # end a line a crash tore, so that the next one stands alone
        return fd


class RedisJournal:
    """Counts kept in Redis per gateway process: `<prefix>:live:<process>` (a hash of
    `<key_id>|<counter>` fields) while requests come, renamed to `<prefix>:taken:<process>:*`
    by a flush; `<prefix>:alive:<process>` says the process is still there."""

    ALIVE_S = 60
    FIELDS = ("requests", "images", "masks", "gpu_ms")

    def __init__(
        self, url: str, *, guard: DependencyGuard | None = None, prefix: str = "sam2:usage"
    ) -> None:
        self._guard = guard or redis_guard()
        self._redis: Any = redis_client(url, self._guard.timeout_s)
        self._prefix = prefix
        self.process = uuid.uuid4().hex[:16]
        self._live = f"{prefix}:live:{self.process}"
        self._alive = f"{prefix}:alive:{self.process}"
        self._taken = f"{prefix}:taken:{self.process}"

    async def append(self, key_id: str, counts: Counts) -> None:
        """On every answer's path: bounded, and skipped while Redis is held back (the meter then
        keeps the counts in memory)."""
        await self._guard.call(lambda: self._append(key_id, counts))

    async def _append(self, key_id: str, counts: Counts) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for name in self.FIELDS:
            value = getattr(counts, name)
            if value:
                add = pipe.hincrbyfloat if isinstance(value, float) else pipe.hincrby
                add(self._live, f"{key_id}|{name}", value)
        pipe.set(self._alive, 1, ex=self.ALIVE_S)
        await pipe.execute()

    async def take(self) -> dict[str, Counts]:
        await self._redis.set(self._alive, 1, ex=self.ALIVE_S)
        if not await self._taken_keys():
            await self._rename(self._live, f"{self._taken}:own")
            await self._adopt_orphans()
        totals: Totals = defaultdict(Counts)
        for key in await self._taken_keys():
            for field, value in (await self._redis.hgetall(key)).items():
                key_id, _, name = field.decode().rpartition("|")
                if name in self.FIELDS:
                    number = float(value) if name == "gpu_ms" else int(float(value))
                    setattr(totals[key_id], name, getattr(totals[key_id], name) + number)
        return totals

    async def written(self) -> None:
        keys = await self._taken_keys()
        if keys:
            await self._redis.delete(*keys)

    async def close(self) -> None:
        try:
            await self._redis.delete(self._alive)
        finally:
            await self._redis.aclose()

    async def _adopt_orphans(self) -> None:
        """Take over what processes that are gone (no alive key) left, live or taken."""
        async for raw in self._redis.scan_iter(match=f"{self._prefix}:*:*"):
            key = raw.decode()
            kind, _, rest = key.removeprefix(self._prefix + ":").partition(":")
            owner = rest.split(":")[0]
            if kind not in ("live", "taken") or owner == self.process:
                continue
            if not await self._redis.exists(f"{self._prefix}:alive:{owner}"):
                await self._rename(key, f"{self._taken}:{kind}-{rest.replace(':', '-')}")

    async def _taken_keys(self) -> list[str]:
        return [k.decode() async for k in self._redis.scan_iter(match=f"{self._taken}:*")]

    async def _rename(self, source: str, target: str) -> None:
        with contextlib.suppress(Exception):  # gone already: nothing to take
            await self._redis.rename(source, target)


class UsageMeter:
    def __init__(
        self, store: KeyStore, *, interval_s: float = 1.0, journal: Journal | None = None
    ) -> None:
        self._store = store
        self._interval_s = interval_s
        self._journal = journal
        self._pending: Totals = defaultdict(Counts)
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def add(
        self, key_id: str, *, images: int, masks: int, gpu_ms: float, requests: int = 1
    ) -> None:
        counts = Counts(requests, images, masks, gpu_ms)
        if self._journal is not None:
            try:
                await self._journal.append(key_id, counts)
                return
            except Exception:
                log.warning("usage journal unavailable: keeping usage in memory", exc_info=True)
        self._pending[key_id].add(counts)

    async def flush(self) -> None:
        async with self._lock:
            pending, self._pending = self._pending, defaultdict(Counts)
            if pending and not await self._write(pending):
                for key_id, counts in pending.items():  # kept for the next flush
                    self._pending[key_id].add(counts)
            if self._journal is not None:
                with contextlib.suppress(Exception):
                    await self._flush_journal(self._journal)

    async def _flush_journal(self, journal: Journal) -> None:
        for _ in range(2):  # what an earlier flush or process left, then the live counts
            taken = await journal.take()
            if taken and not await self._write(taken):
                return  # still in the journal: the next flush writes it again
            await journal.written()

    async def _write(self, counts: dict[str, Counts]) -> bool:
        deltas = [
            UsageDelta(key_id, c.requests, c.images, c.masks, c.gpu_ms)
            for key_id, c in counts.items()
        ]
        try:
            await self._store.arecord_usage(deltas)
        except Exception:
            log.warning("writing usage failed; keeping it for the next flush", exc_info=True)
            return False
        return True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        if self._journal is not None:
            with contextlib.suppress(Exception):
                await self._journal.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.flush()


def journal_for(
    usage_journal: Path | None, rate_limit_storage: str, redis_guard: DependencyGuard
) -> Journal | None:
    """The journal the settings ask for: a file, else the rate limiter's Redis (behind the
    same guard: one Redis), else none."""
    if usage_journal is not None:
        return FileJournal(usage_journal)
    redis_url = shared_redis_url(rate_limit_storage)
    return RedisJournal(redis_url, guard=redis_guard) if redis_url else None
