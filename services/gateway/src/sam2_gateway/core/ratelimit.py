"""Per-key limits: requests per window (the `limits` library) and requests in flight, both
kept in memory for one gateway process or in Redis, shared by every gateway replica.

In Redis a request in flight is a lease (`SharedSlots`): it lapses unless its gateway renews
it, so a replica that dies mid-request frees its slots within `SharedSlots.LEASE_S` instead of
holding them for ever. When Redis is unreachable the limiter fails closed: requests get
`503 dependency_unavailable` with Retry-After rather than running unlimited, so an outage of
Redis never lets one tenant take the GPUs from the others (docs/security.md). Every Redis call
is bounded in time and cut off while Redis stays slow (core/guard.py): a stalled Redis costs a
request at most `timeout_s`, and then nothing while the guard is open."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from sam2_contract.errors import ErrorCode, RateLimitError

from sam2_gateway.core.guard import DependencyGuard

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


def shared_redis_url(storage_uri: str) -> str | None:
    """The Redis URL of a rate-limit storage that is one (`async+redis://...`), else None."""
    scheme, _, rest = storage_uri.partition("://")
    scheme = scheme.removeprefix("async+")
    return f"{scheme}://{rest}" if scheme in ("redis", "rediss") else None


class Slots(Protocol):
    """Requests in flight per key."""

    def hold(self, key_id: str, allowed: int) -> AbstractAsyncContextManager[bool]:
        """Hold one of `allowed` slots for the body of the block; yields False, holding
        nothing, when all are taken."""
        ...

    async def aclose(self) -> None: ...


class LocalSlots:
    """Requests in flight counted in this process (one gateway)."""

    def __init__(self) -> None:
        self._in_flight: defaultdict[str, int] = defaultdict(int)

    @asynccontextmanager
    async def hold(self, key_id: str, allowed: int) -> AsyncIterator[bool]:
        if self._in_flight[key_id] >= allowed:
            yield False
            return
        self._in_flight[key_id] += 1
        try:
            yield True
        finally:
            self._in_flight[key_id] -= 1

    async def aclose(self) -> None:
        return None


class SharedSlots:
    """Requests in flight counted in Redis for every gateway replica: per key a sorted set
    `<prefix>:<key_id>` of leases (member: a random id; score: when it lapses, on Redis's
    clock, so replicas' clocks need not agree). A request renews its lease every third of
    `lease_s` while it runs (a propagation stream may run for minutes); a lapsed lease no
    longer counts."""

    LEASE_S = 30.0
    _TAKE = """
        local now = redis.call('TIME')
        local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
        if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
        redis.call('ZADD', KEYS[1], t + tonumber(ARGV[2]), ARGV[3])
        redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000))
        return 1
    """
    _RENEW = """
        local now = redis.call('TIME')
        local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
        local lapsed = redis.call('ZADD', KEYS[1], t + tonumber(ARGV[1]), ARGV[2])
        redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) * 1000))
        return lapsed
    """

    def __init__(
        self,
        url: str,
        *,
        guard: DependencyGuard | None = None,
        prefix: str = "sam2:in-flight",
        lease_s: float = LEASE_S,
    ) -> None:
        self._guard = guard or redis_guard()
        self._redis: Any = redis_client(url, self._guard.timeout_s)
        self._prefix = prefix
        self._lease_s = lease_s
        self._take = self._redis.register_script(self._TAKE)
        self._renew = self._redis.register_script(self._RENEW)

    @asynccontextmanager
    async def hold(self, key_id: str, allowed: int) -> AsyncIterator[bool]:
        key, lease = f"{self._prefix}:{key_id}", uuid.uuid4().hex
        taken = await self._guard.call(
            lambda: self._take(keys=[key], args=[allowed, self._lease_s, lease])
        )
        if not taken:
            yield False
            return
        renewing = asyncio.create_task(self._keep(key, lease))
        try:
            yield True
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            try:  # bounded: the answer waits for this
                await self._guard.call(lambda: self._redis.zrem(key, lease))
            except Exception:  # the lease lapses by itself
                log.warning("could not free a concurrency slot in Redis (it lapses)")

    async def _keep(self, key: str, lease: str) -> None:
        """Renew the lease until cancelled. A failed renewal is retried, not fatal: the
        request it counts is running and keeps running; a lease that lapsed meanwhile (Redis
        away for longer than a lease) is added back, since its request still runs."""
        while True:
            await asyncio.sleep(self._lease_s / 3)
            try:
                if await self._renew(keys=[key], args=[self._lease_s, lease]):
                    log.warning("a concurrency lease had lapsed: counted again")
            except Exception:
                log.warning("could not renew a concurrency lease in Redis", exc_info=True)

    async def aclose(self) -> None:
        await self._redis.aclose()


def redis_guard(timeout_s: float = 0.25, retry_s: float = 2.0) -> DependencyGuard:
    """The guard of the Redis that the limits (and the usage journal) live in."""
    return DependencyGuard("rate limiter", timeout_s=timeout_s, open_s=retry_s)


def redis_client(url: str, timeout_s: float) -> Any:
    """redis-py's asyncio client whose every call ends within a few `timeout_s` (the guard's
    bound comes first; this one ends the call the guard stopped waiting for)."""
    import redis.asyncio

    return redis.asyncio.from_url(url, **socket_timeouts(timeout_s))


def socket_timeouts(timeout_s: float) -> dict[str, float]:
    return {"socket_timeout": 4 * timeout_s, "socket_connect_timeout": 4 * timeout_s}


class RateLimiter:
    def __init__(
        self,
        storage_uri: str,
        tiers: dict[str, str],
        concurrency: dict[str, int],
        *,
        timeout_s: float = 0.25,
        retry_s: float = 2.0,
    ) -> None:
        self.guard = redis_guard(timeout_s, retry_s)
        redis_url = shared_redis_url(storage_uri)
        # redis-py's asyncio client rather than coredis: one Redis library for the whole project.
        options: dict[str, Any] = (
            {"implementation": "redispy"} | socket_timeouts(timeout_s) if redis_url else {}
        )
        self._storage = storage_from_string(storage_uri, **options)
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._tiers: dict[str, RateLimitItem] = {name: parse(rate) for name, rate in tiers.items()}
        self._concurrency = concurrency
        self._slots: Slots = SharedSlots(redis_url, guard=self.guard) if redis_url else LocalSlots()

    async def hit(self, key_id: str, tier: str) -> RateState:
        """Count one request; raises RateLimitError (429, Retry-After) when over the limit."""
        item = self._item(tier)
        allowed, stats = await self.guard.call(lambda: self._count(item, key_id))
        reset_s = max(1, math.ceil(stats.reset_time - time.time()))
        state = RateState(limit=item.amount, remaining=stats.remaining, reset_s=reset_s)
        if not allowed:
            raise RateLimitError(
                f"over {item.amount} requests per {item.get_expiry()} s for this key",
                retry_after=reset_s,
                headers=state.headers(),
            )
        return state

    def limits(self, tier: str) -> tuple[RateLimitItem, int]:
        """The tier's rate and how many of its requests may run at once."""
        return self._item(tier), self._allowed(tier)

    @asynccontextmanager
    async def slot(self, key_id: str, tier: str) -> AsyncIterator[None]:
        """Hold one of the key's concurrent-request slots for the body of the block."""
        allowed = self._allowed(tier)
        async with self._slots.hold(key_id, allowed) as held:
            if not held:
                raise RateLimitError(
                    f"{allowed} requests of this key are already running",
                    code=ErrorCode.TOO_MANY_CONCURRENT,
                    retry_after=1,
                )
            yield

    async def _count(self, item: RateLimitItem, key_id: str) -> tuple[bool, Any]:
        allowed = await self._limiter.hit(item, key_id)
        return allowed, await self._limiter.get_window_stats(item, key_id)

    async def check(self, *, timeout_s: float) -> None:
        """Raise `dependency_down` unless the count's storage answers within `timeout_s`
        (always, in memory)."""

        async def ping() -> None:
            answered = self._storage.check()  # the async storages' check() is a coroutine
            if not (await answered if inspect.isawaitable(answered) else answered):
                raise ConnectionError("the rate-limit storage did not answer its check")

        await self.guard.call(ping, timeout_s=timeout_s)

    async def aclose(self) -> None:
        """Close the Redis connections, if any (limits has no public close)."""
        await self._slots.aclose()
        client = getattr(getattr(self._storage, "bridge", None), "storage", None)
        if client is not None and hasattr(client, "aclose"):
            await client.aclose()

    def _allowed(self, tier: str) -> int:
        # An unknown tier gets the smallest configured concurrency.
        return self._concurrency.get(tier, min(self._concurrency.values(), default=1))

    def _item(self, tier: str) -> RateLimitItem:
        # An unknown tier gets the strictest configured rate, never an unlimited one.
        if tier in self._tiers:
            return self._tiers[tier]
        return min(self._tiers.values(), key=lambda i: i.amount / i.get_expiry())
