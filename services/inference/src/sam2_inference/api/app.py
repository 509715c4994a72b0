"""The inference service's HTTP app, behind the gateway (locally and on Modal).

The model loads in a background thread, so `/healthz` answers at once and `/readyz` (and every
segment call) says 503 `not_ready` with `Retry-After` until it is loaded. Bodies are read with a
byte limit and parsed by the shared contract, so every error has its stable code. The one model
route is the gateway's hop (routes/segment.py); the video routes are the gateway's too.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from sam2_contract.problems import install_problem_handlers, install_request_ids

from sam2_inference.api.deps import EngineHolder
from sam2_inference.api.routes import client_decode, health, segment
from sam2_inference.api.routes import videos as video_routes
from sam2_inference.config import InferenceSettings
from sam2_inference.image.engine import Sam2Engine
from sam2_inference.scheduling.lock import Work
from sam2_inference.video.service import VideoService


def create_app(
    settings: InferenceSettings | None = None,
    *,
    engine: Sam2Engine | None = None,
    videos: VideoService | None = None,
) -> FastAPI:
    """The app; pass `engine` to serve an already loaded one (tests, Modal), `videos` for the
    video routes' own store and model (tests)."""
    settings = settings or InferenceSettings()
    holder = EngineHolder()
    if engine is not None:
        holder.engine = engine
        holder.loaded.set()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if engine is None:
            threading.Thread(
                target=holder.load,
                args=(partial(_load_and_warm_up, settings),),
                name="sam2-model-loader",
                daemon=True,
            ).start()
        yield

    app = FastAPI(
        title="SAM2 inference service", version="1.0.0", lifespan=lifespan, docs_url="/docs"
    )
    app.state.holder = holder
    app.state.queued = Counter[str]()
    app.state.running = dict[tuple[str, str], Work]()
    app.state.settings = settings
    app.state.videos = videos or VideoService(settings)
    install_problem_handlers(app)
    install_request_ids(app)
    for routes in (segment, health, video_routes, client_decode):
        app.include_router(routes.router)
    return app


def _load_and_warm_up(settings: InferenceSettings) -> Sam2Engine:
    engine = Sam2Engine.from_settings(settings)
    engine.warm_up()  # the first request pays no start-up cost; auto mode's estimate starts
    return engine
