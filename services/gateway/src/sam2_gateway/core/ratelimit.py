"""Per-key limits: requests per window (the `limits` library: memory, or Redis to share the
count across gateway replicas) and requests in flight (counted per gateway process).

When the shared count's storage (Redis) is unreachable the limiter fails closed: requests get
`503 dependency_unavailable` with Retry-After rather than running unlimited, so an outage of
Redis never lets one tenant take the GPUs from the others (docs/security.md)."""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from sam2_contract.errors import ErrorCode, RateLimitError

from sam2_gateway.backends import dependency_down

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RateState:
    """What the RateLimit-* response headers say."""

    limit: int
    remaining: int
    reset_s: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }


class RateLimiter:
    def __init__(
        self, storage_uri: str, tiers: dict[str, str], concurrency: dict[str, int]
    ) -> None:
        # redis-py's asyncio client rather than coredis: one Redis library for the whole project.
        options = {"implementation": "redispy"} if "redis" in storage_uri.split("://")[0] else {}
        self._storage = storage_from_string(storage_uri, **options)
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._tiers: dict[str, RateLimitItem] = {name: parse(rate) for name, rate in tiers.items()}
        self._concurrency = concurrency
        self._in_flight: defaultdict[str, int] = defaultdict(int)

    async def hit(self, key_id: str, tier: str) -> RateState:
        """Count one request; raises RateLimitError (429, Retry-After) when over the limit."""
        item = self._item(tier)
        try:
            allowed = await self._limiter.hit(item, key_id)
            stats = await self._limiter.get_window_stats(item, key_id)
        except Exception:
            log.warning("rate-limit storage unreachable: failing closed", exc_info=True)
            raise dependency_down("rate limiter") from None
        reset_s = max(1, math.ceil(stats.reset_time - time.time()))
        state = RateState(limit=item.amount, remaining=stats.remaining, reset_s=reset_s)
        if not allowed:
            raise RateLimitError(
                f"over {item.amount} requests per {item.get_expiry()} s for this key",
                retry_after=reset_s,
                headers=state.headers(),
            )
        return state

    @asynccontextmanager
    async def slot(self, key_id: str, tier: str) -> AsyncIterator[None]:
        """Hold one of the key's concurrent-request slots for the body of the block."""
        allowed = self._concurrency.get(tier, min(self._concurrency.values(), default=1))
        if self._in_flight[key_id] >= allowed:
            raise RateLimitError(
                f"{allowed} requests of this key are already running",
                code=ErrorCode.TOO_MANY_CONCURRENT,
                retry_after=1,
            )
        self._in_flight[key_id] += 1
        try:
            yield
        finally:
            self._in_flight[key_id] -= 1

    async def reachable(self) -> bool:
        """Whether the count's storage answers (always, in memory)."""
        try:
            answered = self._storage.check()  # the async storages' check() is a coroutine
            return bool(await answered if inspect.isawaitable(answered) else answered)
        except Exception:
            return False

    async def aclose(self) -> None:
        """Close the Redis connections, if any (limits has no public close)."""
        client = getattr(getattr(self._storage, "bridge", None), "storage", None)
        if client is not None and hasattr(client, "aclose"):
            await client.aclose()

    def _item(self, tier: str) -> RateLimitItem:
        # An unknown tier gets the strictest configured rate, never an unlimited one.
        if tier in self._tiers:
            return self._tiers[tier]
        return min(self._tiers.values(), key=lambda i: i.amount / i.get_expiry())
