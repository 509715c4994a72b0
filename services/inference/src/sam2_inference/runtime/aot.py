"""The image encoder compiled ahead of time by AOTInductor and kept as a file (issue 11, step 4).

`torch.compile` compiles again in every new process: minutes for hiera-large, paid by each cold
container. With `SAM2_COMPILE=aot` the encoder is exported (`torch.export`, static 1024x1024
input, under the autocast the engine runs it with) and compiled once by AOTInductor into a
`.pt2` package in `SAM2_AOT_DIR` (on Modal: the weights Volume, committed after a compile), and
every later start with the same torch version, device, model, weights and dtype loads it in
a fraction of a second instead. A package that cannot be loaded (damaged, from another build)
is compiled again and replaced; a package is written under a temporary name and renamed, so
two containers compiling at once never leave half a file.

A package is native code the process loads: `SAM2_AOT_DIR` must be writable by this service
only (on Modal it is this app's own Volume).

The compiled encoder is one opaque call: automatic-mode jobs do not step aside inside it
(scheduling/preemption.py), only between crops and decoder batches. Its numerics are
Inductor's: on the CPU the encoder's outputs differ from eager ones by about 4e-6
(tests/inference/runtime/test_aot.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any, Literal

import torch
from sam2.modeling.sam2_base import SAM2Base

from sam2_inference.runtime.device import inference_context

log = logging.getLogger(__name__)

AotOutcome = Literal["loaded", "compiled"]
# The settings' compile modes served by a package, and whether Inductor autotunes its kernels.
AOT_MODES = {"aot": False, "aot-max-autotune": True}


@dataclass(frozen=True, slots=True)
class AotStore:
    """Where packages are kept, for one model and one checkpoint file."""

    directory: Path
    model: str
    weights: str  # checkpoint_key() of the weights the package has inside it
    # Inductor's max-autotune: kernels (matrix products first) chosen by timing candidates on
    # this device, as `torch.compile(mode="max-autotune")` does; a longer compile, paid once.
    autotune: bool = False

    def path(self, device: torch.device, dtype: torch.dtype) -> Path:
        """The package for this model and weights, compiled for this device and dtype by this
        torch: another torch, GPU, model, checkpoint, dtype or autotuning is another file."""
        dtype_name = str(dtype).removeprefix("torch.")
        parts = [
            self.model,
            self.weights,
            dtype_name,
            device_id(device),
            f"torch{torch.__version__}",
        ]
        if self.autotune:
            parts.append("autotuned")
        return self.directory / (re.sub(r"[^A-Za-z0-9_.+-]", "_", "-".join(parts)) + ".pt2")

    def decoder_path(self, opset: int) -> Path:
        """The exported ONNX decoder of these weights (image/onnx.py), by this torch."""
        name = f"{self.model}-{self.weights}-decoder-opset{opset}-torch{torch.__version__}"
        return self.directory / (re.sub(r"[^A-Za-z0-9_.+-]", "_", name) + ".onnx")


def checkpoint_key(path: Path) -> str:
    """Names a checkpoint file by where it is, its size and its modification time: a hub file
    lives under its revision's hash, a random one under its seed, so a changed file is a new
    key without reading a gigabyte to hash it."""
    stat = path.resolve().stat()
    text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def device_id(device: torch.device) -> str:
    """The GPU's name and compute capability, or the CPU's architecture."""
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        return f"{properties.name}-sm{properties.major}{properties.minor}"
    return f"{device.type}-{platform.machine()}"


def compiled_encoder(
    model: SAM2Base, store: AotStore, device: torch.device
) -> tuple[Callable[..., Any], AotOutcome]:
    """The model's image encoder as an AOTInductor package: loaded, or compiled and kept."""
    dtype = next(model.image_encoder.parameters()).dtype
    path = store.path(device, dtype)
    if path.is_file():
        try:
            return _load(path, device), "loaded"
        except Exception as exc:  # any failure to load means: compile it again
            log.warning("cannot load the compiled encoder %s (%s); compiling it again", path, exc)
    started = perf_counter()
    example = torch.zeros(1, 3, model.image_size, model.image_size, device=device)
    with inference_context(device):  # the autocast the engine runs the encoder under
        # One eager pass first: sam2's positional encoding fills a cache of tensors on its
        # first call, which an export would otherwise fill with tracing's fake tensors.
        model.image_encoder(example)
        exported = torch.export.export(model.image_encoder, (example,))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.pt2")
    try:
        torch._inductor.aoti_compile_and_package(
            exported,
            package_path=str(partial),
            inductor_configs=_autotuning() if store.autotune else None,
        )
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    log.info(
        "compiled the image encoder ahead of time%s in %.0f s: %s",
        " (kernels autotuned)" if store.autotune else "",
        perf_counter() - started,
        path,
    )
    return _load(path, device), "compiled"


def _autotuning() -> dict[str, Any]:
    """Inductor's max-autotune, without its report of every candidate kernel's timing on
    stderr (dozens of blocks per model: the log keeps the one line above). Settings this
    torch does not have are left out."""
    wanted = {
        "max_autotune": True,
        "max_autotune_report_choices_stats": False,
        "autotune_num_choices_displayed": 0,
    }
    return {key: value for key, value in wanted.items() if hasattr(torch._inductor.config, key)}


def _load(path: Path, device: torch.device) -> Callable[..., Any]:
    index = device.index if device.index is not None else -1
    if device.type == "cuda" and index < 0:
        index = torch.cuda.current_device()
    runner = torch._inductor.aoti_load_package(str(path), device_index=index)
    return runner
