"""The inference suite runs real SAM2 code on a real checkpoint file: a seeded random-weight
hiera-tiny built once per test run from the official config (no weights can be downloaded here),
loaded through the same loader the service uses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from sam2.build_sam import build_sam2
from sam2.sam2_image_predictor import SAM2ImagePredictor
from sam2_inference import (
    EmbeddingCache,
    InferenceSettings,
    Sam2Engine,
    build_random_checkpoint,
    config_name,
    create_app,
)
from support import b64, encode, scene

# Both orientations, neither square: the usual place for x/y and h/w mix-ups.
IMAGES = {"landscape": scene(120, 200, seed=1), "portrait": scene(200, 120, seed=2)}


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "sam2.1-hiera-tiny-random.pt"
    return build_random_checkpoint("tiny", path, seed=0)


@pytest.fixture(scope="session")
def settings(checkpoint: Path) -> InferenceSettings:
    return InferenceSettings(model="tiny", weights=str(checkpoint), device="cpu")


@pytest.fixture(scope="session")
def loaded_engine(settings: InferenceSettings) -> Sam2Engine:
    return Sam2Engine.from_settings(settings)


@pytest.fixture
def engine(loaded_engine: Sam2Engine) -> Sam2Engine:
    """The loaded model with an empty cache of its own."""
    return fresh_engine(loaded_engine)


def fresh_engine(loaded: Sam2Engine, *, cache_bytes: int = 1 << 30) -> Sam2Engine:
    return Sam2Engine(
        loaded.model, loaded.info, EmbeddingCache(cache_bytes), max_pixels=loaded.max_pixels
    )


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


class EncoderCounter:
    """Counts runs of the image encoder through a forward hook on the real module."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls = 0
        self._handle = model.image_encoder.register_forward_hook(self._count)

    def _count(self, *_: object) -> None:
        self.calls += 1

    def close(self) -> None:
        self._handle.remove()


@pytest.fixture
def encoder_calls(engine: Sam2Engine) -> Iterator[EncoderCounter]:
    counter = EncoderCounter(engine.model)
    yield counter
    counter.close()


def image_b64(name: str, fmt: str = "PNG") -> str:
    return b64(encode(IMAGES[name], fmt))


def masks_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))
