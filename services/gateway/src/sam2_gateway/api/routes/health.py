"""Liveness, readiness and the model list."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from sam2_contract.errors import ServiceUnavailableError
from sam2_contract.models import MODEL_IDS, Health, ModelEntry, ModelInfo, ModelsResponse

from sam2_gateway.api.deps import CountedPrincipalDep, Gateway, GatewayDep
from sam2_gateway.hop import unavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The gateway process is alive (says nothing about inference)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Health)
async def readyz(gateway: GatewayDep) -> Health:
    """The key store, the rate limiter and inference answer and the model is loaded; else 503
    naming the first that does not (or is slow). The three are asked at once, each within
    `readyz_timeout_s`, so the answer comes within that too."""
    deadline = gateway.settings.readyz_timeout_s
    store, limiter, inference = await asyncio.gather(
        gateway.store.check(timeout_s=deadline),
        gateway.limiter.check(timeout_s=deadline),
        _inference_health(gateway, deadline),
        return_exceptions=True,
    )
    for outcome in (store, limiter, inference):
        if isinstance(outcome, BaseException):
            raise outcome
    health = Health.model_validate(inference)
    if health.state == "loading":
        raise ServiceUnavailableError("inference is still loading its model", retry_after=5)
    if health.state != "ready":
        raise unavailable("inference failed to load its model")
    return health


async def _inference_health(gateway: Gateway, deadline_s: float) -> dict[str, Any]:
    try:
        return await asyncio.wait_for(gateway.backend.health(), deadline_s)
    except TimeoutError:
        raise unavailable(
            f"inference did not answer its health check within {deadline_s:g} s"
        ) from None


@router.get("/v1/models", response_model=ModelsResponse, tags=["models"])
async def models(gateway: GatewayDep, _: CountedPrincipalDep) -> ModelsResponse:
    """The SAM 2.1 models and the one being served."""
    health = Health.model_validate(await gateway.backend.health())
    serving: ModelInfo | None = health.model
    return ModelsResponse(
        models=[
            ModelEntry(
                name=name, model_id=model_id, loaded=serving is not None and serving.name == name
            )
            for name, model_id in MODEL_IDS.items()
        ],
        serving=serving,
    )
