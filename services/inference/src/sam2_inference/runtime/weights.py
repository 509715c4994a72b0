"""Finding and loading SAM 2.1 weights: the Hugging Face hub, a local file, or random.

Random weights are built from the official sam2 config with a fixed seed, saved as a real
checkpoint file and then loaded through the same loader as real weights, so the whole pipeline
runs offline. The file carries a marker so that whoever loads it later is told it is random.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import torch
from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES, build_sam2
from sam2.modeling.sam2_base import SAM2Base
from sam2_contract.models import MODEL_IDS, ModelInfo, ModelName, WeightsSource

from sam2_inference.config import InferenceSettings
from sam2_inference.runtime.device import compute_dtype

log = logging.getLogger(__name__)

RANDOM_MARKER = "sam2_service_random_weights"


class WeightsUnavailableError(RuntimeError):
    """The asked-for weights cannot be found or fetched."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    path: Path
    source: WeightsSource
    random_weights: bool


def config_name(model: ModelName) -> str:
    """The sam2 Hydra config that builds this model."""
    return str(HF_MODEL_ID_TO_FILENAMES[MODEL_IDS[model]][0])


def checkpoint_filename(model: ModelName) -> str:
    """The checkpoint's file name in its Hugging Face repository."""
    return str(HF_MODEL_ID_TO_FILENAMES[MODEL_IDS[model]][1])


def resolve_checkpoint(settings: InferenceSettings) -> Checkpoint:
    """Find the checkpoint file that `settings.weights` names, fetching or building it."""
    weights = settings.weights
    if weights == "random":
        return _random(settings)
    if weights == "huggingface":
        return _from_hub(settings)
    if weights == "auto":
        try:
            # Offline, the hub client retries for ~20 s before it looks in its cache: skip that.
            offline = settings.hf_offline or not _hub_reachable()
            return _from_hub(settings.model_copy(update={"hf_offline": offline}))
        except WeightsUnavailableError as exc:
            log.warning(
                "Hugging Face weights unavailable (%s); falling back to RANDOM weights", exc
            )
            return _random(settings)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(f"no checkpoint file at {path}")
    return Checkpoint(path=path, source="local", random_weights=is_random_checkpoint(path))


def served_info(model: ModelName, checkpoint: Checkpoint, device: torch.device) -> ModelInfo:
    """What answers and /healthz say of the model served from `checkpoint` on `device`."""
    return ModelInfo(
        name=model,
        model_id=MODEL_IDS[model],
        weights=checkpoint.source,
        random_weights=checkpoint.random_weights,
        device=device.type,
        dtype=str(compute_dtype(device)).removeprefix("torch."),
    )


def load_model(model: ModelName, checkpoint: Checkpoint, device: torch.device) -> SAM2Base:
    """Build the model from its official config and load the checkpoint with sam2's loader."""
    return build_sam2(config_name(model), str(checkpoint.path), device=str(device))


def build_random_checkpoint(model: ModelName, path: Path, *, seed: int) -> Path:
    """Write a seeded random-weight checkpoint of `model` to `path` (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = build_sam2(config_name(model), None, device="cpu")
    payload = {
        "model": sam.state_dict(),
        RANDOM_MARKER: {"model": model, "seed": seed},
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def is_random_checkpoint(path: Path) -> bool:
    """Whether `path` was written by `build_random_checkpoint` (read lazily, via mmap)."""
    try:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as exc:
        raise WeightsUnavailableError(f"{path} is not a readable checkpoint: {exc}") from None
    return isinstance(state, dict) and RANDOM_MARKER in state


def _random(settings: InferenceSettings) -> Checkpoint:
    path = (
        settings.random_dir / f"sam2.1-hiera-{settings.model}-random-seed{settings.random_seed}.pt"
    )
    if not path.is_file():
        log.warning("building a RANDOM-weight %s checkpoint at %s", settings.model, path)
        build_random_checkpoint(settings.model, path, seed=settings.random_seed)
    return Checkpoint(path=path, source="random", random_weights=True)


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    from huggingface_hub import constants

    host = urlsplit(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def _from_hub(settings: InferenceSettings) -> Checkpoint:
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(
            repo_id=MODEL_IDS[settings.model],
            filename=checkpoint_filename(settings.model),
            cache_dir=settings.hf_cache_dir,
            local_files_only=settings.hf_offline,
        )
    except Exception as exc:  # the hub raises many kinds: network, auth, missing cache entry
        raise WeightsUnavailableError(f"{type(exc).__name__}: {exc}") from exc
    return Checkpoint(path=Path(path), source="huggingface", random_weights=False)
