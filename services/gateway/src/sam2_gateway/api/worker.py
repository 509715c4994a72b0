"""The gateway's embedded job worker (issue 30): it claims items of batch jobs from the SQL
store (core/jobs.py) and answers each as one /v1/segment call over the same hop as clicks,
with the item's key as the tenant and the image's routing key, so an item lands where its
embedding is. While an item runs its lease is renewed; when the renewal fails (the job was
cancelled, or the lease lapsed and another worker took the item) the call is cancelled and
inference is asked to stop its work. Items run `job_workers` at a time per process. The same
loop sends the webhooks of jobs that ended (Standard Webhooks signatures, retried with
backoff), to public addresses only, as image URLs are fetched."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sam2_contract.errors import ErrorCode, InvalidRequestError, Sam2ServiceError
from sam2_contract.images import image_id_for_file
from sam2_contract.validation import parse_segment_request
from sam2_contract.webhooks import sign
from starlette.concurrency import run_in_threadpool

from sam2_gateway.api.deps import Gateway
from sam2_gateway.api.routes.segment import _answer_fits, _source, segment_hop, send_segment
from sam2_gateway.core.jobs import Claim, Delivery, JobStore
from sam2_gateway.hop import Hop

log = logging.getLogger(__name__)
IDLE_S = 0.5
"""How long a worker with nothing to do waits before it looks for items again."""
WEBHOOK_HOLD_S = 60.0
"""How long a webhook being sent is held from other workers (longer than its timeout)."""
WEBHOOKS_AT_ONCE = 8
EXPIRE_EVERY_S = 300.0
"""How often a worker deletes the finished jobs past their tier's retention."""
TRANSIENT = frozenset(
    {
        ErrorCode.NOT_READY,
        ErrorCode.INFERENCE_UNAVAILABLE,
        ErrorCode.INFERENCE_STARTING,
        ErrorCode.GATEWAY_BUSY,
        ErrorCode.DEPENDENCY_UNAVAILABLE,
        ErrorCode.TOO_MANY_CONCURRENT,
        ErrorCode.RATE_LIMITED,
    }
)
"""Problems that say "not now" rather than "not this item": the item is sent again (a cold
start, a full GPU fleet), under its lease, instead of failing."""
TRANSIENT_TRIES = 6
TRANSIENT_WAIT_S = 30.0
"""The longest wait between two tries (the first waits 1 s, or what Retry-After says)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class JobWorker:
    """Runs job items, `concurrency` at a time, until stopped."""

    def __init__(
        self,
        gateway: Gateway,
        jobs: JobStore,
        *,
        concurrency: int,
        lease_s: float,
        retry_s: float = 5.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._gateway = gateway
        self._jobs = jobs
        self._concurrency = concurrency
        self._lease_s = lease_s
        self._clock = clock
        self._retry_s = retry_s
        self._running: set[asyncio.Task[None]] = set()
        self._sending: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        if self._concurrency > 0 and self._loop is None:
            self._loop = asyncio.create_task(self._run(), name="job worker")

    def wake(self) -> None:
        """A job was created: look for items now rather than after the idle wait."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop taking items and stop the running ones; their leases lapse and another
        process (or this one, restarted) takes them again."""
        tasks = [t for t in (self._loop, *self._running, *self._sending) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loop = None

    async def _run(self) -> None:
        swept = -EXPIRE_EVERY_S
        while True:
            if asyncio.get_running_loop().time() - swept >= EXPIRE_EVERY_S:
                swept = asyncio.get_running_loop().time()
                await self._expire()
            await self._deliver_due()
            free = self._concurrency - len(self._running)
            claims: list[Claim] = []
            if free > 0:
                try:
                    claims = await run_in_threadpool(
                        partial(
                            self._jobs.claim,
                            now=self._clock(),
                            lease_s=self._lease_s,
                            limit=free,
                            running_limits=self._gateway.settings.job_running_limits(),
                        )
                    )
                except Exception:  # the database is down: try again after the idle wait
                    log.warning("job worker: claiming items failed", exc_info=True)
            for claim in claims:
                task = asyncio.create_task(self._item(claim), name=f"job item {claim.job_id}")
                self._running.add(task)
                task.add_done_callback(self._done)
            if not claims or free <= len(claims):
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_S)

    async def _expire(self) -> None:
        """Delete the finished jobs past their tier's retention (a failure waits a round)."""
        try:
            gone = await run_in_threadpool(
                partial(
                    self._jobs.expire,
                    now=self._clock(),
                    retention_days=self._gateway.settings.job_retention_days(),
                )
            )
        except Exception:
            log.warning("job worker: deleting expired jobs failed", exc_info=True)
            return
        if gone:
            log.info("deleted %d jobs past their retention", len(gone))

    async def _deliver_due(self) -> None:
        """Start sending the webhooks that are due (each held while it is sent)."""
        try:
            due = await run_in_threadpool(
                self._jobs.due_webhooks,
                now=self._clock(),
                hold_s=WEBHOOK_HOLD_S,
                limit=WEBHOOKS_AT_ONCE,
            )
        except Exception:
            log.warning("job worker: reading due webhooks failed", exc_info=True)
            return
        for delivery in due:
            task = asyncio.create_task(self._deliver(delivery), name=f"webhook {delivery.job_id}")
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _deliver(self, delivery: Delivery) -> None:
        """POST the job's end, signed (Standard Webhooks), and record the outcome."""
        error: str | None = None
        try:
            status = await run_in_threadpool(self._jobs.status, delivery.job_id, delivery.key_id)
            if status is None:
                return
            now = self._clock()
            body = json.dumps(
                {
                    "type": f"job.{status.state}",
                    "timestamp": now.isoformat(),
                    "data": {"job_id": status.job_id, "state": status.state}
                    | {"counts": status.counts},
                },
                separators=(",", ":"),
            ).encode()
            keys = await run_in_threadpool(lambda: self._jobs.secrets(delivery.key_id, now=now))
            message_id = f"msg_{delivery.job_id}_{status.state}"  # the same for each attempt
            stamp = int(now.timestamp())
            headers = {
                "content-type": "application/json",
                "user-agent": "sam2-gateway (webhooks)",
                "webhook-id": message_id,
                "webhook-timestamp": str(stamp),
                "webhook-signature": " ".join(sign(k, message_id, stamp, body) for k in keys),
            }
            answered = await self._gateway.webhooks.post(delivery.url, body, headers)
            if not 200 <= answered < 300:
                error = f"the receiver answered HTTP {answered}"
        except Sam2ServiceError as exc:
            error = exc.detail.removeprefix("image_url: ")
        except Exception as exc:  # recorded, and sent again later
            log.warning("webhook of %s failed", delivery.job_id, exc_info=True)
            error = type(exc).__name__
        try:
            await run_in_threadpool(
                lambda: self._jobs.webhook_result(
                    delivery, now=self._clock(), error=error, retry_s=self._retry_s
                )
            )
        except Exception:  # the hold lapses and it is sent again
            log.warning("job worker: recording a webhook failed", exc_info=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()  # a slot is free

    async def _item(self, claim: Claim) -> None:
        """Run one item under its lease; record its answer or its problem."""
        hop_box: list[Hop] = []
        work = asyncio.create_task(self._answer_soon(claim, hop_box))
        renewing = asyncio.create_task(self._renew_until_lost(claim))
        done, _ = await asyncio.wait({work, renewing}, return_when=asyncio.FIRST_COMPLETED)
        if renewing in done:  # the lease is lost or the job cancelled: stop the work
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work
            if hop_box:
                with contextlib.suppress(Sam2ServiceError):
                    await self._gateway.backend.cancel(hop_box[0])
            return
        renewing.cancel()
        answer, error = work.result()
        try:
            await run_in_threadpool(
                self._jobs.finish, claim, now=self._clock(), answer=answer, error=error
            )
        except Exception:  # the lease lapses and the item runs again
            log.warning("job worker: recording item %s failed", claim.item_id, exc_info=True)

    async def _renew_until_lost(self, claim: Claim) -> None:
        while True:
            await asyncio.sleep(self._lease_s / 3)
            try:
                kept = await run_in_threadpool(
                    self._jobs.renew, claim, now=self._clock(), lease_s=self._lease_s
                )
            except Exception:  # the database is down: keep working, try again
                log.warning("job worker: renewing a lease failed", exc_info=True)
                continue
            if not kept:
                return

    async def _answer_soon(
        self, claim: Claim, hop_box: list[Hop]
    ) -> tuple[str | None, dict[str, Any] | None]:
        """The item's answer, sent again while inference answers a TRANSIENT problem (up to
        TRANSIENT_TRIES times, waiting 1, 2, 4 ... s or its Retry-After)."""
        for attempt in range(TRANSIENT_TRIES):
            hop_box.clear()
            answer, error = await self._answer(claim, hop_box, attempt)
            if error is None or error.get("code") not in TRANSIENT:
                break
            if attempt + 1 < TRANSIENT_TRIES:
                wait = error.pop("retry_after", None) or 2.0**attempt
                await asyncio.sleep(min(float(wait), TRANSIENT_WAIT_S))
        if error is not None:
            error.pop("retry_after", None)
        return answer, error

    async def _answer(
        self, claim: Claim, hop_box: list[Hop], retry: int = 0
    ) -> tuple[str | None, dict[str, Any] | None]:
        """The item's answer (the JSON inference gave, masks as RLE), or its problem."""
        gateway = self._gateway
        try:
            fields = {k: v for k, v in claim.template.items() if k != "mask_format"}
            file = None
            source = dict(claim.source)
            if "file" in source:  # uploaded with the job: kept by its hash until now
                file = await run_in_threadpool(gateway.job_files.get, source.pop("file"))
                if file is None:
                    raise InvalidRequestError(
                        "the item's uploaded file is gone from the gateway's job files",
                        code=ErrorCode.MISSING_IMAGE,
                    )
                source = {"image_id": image_id_for_file(file)}
            parsed = parse_segment_request(fields | source | {"mask_format": "rle"})
            upload = await _source(gateway, parsed, file)
            _answer_fits(gateway, parsed, upload)
            request_id = f"{claim.job_id}-{claim.position}-{claim.attempt}"
            if retry:
                request_id += f"-r{retry}"
            body, hop = segment_hop(gateway, claim.key_id, parsed, upload, request_id)
            hop_box.append(hop)
            result = await send_segment(gateway, body, upload, hop)
            return result.body.decode(), None
        except Sam2ServiceError as exc:
            problem = exc.to_problem(instance=f"#/items/{claim.position}")
            dumped = problem.model_dump(mode="json", exclude_none=True)
            if exc.code in TRANSIENT and exc.retry_after is not None:
                dumped["retry_after"] = exc.retry_after
            return None, dumped
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job item %s of %s failed", claim.position, claim.job_id)
            failure = Sam2ServiceError(
                "the item could not be answered", code=ErrorCode.INTERNAL_ERROR
            )
            problem = failure.to_problem(instance=f"#/items/{claim.position}")
            return None, problem.model_dump(mode="json", exclude_none=True)
