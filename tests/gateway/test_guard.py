"""The dependency guard's circuit breaker, on a clock we move (the named boundary): a stall
costs one timeout per interval, not one per request, and the dependency is tried again."""

from __future__ import annotations

import asyncio

import pytest
from sam2_contract.errors import ErrorCode, ServiceUnavailableError
from sam2_gateway.core.guard import DependencyGuard


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_stall_costs_one_timeout_then_calls_fail_at_once_until_a_trial_succeeds() -> None:
    clock = Clock()
    guard = DependencyGuard("rate limiter", timeout_s=0.05, open_s=2.0, clock=clock)
    release = asyncio.Event()
    sent: list[str] = []

    async def stalled() -> str:
        sent.append("stalled")
        await release.wait()
        return "late"

    async def healthy() -> str:
        sent.append("healthy")
        return "ok"

    with pytest.raises(ServiceUnavailableError) as first:
        await guard.call(stalled)
    assert first.value.code is ErrorCode.DEPENDENCY_UNAVAILABLE
    assert "rate limiter is not answering (slow)" in first.value.detail
    assert first.value.retry_after == 5

    for _ in range(5):  # held back: nothing reaches the dependency
        with pytest.raises(ServiceUnavailableError, match="held back"):
            await guard.call(healthy)
    clock.now += 2.5
    with pytest.raises(ServiceUnavailableError, match="held back"):
        await guard.call(healthy)  # the stalled call has not returned: no trial yet
    assert sent == ["stalled"]

    release.set()
    await asyncio.sleep(0)  # the stalled call returns late
    await asyncio.sleep(0)
    assert await guard.call(healthy) == "ok"  # the trial closes the guard
    assert await guard.call(healthy) == "ok"
    assert sent == ["stalled", "healthy", "healthy"]
    assert not guard.is_open


async def test_a_failed_trial_opens_the_guard_again_and_bugs_propagate() -> None:
    clock = Clock()
    guard = DependencyGuard("key store", timeout_s=1.0, failures=(ConnectionError,), clock=clock)

    async def refused() -> None:
        raise ConnectionError("refused")

    async def bug() -> None:
        raise KeyError("not a dependency failure")

    with pytest.raises(ServiceUnavailableError, match="the key store is unavailable"):
        await guard.call(refused)
    clock.now += 2.1
    with pytest.raises(ServiceUnavailableError, match="is unavailable"):
        await guard.call(refused)  # the trial fails
    with pytest.raises(ServiceUnavailableError, match="held back"):
        await guard.call(refused)
    clock.now += 2.1
    with pytest.raises(KeyError):
        await guard.call(bug)
    assert guard.tripped == 2
