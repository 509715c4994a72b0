"""What the inference routes take from a request: the engine, the tenant, the JSON body, the
video service and a session; each an `Annotated` dependency alias."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from sam2_contract.errors import ServiceUnavailableError
from sam2_contract.problems import read_body
from sam2_contract.validation import parse_json
from sam2_contract.wire import NAMESPACE_HEADER

from sam2_inference.config import InferenceSettings
from sam2_inference.image.engine import Sam2Engine
from sam2_inference.video.service import VideoService
from sam2_inference.video.sessions import Session

log = logging.getLogger(__name__)

LOADING_RETRY_AFTER_S = 5


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


def namespace(request: Request) -> str:
    """The tenant the gateway says this call is for; nothing (embeddings, clips, sessions)
    crosses tenants."""
    return request.headers.get(NAMESPACE_HEADER) or "default"


def settings(request: Request) -> InferenceSettings:
    configured: InferenceSettings = request.app.state.settings
    return configured


def _engine(request: Request) -> Sam2Engine:
    holder: EngineHolder = request.app.state.holder
    return holder.require()


def _videos(request: Request) -> VideoService:
    videos: VideoService = request.app.state.videos
    return videos


def _session(session_id: str, request: Request) -> Session:
    return _videos(request).sessions.get(namespace(request), session_id)


async def _body(request: Request) -> Any:
    return parse_json(await read_body(request, settings(request).max_body_bytes))


EngineDep = Annotated[Sam2Engine, Depends(_engine)]
NamespaceDep = Annotated[str, Depends(namespace)]
SettingsDep = Annotated[InferenceSettings, Depends(settings)]
BodyDep = Annotated[Any, Depends(_body)]
VideosDep = Annotated[VideoService, Depends(_videos)]
SessionDep = Annotated[Session, Depends(_session)]
