"""The SAM2 inference service: the official sam2 package behind an embedding cache."""

from sam2_inference.api.app import create_app
from sam2_inference.config import InferenceSettings
from sam2_inference.image.cache import CachedImage, EmbeddingCache
from sam2_inference.image.engine import Sam2Engine
from sam2_inference.runtime.weights import (
    Checkpoint,
    WeightsUnavailableError,
    build_random_checkpoint,
    config_name,
    load_model,
    resolve_checkpoint,
)

__all__ = [
    "CachedImage",
    "Checkpoint",
    "EmbeddingCache",
    "InferenceSettings",
    "Sam2Engine",
    "WeightsUnavailableError",
    "build_random_checkpoint",
    "config_name",
    "create_app",
    "load_model",
    "resolve_checkpoint",
]
