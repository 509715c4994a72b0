"""Usage metering off the request path: counts add up in memory and are written in one
transaction per flush (every second, and at shutdown), so a click never waits on a database
commit. Counts survive a failed flush: they are kept and written with the next one.

With a journal (`usage_journal`, the local stack's default) each request's counts are also
appended to a file, one `write` before its answer leaves, so a gateway that crashes (SIGKILL,
out of memory) loses none: the next gateway on that journal writes what is left in it first.
The file is per gateway process (one writer); a flush renames it aside, writes its sum to the
store, then deletes it (a crash between those two steps, a window of microseconds, would count
that flush twice). Without a journal a crash loses at most the last second of counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from sam2_gateway.store import KeyStore, UsageDelta

log = logging.getLogger(__name__)


@dataclass
class _Counts:
    requests: int = 0
    images: int = 0
    masks: int = 0
    gpu_ms: float = 0.0

    def add(self, requests: int, images: int, masks: int, gpu_ms: float) -> None:
        self.requests += requests
        self.images += images
        self.masks += masks
        self.gpu_ms += gpu_ms


class UsageJournal:
    """Counts appended to a file as they happen, taken from it a flush at a time."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._taken = path.with_name(path.name + ".flushing")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._open()

    def append(self, key_id: str, requests: int, images: int, masks: int, gpu_ms: float) -> None:
        os.write(self._fd, f"{key_id}\t{requests}\t{images}\t{masks}\t{gpu_ms!r}\n".encode())

    def take(self) -> dict[str, _Counts]:
        """What the journal holds (and what an earlier flush or process left unwritten); it
        stays on disk until `written()`."""
        if not self._taken.exists():
            os.close(self._fd)
            self._path.rename(self._taken)
            self._fd = self._open()
        totals: defaultdict[str, _Counts] = defaultdict(_Counts)
        for line in self._taken.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) != 5:  # a line cut short by a crash mid-write
                log.warning("skipping a torn usage-journal line")
                continue
            key_id, requests, images, masks, gpu_ms = fields
            totals[key_id].add(int(requests), int(images), int(masks), float(gpu_ms))
        return totals

    def written(self) -> None:
        """The taken counts are in the store."""
        self._taken.unlink(missing_ok=True)

    def close(self) -> None:
        os.close(self._fd)

    def _open(self) -> int:
        fd = os.open(self._path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.write(fd, b"\n")  # end a line a crash tore, so that the next one stands alone
        return fd


class UsageMeter:
    def __init__(
        self, store: KeyStore, *, interval_s: float = 1.0, journal: UsageJournal | None = None
    ) -> None:
        self._store = store
        self._interval_s = interval_s
        self._journal = journal
        self._pending: defaultdict[str, _Counts] = defaultdict(_Counts)
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def add(
        self, key_id: str, *, images: int, masks: int, gpu_ms: float, requests: int = 1
    ) -> None:
        if self._journal is not None:
            self._journal.append(key_id, requests, images, masks, gpu_ms)
        else:
            self._pending[key_id].add(requests, images, masks, gpu_ms)

    async def flush(self) -> None:
        async with self._lock:
            if self._journal is not None:
                await self._flush_journal(self._journal)
            else:
                await self._flush_memory()

    async def _flush_memory(self) -> None:
        pending, self._pending = self._pending, defaultdict(_Counts)
        if pending and not await self._write(pending):
            for key_id, c in pending.items():  # kept for the next flush
                self._pending[key_id].add(c.requests, c.images, c.masks, c.gpu_ms)

    async def _flush_journal(self, journal: UsageJournal) -> None:
        for _ in range(2):  # what an earlier flush or process left, then the live file
            taken = await run_in_threadpool(journal.take)
            if taken and not await self._write(taken):
                return  # the taken file stays, and the next flush writes it again
            journal.written()

    async def _write(self, counts: dict[str, _Counts]) -> bool:
        deltas = [
            UsageDelta(key_id, c.requests, c.images, c.masks, c.gpu_ms)
            for key_id, c in counts.items()
        ]
        try:
            await run_in_threadpool(self._store.record_usage, deltas)
        except Exception:
            log.exception("writing usage failed; keeping it for the next flush")
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
            self._journal.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.flush()
