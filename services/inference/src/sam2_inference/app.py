"""The inference service's HTTP app, for local use and behind the gateway.

The model loads in a background thread, so `/healthz` answers at once and `/readyz` (and every
segment call) says 503 `not_ready` with `Retry-After` until it is loaded. Bodies are read with a
byte limit and parsed by the shared contract, so every error has its stable code.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sam2_contract.errors import (
    ServiceUnavailableError,
)
from sam2_contract.models import (
    MODEL_IDS,
    AutoSegmentResponse,
    BatchSegmentResponse,
    Health,
    ModelEntry,
    ModelsResponse,
    PromptSegmentResponse,
    SegmentResponse,
    mask_count,
)
from sam2_contract.problems import (
    REQUEST_ID_HEADER,
    install_problem_handlers,
    install_request_ids,
    read_body,
)
from sam2_contract.validation import parse_batch, parse_json, parse_segment_request
from sam2_contract.wire import (
    ANSWER_LIMIT_HEADER,
    FRAME_CONTENT_TYPE,
    MASKS_HEADER,
    MODEL_MS_HEADER,
    NAMESPACE_HEADER,
    WEIGHTS_HEADER,
    unpack_frame,
)

from sam2_inference.bounded import run_bounded
from sam2_inference.config import InferenceSettings
from sam2_inference.engine import Sam2Engine
from sam2_inference.scheduling import Work
from sam2_inference.video_routes import VideoService
from sam2_inference.video_routes import router as video_router

log = logging.getLogger(__name__)

LOADING_RETRY_AFTER_S = 5
T = TypeVar("T")


class EngineHolder:
    """The engine once loaded, or why it is not (yet)."""

    def __init__(self) -> None:
        self.engine: Sam2Engine | None = None
        self.failure: str | None = None
        self.loaded = threading.Event()

    def load(self, factory: Callable[[], Sam2Engine]) -> None:
        try:
            self.engine = factory()
        except Exception as exc:
            log.exception("loading the model failed")
            self.failure = f"{type(exc).__name__}: {exc}"
        finally:
            self.loaded.set()

    def require(self) -> Sam2Engine:
        if self.engine is not None:
            return self.engine
        detail = "the model failed to load" if self.failure else "the model is still loading"
        raise ServiceUnavailableError(detail, retry_after=LOADING_RETRY_AFTER_S)


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
        title="SAM2 inference service",
        version="1.0.0",
        lifespan=lifespan,
        docs_url="/docs",
    )
    app.state.holder = holder
    app.state.queued = Counter[str]()
    app.state.running = dict[tuple[str, str], Work]()
    app.state.settings = settings
    install_problem_handlers(app)
    install_request_ids(app)
    app.state.videos = videos or VideoService(settings)
    app.include_router(video_router)

    @app.post("/v1/segment", response_model=SegmentResponse, tags=["segment"])
    async def segment(
        request: Request, body: BodyDep, engine: EngineDep, namespace: NamespaceDep
    ) -> Response:
        parsed = parse_segment_request(body)
        result = await run_bounded(
            request, namespace, partial(engine.segment, parsed, namespace=namespace)
        )
        return _json(result, engine)

    @app.post("/internal/segment", include_in_schema=False)
    async def segment_frame(
        request: Request, engine: EngineDep, namespace: NamespaceDep
    ) -> Response:
        """The gateway's call: the request JSON, then the image file (see sam2_contract.wire)."""
        limit = request.app.state.settings.max_body_bytes
        body = await read_body(request, limit, content_type=FRAME_CONTENT_TYPE)
        raw_json, image_file = unpack_frame(body)
        parsed = parse_segment_request(parse_json(raw_json))
        limit = answer_limit(request.headers.get(ANSWER_LIMIT_HEADER, ""))
        call = partial(
            engine.segment,
            parsed,
            namespace=namespace,
            image_file=image_file,
            answer_limit=limit,
        )
        return _json(await run_bounded(request, namespace, call), engine)

    @app.post("/internal/cancel", include_in_schema=False)
    async def cancel(request: Request, namespace: NamespaceDep) -> dict[str, int]:
        """The gateway's call when its client went away: stop that request's work here (the
        request it names answers 503 with the model time it used, which the gateway meters)."""
        work = request.app.state.running.get((namespace, request.headers.get(REQUEST_ID_HEADER)))
        if work is None:
            return {"stopped": 0}
        work.cancelled.set()
        log.info("cancelled by the gateway: stopping %s", request.headers.get(REQUEST_ID_HEADER))
        return {"stopped": 1}

    @app.post("/v1/segment/batch", response_model=BatchSegmentResponse, tags=["segment"])
    async def segment_batch(
        request: Request, body: BodyDep, engine: EngineDep, namespace: NamespaceDep
    ) -> Response:
        batch = parse_batch(body)
        call = partial(engine.segment_batch, batch, namespace=namespace)
        return _json(await run_bounded(request, namespace, call), engine)

    @app.get("/v1/models", response_model=ModelsResponse, tags=["models"])
    async def models() -> ModelsResponse:
        serving = holder.engine.info if holder.engine else None
        entries = [
            ModelEntry(
                name=name, model_id=model_id, loaded=serving is not None and serving.name == name
            )
            for name, model_id in MODEL_IDS.items()
        ]
        return ModelsResponse(models=entries, serving=serving)

    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> Health:
        current = holder.engine
        if current is None:
            return Health(state="failed" if holder.failure else "loading")
        return current.health()

    @app.get("/readyz", response_model=Health, tags=["health"])
    async def readyz(engine: EngineDep) -> Health:
        return Health(state="ready", model=engine.info, random_weights=engine.info.random_weights)

    return app


def answer_limit(header: str) -> tuple[str, int] | None:
    """ANSWER_LIMIT_HEADER's `<mask_format>:<bytes>` (None: absent or not understood)."""
    fmt, _, size = header.partition(":")
    if fmt not in ("bool2d", "png") or not size.isdigit() or len(size) > 15:
        return None
    return fmt, int(size)


def _load_and_warm_up(settings: InferenceSettings) -> Sam2Engine:
    engine = Sam2Engine.from_settings(settings)
    engine.warm_up()  # the first request pays no start-up cost; auto mode's estimate starts
    return engine


def _engine(request: Request) -> Sam2Engine:
    holder: EngineHolder = request.app.state.holder
    return holder.require()


def _namespace(request: Request) -> str:
    """The tenant the gateway says this call is for; the cache never crosses tenants."""
    return request.headers.get(NAMESPACE_HEADER) or "default"


async def _body(request: Request) -> Any:
    settings: InferenceSettings = request.app.state.settings
    return parse_json(await read_body(request, settings.max_body_bytes))


EngineDep = Annotated[Sam2Engine, Depends(_engine)]
NamespaceDep = Annotated[str, Depends(_namespace)]
BodyDep = Annotated[Any, Depends(_body)]


def _json(model: BaseModel, engine: Sam2Engine) -> Response:
    headers: dict[str, str] = {
        WEIGHTS_HEADER: "random" if engine.info.random_weights else engine.info.weights
    }
    if isinstance(model, PromptSegmentResponse | AutoSegmentResponse):
        # What the gateway meters, so that it never has to parse a large body.
        headers[MASKS_HEADER] = str(mask_count(model))
        headers[MODEL_MS_HEADER] = f"{model.timings_ms.embed_ms + model.timings_ms.predict_ms:.1f}"
    return Response(
        content=model.model_dump_json(exclude_none=True),
        media_type="application/json",
        headers=headers,
    )
