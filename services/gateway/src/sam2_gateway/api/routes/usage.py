"""GET /v1/usage: what the calling key used, per UTC day, and its tier's limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from sam2_contract.errors import PermissionDeniedError
from sam2_contract.models import UsageCounts, UsageDay, UsageLimits, UsageResponse

from sam2_gateway.api.deps import CountedPrincipalDep, GatewayDep

router = APIRouter(prefix="/v1/usage", tags=["usage"])

MAX_DAYS = 366


@router.get("", response_model=UsageResponse)
async def usage(
    principal: CountedPrincipalDep,
    gateway: GatewayDep,
    days: Annotated[
        int, Query(ge=1, le=MAX_DAYS, description="How many UTC days, today included.")
    ] = 30,
) -> UsageResponse:
    """The calling key's usage per UTC day, up to its last request (API keys only: a browser
    token's holder is not told the key's traffic)."""
    if principal.via != "api_key":
        raise PermissionDeniedError("usage is read with the API key, not with a browser token")
    since = datetime.now(UTC).date() - timedelta(days=days - 1)
    await gateway.meter.flush()  # this process's last second too
    rows = await gateway.store.ausage(principal.key_id, since=since)
    rate, concurrent = gateway.limiter.limits(principal.rate_tier)
    jobs = gateway.settings.job_tier(principal.rate_tier) if "jobs" in principal.scopes else None
    # The store's float sums carry binary noise (2723.1000000000004): microseconds are plenty.
    report = [
        UsageDay(
            day=r.day,
            requests=r.requests,
            images=r.images,
            masks=r.masks,
            gpu_ms=round(r.gpu_ms, 3),
        )
        for r in rows
    ]
    return UsageResponse(
        key_id=principal.key_id,
        rate_tier=principal.rate_tier,
        limits=UsageLimits(
            requests=rate.amount,
            window_s=rate.get_expiry(),
            concurrent=concurrent,
            video_sessions=gateway.settings.video_sessions(principal.rate_tier),
            job_items=jobs.max_items if jobs else None,
            jobs=jobs.max_jobs if jobs else None,
            job_running=jobs.max_running if jobs else None,
            job_retention_days=jobs.retention_days if jobs else None,
        ),
        since=since,
        days=report,
        total=UsageCounts(
            requests=sum(d.requests for d in report),
            images=sum(d.images for d in report),
            masks=sum(d.masks for d in report),
            gpu_ms=round(sum(d.gpu_ms for d in report), 3),
        ),
    )
