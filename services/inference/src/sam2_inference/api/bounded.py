"""Model work run off the event loop, bounded: a tenant's queue, the request's deadline, and a
stop when its client goes away (the gateway's connection closing, or its /internal/cancel)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from fastapi import Request
from sam2_contract.errors import ErrorCode, RateLimitError, Sam2ServiceError
from sam2_contract.problems import unless_abandoned
from sam2_contract.wire import DEADLINE_HEADER, MODEL_MS_HEADER
from starlette.concurrency import run_in_threadpool

from sam2_inference.scheduling.lock import Work

log = logging.getLogger(__name__)
T = TypeVar("T")


async def run_bounded(request: Request, namespace: str, call: Callable[..., T]) -> T:
    """Run model work in a worker thread under the request's deadline (X-Sam2-Deadline-Ms),
    and stop it when the client goes away: nobody waits for its answer any more. A tenant
    with `max_queued_per_tenant` requests already here is told to come back (429)."""
    queued: Counter[str] = request.app.state.queued
    allowed = request.app.state.settings.max_queued_per_tenant
    if queued[namespace] >= allowed:
        raise RateLimitError(
            f"{allowed} requests of this tenant are already queued or running here",
            code=ErrorCode.TOO_MANY_CONCURRENT,
            retry_after=1,
        )
    deadline = request.headers.get(DEADLINE_HEADER, "")
    work = Work.within(int(deadline) / 1000 if deadline.isdigit() else None)
    running: dict[tuple[str, str], Work] = request.app.state.running
    key = (namespace, str(getattr(request.state, "request_id", "")))
    queued[namespace] += 1
    running[key] = work

    async def stop() -> None:
        work.cancelled.set()
        log.info("client went away: stopping %s", key[1])

    try:
        return await unless_abandoned(request, run_in_threadpool(call, work=work), stop)
    except Sam2ServiceError as exc:
        if work.model_ms:  # stopped or failed after using the model: the gateway meters it
            exc.headers[MODEL_MS_HEADER] = f"{work.model_ms:.1f}"
        raise
    finally:
        if running.get(key) is work:
            del running[key]
        queued[namespace] -= 1
        if not queued[namespace]:
            del queued[namespace]
