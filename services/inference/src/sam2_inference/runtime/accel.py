"""Speed on CUDA for the `fast` pipeline (issue 11, steps 3 and 4): bfloat16 weights, CUDA graphs
and, when asked, `torch.compile`.

On an H200 the eager engine is bound by launching kernels, not by running them: hiera-large's
encoder took as long as hiera-tiny's, and a click's decoder is a few hundred small kernels.

- `cast_weights`: the image encoder and the mask decoder hold bfloat16 weights, so autocast has
  nothing to convert on each call; the prompt encoder and its positional encodings stay float32.
- `Graphed`: a module's forward captured once per call signature (shapes, dtypes, flags) as a
  CUDA graph and replayed: one launch instead of hundreds. Inputs are copied into the graph's
  own buffers and outputs cloned out of them, so what a caller keeps (a cached embedding) is
  never overwritten by the next replay. Calls it cannot replay (CPU tensors, gradients, another
  capture under way, a batch above `max_batch`) run the forward as it is, and so does a call
  signature whose capture failed (a forward that synchronises, e.g.): the failure is logged once
  and that signature runs eagerly from then on, rather than failing the warm-up or a request.
- `compile_mode`: the encoder compiled by TorchInductor (static shapes: its input is always
  1024x1024) before it is captured; or `aot`: compiled ahead of time by AOTInductor and kept as a
  file that later starts load (aot.py).

The exact pipeline keeps sam2's own recipe (float32 weights under bfloat16 autocast, eager).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from typing import Any

import torch
from sam2.modeling.sam2_base import SAM2Base
from torch.utils._pytree import tree_flatten, tree_map_only, tree_unflatten

from sam2_inference.runtime.aot import AOT_MODES, AotOutcome, AotStore, compiled_encoder
from sam2_inference.scheduling.preemption import paused

log = logging.getLogger(__name__)

GRAPHED_DECODER_BATCH = 16
"""The mask decoder is replayed from a graph for up to this many prompts at once (clicks and
several objects); automatic mode's batches of hundreds run eagerly, where one launch per kernel
is already spread over the whole batch and a graph's buffers would hold gigabytes."""


@dataclass(frozen=True, slots=True)
class Acceleration:
    """What `accelerate` did to a model, reported in logs and by the benchmark."""

    weights: str  # "bfloat16" or "float32"
    graphs: bool
    compile_mode: str | None
    aot: AotOutcome | None = None  # the encoder's AOTInductor package: loaded or compiled here
    aot_autotuned: bool = False  # that package's kernels chosen by Inductor's max-autotune

    def describe(self) -> str:
        parts = [f"{self.weights} weights", "CUDA graphs" if self.graphs else "eager"]
        if self.compile_mode:
            parts.append(f"compiled ({self.compile_mode})")
        if self.aot:
            how = ", kernels autotuned" if self.aot_autotuned else ""
            parts.append(f"AOTInductor encoder ({self.aot}{how})")
        return ", ".join(parts)


def cast_weights(model: SAM2Base) -> None:
    """bfloat16 weights for the image encoder and mask decoder; the prompt encoder (and its
    random-Fourier positional encoding) and the memory modules stay float32."""
    model.image_encoder.to(torch.bfloat16)
    model.sam_mask_decoder.to(torch.bfloat16)


def for_pipeline(
    model: SAM2Base,
    device: torch.device,
    *,
    fast: bool,
    precision: str,
    graphs: str,
    compile_mode: str,
    aot_store: AotStore | None,
) -> Acceleration | None:
    """bfloat16 weights and CUDA graphs for the fast pipeline on CUDA, and the AOTInductor
    encoder (aot.py) where asked, as the settings say; elsewhere (None) the model runs as sam2
    builds it."""
    cuda = device.type == "cuda"
    aot = None
    if compile_mode in AOT_MODES and aot_store is not None:
        aot = replace(aot_store, autotune=AOT_MODES[compile_mode])
    if not fast or not (cuda or aot):
        return None
    return accelerate(
        model,
        bf16=cuda and precision != "float32",
        graphs=cuda and graphs != "off",
        compile_mode=None if compile_mode == "off" or aot else compile_mode,
        aot=aot,
    )


def accelerate(
    model: SAM2Base,
    *,
    bf16: bool,
    graphs: bool,
    compile_mode: str | None = None,
    aot: AotStore | None = None,
) -> Acceleration:
    """Make `model` fast for inference, in place (graphs and bfloat16 weights: on a CUDA
    device); a model already made so is given fresh graphs (engines sharing one model share
    its acceleration). With `aot`, the encoder is the package kept there (compiled if none)."""
    release(model)
    model.requires_grad_(False)  # inference only; autocast then caches no weight casts
    if bf16:
        cast_weights(model)
    encoder_forward: Callable[..., Any] = model.image_encoder.forward
    outcome: AotOutcome | None = None
    if aot is not None:
        device = next(model.image_encoder.parameters()).device
        encoder_forward, outcome = compiled_encoder(model, aot, device)
    elif compile_mode:
        encoder_forward = torch.compile(
            encoder_forward, mode=compile_mode, fullgraph=False, dynamic=False
        )
    if graphs:
        model.image_encoder.forward = Graphed(encoder_forward, name="image encoder")
        model.sam_mask_decoder.forward = Graphed(
            model.sam_mask_decoder.forward,
            name="mask decoder",
            max_batch=GRAPHED_DECODER_BATCH,
        )
    elif compile_mode or aot is not None:
        model.image_encoder.forward = encoder_forward
    return Acceleration(
        "bfloat16" if bf16 else "float32",
        graphs,
        compile_mode,
        outcome,
        aot_autotuned=aot is not None and aot.autotune,
    )


def release(model: SAM2Base) -> None:
    """Undo graphs and compilation on `model` (before it moves to another device); weights
    keep their dtype."""
    for module in (model.image_encoder, model.sam_mask_decoder):
        module.__dict__.pop("forward", None)


class Graphed:
    """`forward` replayed from CUDA graphs, one per call signature, at most `limit` kept (the
    least recently used is dropped, and its memory with it)."""

    def __init__(
        self,
        forward: Callable[..., Any],
        *,
        name: str,
        max_batch: int | None = None,
        limit: int = 32,
    ) -> None:
        self.forward = forward
        self.name = name
        self.max_batch = max_batch
        self.limit = limit
        self._graphs: OrderedDict[Hashable, _Graph] = OrderedDict()
        self._uncapturable: set[Hashable] = set()
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        leaves, spec = tree_flatten((args, kwargs))
        tensors = [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]
        if not self._replayable(tensors):
            return self.forward(*args, **kwargs)
        key = (repr(spec), *(_signature(leaf) for leaf in leaves), _autocast_state())
        if key in self._uncapturable:
            return self.forward(*args, **kwargs)
        with self._lock:
            graph = self._graphs.get(key)
            if graph is None:
                try:
                    graph = self._capture(leaves, spec)
                except RuntimeError as exc:
                    self._uncapturable.add(key)
                    log.warning(
                        "cannot capture the %s as a CUDA graph (%s): it runs eagerly",
                        self.name,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                    )
                    return self.forward(*args, **kwargs)
                self._graphs[key] = graph
                while len(self._graphs) > self.limit:
                    self._graphs.popitem(last=False)[1].graph.reset()
            else:
                self._graphs.move_to_end(key)
            return graph.run(tensors)

    @property
    def graphs(self) -> int:
        return len(self._graphs)

    @property
    def uncapturable(self) -> int:
        """Call signatures whose capture failed and which run eagerly."""
        return len(self._uncapturable)

    def _replayable(self, tensors: list[torch.Tensor]) -> bool:
        if not tensors or torch.is_grad_enabled() or torch.cuda.is_current_stream_capturing():
            return False
        if not all(tensor.is_cuda for tensor in tensors):
            return False
        batch = max(tensor.shape[0] if tensor.dim() else 1 for tensor in tensors)
        return self.max_batch is None or batch <= self.max_batch

    def _capture(self, leaves: list[Any], spec: Any) -> _Graph:
        inputs = [leaf.clone() if isinstance(leaf, torch.Tensor) else leaf for leaf in leaves]
        args, kwargs = tree_unflatten(inputs, spec)
        with paused():  # a capture runs to its end: no job steps aside in the middle of one
            side = torch.cuda.Stream()  # type: ignore[no-untyped-call]
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):  # kernel selection and lazy initialisation, not captured
                    self.forward(*args, **kwargs)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                outputs = self.forward(*args, **kwargs)
        log.info("captured a CUDA graph of the %s (%d kept)", self.name, len(self._graphs) + 1)
        buffers = [leaf for leaf in inputs if isinstance(leaf, torch.Tensor)]
        return _Graph(graph, buffers, outputs)


@dataclass(slots=True)
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: list[torch.Tensor]
    outputs: Any

    def run(self, tensors: list[torch.Tensor]) -> Any:
        for buffer, tensor in zip(self.inputs, tensors, strict=True):
            buffer.copy_(tensor)
        self.graph.replay()
        return tree_map_only(torch.Tensor, torch.clone, self.outputs)


def _signature(leaf: Any) -> Hashable:
    if isinstance(leaf, torch.Tensor):
        return (tuple(leaf.shape), tuple(leaf.stride()), leaf.dtype, leaf.device)
    return (type(leaf), leaf)


def _autocast_state() -> Hashable:
    return (torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda"))
