"""Fixtures for every suite. SAM2 runs for real on a real checkpoint file: a seeded random-weight
hiera-tiny built once per test run from the official config (no weights can be downloaded here),
loaded through the same loader the service uses. The inference service also runs as a real
HTTP server on a free port, for the gateway's end-to-end tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from sam2.build_sam import build_sam2
from sam2.sam2_image_predictor import SAM2ImagePredictor
from sam2_gateway.core.tokens import generate_private_key_pem
from sam2_inference import (
    InferenceSettings,
    Sam2Engine,
    build_random_checkpoint,
    config_name,
    create_app,
)
from sam2_inference.api.serving import BackgroundServer
from sam2_inference.runtime.weights import Checkpoint
from sam2_inference.video.tracker import load_video_model
from support import (
    IMAGES,
    EncoderCounter,
    GatewayServer,
    RunningServer,
    free_port,
    fresh_engine,
    run_hook,
    running_gateway,
)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "sam2.1-hiera-tiny-random.pt"
    return build_random_checkpoint("tiny", path, seed=0)


@pytest.fixture(scope="session")
def video_model(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """sam2's video predictor on the test checkpoint with the object-score head's output bias
    raised to +20: a random checkpoint predicts "no object" on every frame (empty masks, which
    any two pipelines agree on); with this one masks are non-empty."""
    state = torch.load(checkpoint, map_location="cpu")
    state["model"]["sam_mask_decoder.pred_obj_score_head.layers.2.bias"].fill_(20.0)
    path = tmp_path_factory.mktemp("video") / "tracking.pt"
    torch.save(state, path)
    return load_video_model("tiny", Checkpoint(path, "random", True), torch.device("cpu"))


@pytest.fixture(scope="session")
def settings(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> InferenceSettings:
    aot = tmp_path_factory.mktemp("aot")  # compiled encoders and exported decoders, not ~/.cache
    return InferenceSettings(model="tiny", weights=str(checkpoint), device="cpu", aot_dir=aot)


@pytest.fixture(scope="session")
def loaded_engine(settings: InferenceSettings) -> Sam2Engine:
    return Sam2Engine.from_settings(settings)


@pytest.fixture
def engine(loaded_engine: Sam2Engine) -> Sam2Engine:
    """The loaded model with an empty cache of its own."""
    return fresh_engine(loaded_engine)


@pytest.fixture
def client(engine: Sam2Engine, settings: InferenceSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine=engine)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def reference_model(checkpoint: Path) -> Any:
    """A second model from the same checkpoint, for calling SAM2 directly."""
    return build_sam2(config_name("tiny"), str(checkpoint), device="cpu")


@pytest.fixture(scope="session")
def reference(reference_model: Any) -> dict[str, SAM2ImagePredictor]:
    """SAM2ImagePredictor with each test image set, as a user would call it."""
    predictors = {}
    for name, pixels in IMAGES.items():
        predictor = SAM2ImagePredictor(reference_model)
        predictor.set_image(pixels.copy())
        predictors[name] = predictor
    return predictors


@pytest.fixture
def encoder_calls(engine: Sam2Engine) -> Iterator[EncoderCounter]:
    counter = EncoderCounter(engine.model)
    yield counter
    counter.close()


@pytest.fixture(scope="session")
def inference_server(
    loaded_engine: Sam2Engine, settings: InferenceSettings
) -> Iterator[RunningServer]:
    """The inference app on a real socket (uvicorn in a thread), sharing the loaded model."""
    engine = fresh_engine(loaded_engine)
    port = free_port()
    server = BackgroundServer(create_app(settings, engine=engine), "127.0.0.1", port)
    server.start()
    yield RunningServer(url=f"http://127.0.0.1:{port}", engine=engine)
    server.stop()


@pytest.fixture(scope="session")
def modal_server(
    checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """The deployed inference Server's own container code, run here: its snapshot hook loads
    the test checkpoint with CUDA out of reach, its start hook (no GPU required here) serves
    the HTTP app on a port, as a Modal container would behind Modal's proxy. Its Volume
    commits (a Modal call) are not made: the Volume's folder is a temporary one here."""
    import infra.inference_app

    port = free_port()
    wanted = {
        "SAM2_AOT_DIR": str(tmp_path_factory.mktemp("volume") / "sam2-aot"),
        "SAM2_WEIGHTS": str(checkpoint),
        "SAM2_MODEL": "tiny",
        "SAM2_DEVICE": "cpu",
        "SAM2_HOST": "127.0.0.1",
        "SAM2_PORT": str(port),
    }
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    container = infra.inference_app.Inference._get_user_cls()()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(infra.inference_app.settings, "require_gpu", False)
            patch.setattr(infra.inference_app.hf_volume, "commit", lambda: None)
            run_hook(container, "load")
            run_hook(container, "start")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    yield RunningServer(url=f"http://127.0.0.1:{port}", engine=container.engine)
    run_hook(container, "stop")


@pytest.fixture(scope="session")
def signing_key() -> str:
    """An Ed25519 key (PEM) for the gateways the suites start."""
    return generate_private_key_pem()


@pytest.fixture(scope="session")
def gateway_server(
    tmp_path_factory: pytest.TempPathFactory, inference_server: RunningServer
) -> Iterator[GatewayServer]:
    """A real gateway on a real socket, with a key, in front of the real inference service
    (the SDKs' tests and the docs' examples call it as a user would)."""
    database = f"sqlite:///{tmp_path_factory.mktemp('gateway') / 'gw.db'}"
    with running_gateway(database, inference_server.url) as gateway:
        yield gateway
