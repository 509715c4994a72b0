"""Every call to a dependency of the gateway (Redis, PostgreSQL) bounded in time, and cut off
while the dependency stays slow.

A dead dependency refuses connections at once; a stalled one (a failover, a full disk, a
network partition, a frozen process) accepts them and never answers, which without a bound
ties a request up until the client gives up, and with one costs every request that bound.
`DependencyGuard.call` gives each call `timeout_s`; the first call that fails or runs out of
time opens the guard (a circuit breaker), and for `open_s` every call fails at once with
`503 dependency_unavailable` and `Retry-After`, without touching the dependency. After that one
call is let through as a trial: its success closes the guard, its failure opens it again. A
call that ran out of time may still be running in a worker thread (a database driver blocked
on a socket cannot be interrupted): no trial starts until every such call has returned, so a
long stall holds a few threads, not one more per interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sam2_contract.errors import ErrorCode, ServiceUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")
DEPENDENCY_RETRY_AFTER_S = 5


def dependency_down(name: str, detail: str = "is unavailable") -> ServiceUnavailableError:
    """A dependency of the gateway itself (the key store, the rate limiter) did not answer."""
    return ServiceUnavailableError(
        f"the {name} {detail}",
        code=ErrorCode.DEPENDENCY_UNAVAILABLE,
        retry_after=DEPENDENCY_RETRY_AFTER_S,
    )


class DependencyGuard:
    """Time bound and circuit breaker for one dependency's calls."""

    def __init__(
        self,
        name: str,
        *,
        timeout_s: float,
        open_s: float = 2.0,
        failures: tuple[type[BaseException], ...] = (Exception,),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self._failures = failures
        self.open_s = open_s
        self._clock = clock
        self._open_until: float | None = None  # None: closed
        self._trial = False
        self._stuck = 0  # calls that ran out of time and are still running
        self.tripped = 0

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    async def call(self, start: Callable[[], Awaitable[T]], *, timeout_s: float | None = None) -> T:
        """`await start()` within the time bound; `dependency_down` when the guard is open,
        or when the call fails or runs out of time (which opens it)."""
        trial = self._admit()
        task = asyncio.ensure_future(start())
        try:
            result = await asyncio.wait_for(asyncio.shield(task), timeout_s or self.timeout_s)
        except TimeoutError:
            self._stuck += 1
            task.add_done_callback(self._returned)
            self._trip(f"did not answer within {timeout_s or self.timeout_s:g} s")
            raise dependency_down(self.name, "is not answering (slow)") from None
        except self._failures as failure:  # the dependency's own errors; a bug propagates
            self._trip(type(failure).__name__)
            raise dependency_down(self.name) from None
        finally:
            if trial:
                self._trial = False
        if self._open_until is not None:
            log.warning("the %s answers again", self.name)
        self._open_until = None
        return result

    def _admit(self) -> bool:
        """Whether the call may go out, and whether it is the trial of an open guard."""
        if self._open_until is None:
            return False
        if self._clock() < self._open_until or self._trial or self._stuck:
            raise dependency_down(self.name, "is not answering (calls are held back)")
        self._trial = True
        return True

    def _trip(self, why: str) -> None:
        self.tripped += 1
        if self._open_until is None:
            log.warning("the %s %s: calls held back for %g s", self.name, why, self.open_s)
        self._open_until = self._clock() + self.open_s

    def _returned(self, task: asyncio.Future[Any]) -> None:
        self._stuck -= 1
        if not task.cancelled():
            task.exception()  # retrieved: a late failure is not "never retrieved"
