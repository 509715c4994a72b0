"""Running the service in a GPU container that starts from a memory snapshot (infra/).

Before the snapshot the model is built and loaded on the CPU with CUDA out of reach: a CUDA
state queried while a snapshot is taken comes back with zero devices after the restore, and
sam2's constructors ask `torch.cuda.is_available()` (8 times for hiera-tiny), so a model built
naively would stay on the CPU while everything seemed fine. After the restore the engine moves
to the GPU, or refuses to start when a GPU was asked for and none is there, warms up, and
serves the ordinary HTTP app on a port.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import torch
import uvicorn
from starlette.types import ASGIApp

from sam2_inference.api.app import create_app
from sam2_inference.config import InferenceSettings
from sam2_inference.image.engine import Sam2Engine
from sam2_inference.video.service import VideoService

log = logging.getLogger(__name__)


class GpuMissingError(RuntimeError):
    """A GPU was asked for and the container has none: it must not serve on the CPU."""


@contextlib.contextmanager
def cuda_hidden() -> Iterator[None]:
    """Inside, `torch.cuda.is_available()` answers False without asking the driver."""
    original = torch.cuda.is_available
    torch.cuda.is_available = lambda: False
    try:
        yield
    finally:
        torch.cuda.is_available = original


def load_for_snapshot(settings: InferenceSettings) -> Sam2Engine:
    """Resolve the weights and build the model on the CPU, touching no CUDA state."""
    with cuda_hidden():
        return Sam2Engine.from_settings(settings.model_copy(update={"device": "cpu"}))


def move_to_accelerator(engine: Sam2Engine, *, require_gpu: bool) -> None:
    """After the restore: onto the GPU, or fail loudly if one was required; then warm up."""
    if torch.cuda.is_available():
        engine.to(torch.device("cuda"))
    elif require_gpu:
        log.critical("NO GPU: this deployment asked for one and CUDA sees none; not serving")
        raise GpuMissingError("a GPU was requested but CUDA sees no device")
    engine.warm_up()
    log.info("serving %s on %s (%s)", engine.info.model_id, engine.device, engine.info.dtype)


def serve_engine(
    engine: Sam2Engine, settings: InferenceSettings, *, videos: VideoService | None = None
) -> BackgroundServer:
    """The inference HTTP app for a loaded engine, serving on `settings.host:port`."""
    app = create_app(settings, engine=engine, videos=videos)
    server = BackgroundServer(app, settings.host, settings.port)
    server.start()
    return server


class BackgroundServer:
    """An ASGI app served by uvicorn on a thread (the container's main thread stays Modal's)."""

    def __init__(self, app: ASGIApp, host: str, port: int, *, http: Any = "auto") -> None:
        self.port = port
        config = uvicorn.Config(app, host=host, port=port, http=http, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="sam2-http", daemon=True)

    def start(self, *, timeout_s: float = 30.0) -> None:
        """Start serving; returns once the port accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the inference HTTP server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
