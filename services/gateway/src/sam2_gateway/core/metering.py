"""Usage metering off the request path: counts add up in memory and are written in one
transaction per flush (every second, and at shutdown), so a click never waits on a database
commit. Counts survive a failed flush: they are kept and written with the next one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from sam2_gateway.store import KeyStore, UsageDelta

log = logging.getLogger(__name__)


@dataclass
class _Counts:
    requests: int = 0
    images: int = 0
    masks: int = 0
    gpu_ms: float = 0.0


class UsageMeter:
    def __init__(self, store: KeyStore, *, interval_s: float = 1.0) -> None:
        self._store = store
        self._interval_s = interval_s
        self._pending: defaultdict[str, _Counts] = defaultdict(_Counts)
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def add(
        self, key_id: str, *, images: int, masks: int, gpu_ms: float, requests: int = 1
    ) -> None:
        counts = self._pending[key_id]
        counts.requests += requests
        counts.images += images
        counts.masks += masks
        counts.gpu_ms += gpu_ms

    async def flush(self) -> None:
        async with self._lock:
            pending, self._pending = self._pending, defaultdict(_Counts)
            if not pending:
                return
            deltas = [
                UsageDelta(key_id, c.requests, c.images, c.masks, c.gpu_ms)
                for key_id, c in pending.items()
            ]
            try:
                await run_in_threadpool(self._store.record_usage, deltas)
            except Exception:
                log.exception("writing usage failed; keeping it for the next flush")
                for d in deltas:
                    self.add(
                        d.key_id,
                        requests=d.requests,
                        images=d.images,
                        masks=d.masks,
                        gpu_ms=d.gpu_ms,
                    )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.flush()
