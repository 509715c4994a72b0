"""Liveness, readiness and the models this service knows."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sam2_contract.models import MODEL_IDS, Health, ModelEntry, ModelsResponse

from sam2_inference.api.deps import EngineDep, EngineHolder

router = APIRouter()


@router.get("/v1/models", response_model=ModelsResponse, tags=["models"])
async def models(request: Request) -> ModelsResponse:
    holder: EngineHolder = request.app.state.holder
    serving = holder.engine.info if holder.engine else None
    entries = [
        ModelEntry(
            name=name, model_id=model_id, loaded=serving is not None and serving.name == name
        )
        for name, model_id in MODEL_IDS.items()
    ]
    return ModelsResponse(models=entries, serving=serving)


@router.get("/healthz", response_model=Health, tags=["health"])
async def healthz(request: Request) -> Health:
    """Answers at once, while the model loads too (state `loading`, or `failed`)."""
    holder: EngineHolder = request.app.state.holder
    if holder.engine is None:
        return Health(state="failed" if holder.failure else "loading")
    return holder.engine.health()


@router.get("/readyz", response_model=Health, tags=["health"])
async def readyz(engine: EngineDep) -> Health:
    """503 `not_ready` with Retry-After until the model is loaded."""
    return Health(state="ready", model=engine.info, random_weights=engine.info.random_weights)
