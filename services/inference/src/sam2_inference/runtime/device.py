"""Choosing the compute device and the precision SAM2 runs in on it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from sam2_contract.models import Pipeline

from sam2_inference.config import DevicePreference, PipelinePreference


def pick_device(preference: DevicePreference) -> torch.device:
    """CUDA, then Apple MPS, then CPU, unless one is named."""
    if preference != "auto":
        return torch.device(preference)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_pipeline(preference: PipelinePreference, device: torch.device) -> Pipeline:
    """`fast` on CUDA, where it pays; `exact` elsewhere, unless one is named."""
    if preference != "auto":
        return preference
    return "fast" if device.type == "cuda" else "exact"


def configure(device: torch.device) -> None:
    """TF32 matmuls on Ampere and newer: SAM2's own recipe, a free speed-up on the encoder."""
    if device.type == "cuda" and torch.cuda.get_device_properties(device).major >= 8:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def compute_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 autocast on CUDA (as SAM2's examples run it), float32 elsewhere."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


@contextlib.contextmanager
def inference_context(device: torch.device) -> Iterator[None]:
    """No autograd, and bf16 autocast where the device supports it."""
    with torch.no_grad():
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                yield
        else:
            yield


def default_video_memory(preference: DevicePreference) -> int:
    """What all video sessions may hold by default: half of the GPU's memory (frames and
    memories live there), or a quarter of the host's memory on a CPU (the rest is the image
    model's, its embedding cache's and the other processes')."""
    device = pick_device(preference)
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory) // 2
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
