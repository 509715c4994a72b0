"""Liveness, readiness and the model list."""

from __future__ import annotations

from fastapi import APIRouter
from sam2_contract.errors import ServiceUnavailableError
from sam2_contract.models import MODEL_IDS, Health, ModelEntry, ModelInfo, ModelsResponse

from sam2_gateway.api.deps import CountedPrincipalDep, GatewayDep
from sam2_gateway.backends import dependency_down, unavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The gateway process is alive (says nothing about inference)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Health)
async def readyz(gateway: GatewayDep) -> Health:
    """The key store, the rate limiter and inference are reachable and the model is loaded;
    else 503 naming what is not."""
    if not await gateway.store.reachable():
        raise dependency_down("key store")
    if not await gateway.limiter.reachable():
        raise dependency_down("rate limiter")
    health = Health.model_validate(await gateway.backend.health())
    if health.state == "loading":
        raise ServiceUnavailableError("inference is still loading its model", retry_after=5)
    if health.state != "ready":
        raise unavailable("inference failed to load its model")
    return health


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
