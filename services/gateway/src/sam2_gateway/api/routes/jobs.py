"""Batch jobs (scope `jobs`, issue 30): create one from a request template and its images,
read its state, stream its results in item order, cancel it, list this key's jobs. Items are
run by the workers (api/worker.py) from the SQL store (core/jobs.py); another key's job is
404 as an unknown one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sam2_contract.errors import (
    ErrorCode,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    Sam2ServiceError,
)
from sam2_contract.forms import MULTIPART, is_multipart, multipart_form
from sam2_contract.models import (
    IMAGE_ID_PREFIX,
    JobInfo,
    JobList,
    JobRequest,
    JobWebhook,
    WebhookSecretResponse,
)
from sam2_contract.problems import read_body
from sam2_contract.validation import parse_json, parse_model, parse_segment_request
from sam2_contract.video import NDJSON
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.datastructures import UploadFile

from sam2_gateway.api.deps import GatewayDep, Principal, PrincipalDep
from sam2_gateway.api.openapi import NdjsonStream, request_body
from sam2_gateway.api.routes.segment import _limited
from sam2_gateway.core.coco import coco_file
from sam2_gateway.core.job_files import unpack
from sam2_gateway.core.jobs import IdempotencyConflictError, JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
MAX_IDEMPOTENCY_KEY = 255


@router.post(
    "",
    response_model=JobInfo,
    status_code=201,
    openapi_extra=request_body(JobRequest),
    responses={200: {"description": "The job this Idempotency-Key made before"}},
)
async def create_job(request: Request, principal: PrincipalDep, gateway: GatewayDep) -> Response:
    """A job: every item (an image URL or an uploaded image's `image_id`) answered with the
    template, as one /v1/segment call each. With an `Idempotency-Key` header, a retried create
    answers the job the first one made (200) instead of a second job."""
    principal.require("jobs")
    async with _limited(gateway, principal):
        job, uploads = await _read_job(request, gateway)
        _check_template(job.request, principal)
        if job.webhook_url is not None:
            _check_webhook(gateway, job.webhook_url)
        sources = [item.model_dump(exclude_none=True) for item in job.items]
        sources += [
            {"file": await run_in_threadpool(gateway.job_files.put, data), "name": name}
            for name, data in uploads
        ]
        if not sources:
            raise InvalidRequestError(
                "the job has no items: send `items`, `image` files or an `archive`",
                code=ErrorCode.EMPTY_JOB,
            )
        idempotency = request.headers.get("idempotency-key")
        if idempotency is not None and not 0 < len(idempotency) <= MAX_IDEMPOTENCY_KEY:
            raise InvalidRequestError(
                f"`Idempotency-Key` is 1 to {MAX_IDEMPOTENCY_KEY} characters",
                code=ErrorCode.INVALID_PARAMETER,
            )
        known = None
        if idempotency is not None:
            known = await run_in_threadpool(
                gateway.jobs.by_idempotency_key, principal.key_id, idempotency
            )
        if known is None:  # a retried create is never refused for its own job's items
            await run_in_threadpool(_check_limits, gateway, principal, len(sources))
        try:
            status, made = await run_in_threadpool(
                lambda: gateway.jobs.create(
                    principal.key_id,
                    job.request,
                    sources,
                    now=datetime.now(UTC),
                    idempotency_key=idempotency,
                    webhook_url=job.webhook_url,
                )
            )
        except IdempotencyConflictError:
            raise InvalidRequestError(
                "this Idempotency-Key made another job, from another request",
                code=ErrorCode.IDEMPOTENCY_KEY_REUSED,
            ) from None
    worker = getattr(request.app.state, "job_worker", None)
    if worker is not None:
        worker.wake()
    for hook in getattr(request.app.state, "on_job_created", ()):
        await run_in_threadpool(hook)  # Modal: commit the job-files Volume, start a worker
    return _info_response(gateway, status, 201 if made else 200)


@router.get("", response_model=JobList)
async def list_jobs(principal: PrincipalDep, gateway: GatewayDep) -> JobList:
    """This key's jobs, newest first (the latest 50)."""
    principal.require("jobs")
    statuses = await run_in_threadpool(gateway.jobs.jobs, principal.key_id)
    return JobList(jobs=[_info(gateway, s) for s in statuses])


@router.get("/{job_id}", response_model=JobInfo)
async def get_job(job_id: str, principal: PrincipalDep, gateway: GatewayDep) -> JobInfo:
    """A job's state, its items' counts, timings and an estimate of the time left."""
    return _info(gateway, await _status(job_id, principal, gateway))


@router.delete("/{job_id}", response_model=JobInfo)
async def cancel_job(job_id: str, principal: PrincipalDep, gateway: GatewayDep) -> JobInfo:
    """Cancel a job: queued items never start, running ones are stopped (their answers are
    dropped); finished items keep their results."""
    principal.require("jobs")
    status = await run_in_threadpool(
        lambda: gateway.jobs.cancel(job_id, principal.key_id, now=datetime.now(UTC))
    )
    if status is None:
        raise _not_found(job_id)
    return _info(gateway, status)


@router.get("/{job_id}/results", response_class=NdjsonStream)
async def job_results(
    job_id: str, principal: PrincipalDep, gateway: GatewayDep, format: str = "ndjson"
) -> StreamingResponse:
    """One NDJSON line per item, in item order: `{"index", "status": 200, "result"}` with the
    answer (masks as RLE), `{"index", "status", "error"}` with its problem, or `{"index",
    "status": null, "state"}` for an item not finished yet (queued, running or cancelled).
    `?format=coco`: one COCO JSON file of the done items' masks instead."""
    if format not in ("ndjson", "coco"):
        raise InvalidRequestError(
            f"`format` is {format[:32]!r}; it is ndjson or coco", code=ErrorCode.INVALID_PARAMETER
        )
    await _status(job_id, principal, gateway)
    if format == "coco":
        read = partial(gateway.jobs.items, job_id, principal.key_id)
        coco = iterate_in_threadpool(coco_file(read, job_id))
        disposition = {"content-disposition": f'attachment; filename="{job_id}.coco.json"'}
        return StreamingResponse(coco, media_type="application/json", headers=disposition)

    async def lines() -> AsyncIterator[bytes]:
        items = gateway.jobs.items(job_id, principal.key_id)
        async for item in iterate_in_threadpool(iter(items)):
            if item.state == "done" and item.answer is not None:
                yield b'{"index":%d,"status":200,"result":%s}\n' % (
                    item.position,
                    item.answer.encode(),
                )
            elif item.state == "failed" and item.error is not None:
                status = int(item.error.get("status", 500))
                line = {"index": item.position, "status": status, "error": item.error}
                yield json.dumps(line).encode() + b"\n"
            else:
                line = {"index": item.position, "status": None, "state": item.state}
                yield json.dumps(line).encode() + b"\n"

    return StreamingResponse(lines(), media_type=NDJSON)


async def _read_job(
    request: Request, gateway: GatewayDep
) -> tuple[JobRequest, list[tuple[str, bytes]]]:
    """The job's JSON, and the files uploaded with it: a `multipart/form-data` body has a
    `request` part (the JSON), `image` file parts (each an item) and at most one `archive`
    (a zip or tar whose entries are items)."""
    settings = gateway.settings
    if not is_multipart(request.headers.get("content-type", "")):
        return parse_model(
            JobRequest, parse_json(await read_body(request, _body_limit(gateway)))
        ), []
    body = await read_body(request, settings.job_max_upload_bytes, content_type=MULTIPART)
    form_parts = multipart_form(
        request.headers,
        body,
        parts=("request", "image", "archive"),
        max_files=settings.job_max_items + 1,
        max_fields=2,
        malformed=ErrorCode.INVALID_REQUEST,
        unknown=ErrorCode.INVALID_REQUEST,
        hint="the parts are `request` (the JSON), `image` files and one `archive`",
    )
    uploads: list[tuple[str, bytes]] = []
    async with form_parts as form:
        raw = form.get("request")
        if raw is None:
            raise InvalidRequestError(
                "the multipart body has no `request` part (the job's JSON)",
                code=ErrorCode.INVALID_REQUEST,
            )
        text = await raw.read() if isinstance(raw, UploadFile) else raw.encode()
        job = parse_model(JobRequest, parse_json(text))
        for name, part in form.multi_items():
            if name == "image" and isinstance(part, UploadFile):
                uploads.append((part.filename or f"image-{len(uploads)}", await part.read()))
        archives = [part for name, part in form.multi_items() if name == "archive"]
        if len(archives) > 1 or (archives and not isinstance(archives[0], UploadFile)):
            raise InvalidRequestError(
                "send one `archive` file part", code=ErrorCode.INVALID_REQUEST
            )
        if archives:
            data = await archives[0].read()  # type: ignore[union-attr]
            uploads += await run_in_threadpool(
                lambda: unpack(
                    data,
                    max_entries=settings.job_max_items,
                    max_bytes=settings.job_max_upload_bytes,
                )
            )
    return job, uploads


def _check_limits(gateway: GatewayDep, principal: Principal, items: int) -> None:
    """The key's tier's limits (items per job, jobs at once) and the service's bound on the
    items a key has queued or running."""
    tier = gateway.settings.job_tier(principal.rate_tier)
    if items > tier.max_items:
        raise InvalidRequestError(
            f"{items} items; a job of the {principal.rate_tier!r} tier has at most "
            f"{tier.max_items}",
            code=ErrorCode.TOO_MANY_JOB_ITEMS,
        )
    jobs = gateway.jobs.active_jobs(principal.key_id)
    if jobs >= tier.max_jobs:
        raise Sam2ServiceError(
            f"this key has {jobs} jobs queued or running; the {principal.rate_tier!r} tier "
            f"runs {tier.max_jobs} at once",
            code=ErrorCode.JOB_QUEUE_FULL,
            retry_after=60,
        )
    active = gateway.jobs.active_items(principal.key_id)
    limit = gateway.settings.job_max_active_items
    if active + items > limit:
        raise Sam2ServiceError(
            f"this key has {active} items queued or running; this job's {items} would pass "
            f"its {limit}",
            code=ErrorCode.JOB_QUEUE_FULL,
            retry_after=60,
        )


def _check_webhook(gateway: GatewayDep, url: str) -> None:
    """The webhook URL's form and, for an IP literal, its address, as image URLs are checked
    (what a name resolves to is checked at each delivery)."""
    try:
        gateway.webhooks.check(url)
    except InvalidRequestError as exc:
        detail = exc.detail.removeprefix("image_url: ")
        raise InvalidRequestError(
            f"webhook_url: {detail}", code=ErrorCode.INVALID_WEBHOOK_URL
        ) from None


def _check_template(template: dict[str, object], principal: Principal) -> None:
    """The template is a /v1/segment request without its image; RLE answers only (a job's
    results hold every item's masks: the other formats are rendered from RLE by a client)."""
    named = sorted({"image", "image_url", "image_id"} & set(template))
    if named:
        raise InvalidRequestError(
            f"`request` names {' and '.join(named)}: the images are the job's `items`",
            code=ErrorCode.INVALID_PARAMETER,
        )
    if template.get("mask_format", "rle") != "rle":
        raise InvalidRequestError(
            "a job's answers are RLE: leave `mask_format` out or set it to rle",
            code=ErrorCode.INVALID_PARAMETER,
        )
    parsed = parse_segment_request(template | {"image_id": IMAGE_ID_PREFIX + "0" * 32})
    principal.require("auto" if parsed.mode == "auto" else "segment")


async def _status(job_id: str, principal: Principal, gateway: GatewayDep) -> JobStatus:
    principal.require("jobs")
    status = await run_in_threadpool(gateway.jobs.status, job_id[:64], principal.key_id)
    if status is None:
        raise _not_found(job_id)
    return status


webhooks = APIRouter(prefix="/v1/webhooks", tags=["jobs"])


@webhooks.get("/secret", response_model=WebhookSecretResponse)
async def webhook_secret(principal: PrincipalDep, gateway: GatewayDep) -> WebhookSecretResponse:
    """This key's webhook signing secret (`whsec_...`), made on first use: verify deliveries
    with it (`sam2_sdk.verify_webhook`, `verifyWebhook`). API keys only, on your server."""
    _owner(principal)
    secrets = await run_in_threadpool(
        lambda: gateway.jobs.secrets(principal.key_id, now=datetime.now(UTC))
    )
    return WebhookSecretResponse(secret=secrets[0], previous=secrets[1:])


@webhooks.post("/secret/rotate", response_model=WebhookSecretResponse)
async def rotate_webhook_secret(
    principal: PrincipalDep, gateway: GatewayDep
) -> WebhookSecretResponse:
    """A new signing secret; for 24 hours deliveries carry a signature by the old one too, so
    a receiver can switch without missing one."""
    _owner(principal)
    now = datetime.now(UTC)
    secret = await run_in_threadpool(lambda: gateway.jobs.rotate_secret(principal.key_id, now=now))
    secrets = await run_in_threadpool(lambda: gateway.jobs.secrets(principal.key_id, now=now))
    return WebhookSecretResponse(secret=secret, previous=secrets[1:])


def _owner(principal: Principal) -> None:
    principal.require("jobs")
    if principal.via != "api_key":
        raise PermissionDeniedError(
            "the webhook secret is for the key's owner: call this with the API key, not a "
            "browser token"
        )


def _not_found(job_id: str) -> NotFoundError:
    return NotFoundError(f"no job {job_id[:64]!r} for this key", code=ErrorCode.JOB_NOT_FOUND)


def _body_limit(gateway: GatewayDep) -> int:
    # Items are URLs and ids: a job of the most items is far below a base64 image's limit.
    return gateway.settings.max_body_bytes


def _info(gateway: GatewayDep, status: JobStatus) -> JobInfo:
    counts = status.counts
    left = counts["queued"] + counts["running"]
    workers = max(1, gateway.settings.job_workers)
    eta = None
    if status.mean_item_s is not None and status.state in ("queued", "running"):
        eta = round(status.mean_item_s * left / workers, 1)
    return JobInfo(
        job_id=status.job_id,
        state=status.state,
        total=sum(counts.values()),
        counts=counts,  # type: ignore[arg-type]  # a dict of the five states, validated
        created_at=status.created_at,
        started_at=status.started_at,
        finished_at=status.finished_at,
        eta_s=eta,
        webhook=JobWebhook(
            state=status.webhook_state,  # type: ignore[arg-type]  # pending, sent or failed
            attempts=status.webhook_attempts,
            error=status.webhook_error,
        )
        if status.webhook_state is not None
        else None,
    )


def _info_response(gateway: GatewayDep, status: JobStatus, code: int) -> JSONResponse:
    return JSONResponse(_info(gateway, status).model_dump(mode="json"), status_code=code)
