"""Places inside the model's forward passes where a long job can stop or step aside.

One image-encoder pass (seconds on a CPU), or even one prompt through the mask decoder (as long
as a whole click on a CPU), would otherwise hold a click up for all of its length. Forward
pre-hooks on the model's stages call the running thread's preemption point, if it has one: only
automatic-mode jobs set one (`preemptible`), so clicks and other callers run the model as sam2
wrote it. A suspended forward pass keeps its activations in its own frame, so a click may use
the model meanwhile. On the CPU, calls too long to be one stage run in steps with a preemption
point between steps: hiera's global attention (hundreds of ms for one call) in steps of query
rows, its linear layers over the 65,536 tokens of its first stage in steps of tokens. Each row
is computed as before, in power-of-two blocks of rows, so the result is the same
(tests/inference/scheduling/test_scheduling.py, tests/inference/image/test_parity.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import torch
import torch.nn.functional as F  # noqa: N812 (sam2's spelling)
from sam2.modeling.backbones.hieradet import MultiScaleAttention, MultiScaleBlock, do_pool
from sam2.modeling.sam2_base import SAM2Base

ATTENTION_STEP = 1024 * 4096
"""Query-key pairs (per head) one attention step computes: a quarter of one global attention
over hiera's 64x64 tokens, about 55 ms on a CPU core pair."""

LINEAR_STEP = 1 << 30
"""Multiply-adds one linear-layer step computes: about 30 ms on a CPU core pair (a whole
96->384 layer over hiera's first-stage tokens is 2.4e9, about 60 ms)."""

MIN_ROWS = 1024
"""Linear steps hold a power of two rows, at least this many. The CPU's matrix kernels (MKL)
can give a row other last bits in a block of another size: 7,281-row steps of a 192->768 layer
over 65,536 rows, and 256- or 455-row steps of a 3072->768 layer over 1,024, differed from the
whole call on an Intel Xeon (not on an AMD EPYC), enough to flip a pixel of automatic mode.
Power-of-two steps of 1,024 rows or more matched on every layer shape of hiera there."""

_local = threading.local()


def install_preemption(model: SAM2Base) -> None:
    """Give `model` its preemption points (once per model)."""
    if getattr(model, "_sam2_preemptible", False):
        return
    for stage in _stages(model):
        stage.register_forward_pre_hook(_at_stage)
    for block in model.image_encoder.trunk.blocks:
        attention: MultiScaleAttention = block.attn
        attention.forward = partial(_attention_in_steps, attention, attention.forward)
        for linear in (attention.qkv, attention.proj, *block.mlp.layers):
            linear.forward = partial(_linear_in_steps, linear, linear.forward)
    model._sam2_preemptible = True


@contextmanager
def preemptible(point: Callable[[], None]) -> Iterator[None]:
    """This thread's model passes stop or step aside at `point` between stages."""
    _local.point = point
    try:
        yield
    finally:
        _local.point = None


@contextmanager
def paused() -> Iterator[None]:
    """This thread's model passes run without stepping aside until the block ends (a CUDA graph
    capture must run to its end); the job's point is back afterwards."""
    point = _point()
    _local.point = None
    try:
        yield
    finally:
        _local.point = point


def _point() -> Callable[[], None] | None:
    point: Callable[[], None] | None = getattr(_local, "point", None)
    return point


def _stages(model: SAM2Base) -> list[torch.nn.Module]:
    """The encoder's trunk blocks (each split into its attention and MLP layers), its neck's
    convolutions and position encodings, the high-resolution feature convolutions; the
    decoder's transformer layers, final attention, upscaling convolutions and mask heads (the
    modules sam2 1.1.0 calls, in that order; a stage runs uninterrupted from one to the next)."""
    encoder, decoder = model.image_encoder, model.sam_mask_decoder
    upscaling = [m for m in decoder.output_upscaling if isinstance(m, torch.nn.ConvTranspose2d)]
    return [
        *(part for block in encoder.trunk.blocks for part in _block_stages(block)),
        *encoder.neck.convs,
        encoder.neck.position_encoding,
        decoder.conv_s0,
        decoder.conv_s1,
        *decoder.transformer.layers,
        decoder.transformer.final_attn_token_to_image,
        *upscaling,
        decoder.output_hypernetworks_mlps[0],
    ]


def _block_stages(block: MultiScaleBlock) -> list[torch.nn.Module]:
    """A trunk block's attention (its input projection, then its output projection) and MLP
    (each linear layer, and the activation between them): at hiera's first stage each is a
    pass over 65,536 tokens."""
    return [block, block.attn, block.attn.proj, block.mlp, block.mlp.act, *block.mlp.layers[1:]]


def _at_stage(*_: object) -> None:
    point = _point()
    if point is not None:
        point()


def _attention_in_steps(
    attention: MultiScaleAttention, whole: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """`MultiScaleAttention.forward` of sam2 1.1.0, its attention call split into steps of
    query rows (windows, or rows of one window) with a preemption point between steps; as
    sam2 wrote it where no job can step aside, off the CPU, or where the call is short."""
    point = _point()
    if point is None or x.device.type != "cpu":
        return whole(x)
    b, h, w, _ = x.shape
    qkv = attention.qkv(x).reshape(b, h * w, 3, attention.num_heads, -1)
    q, k, v = torch.unbind(qkv, 2)
    if attention.q_pool:
        q = do_pool(q.reshape(b, h, w, -1), attention.q_pool)
        h, w = q.shape[1:3]
        q = q.reshape(b, h * w, attention.num_heads, -1)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    queries, keys = q.shape[2], k.shape[2]
    sdpa = F.scaled_dot_product_attention
    if b * queries * keys <= ATTENTION_STEP:
        out = sdpa(q, k, v)
    elif b > 1:  # windows: several whole windows per step
        n = max(1, ATTENTION_STEP // (queries * keys))
        steps = [
            _step(point, i, sdpa, q[i : i + n], k[i : i + n], v[i : i + n]) for i in range(0, b, n)
        ]
        out = torch.cat(steps)
    else:  # one window (global attention): rows of queries per step
        n = max(1, ATTENTION_STEP // keys)
        steps = [_step(point, i, sdpa, q[:, :, i : i + n], k, v) for i in range(0, queries, n)]
        out = torch.cat(steps, dim=2)
    out = out.transpose(1, 2).reshape(b, h, w, -1)
    result: torch.Tensor = attention.proj(out)
    return result


def _step(
    point: Callable[[], None],
    start: int,
    call: Callable[..., torch.Tensor],
    *args: torch.Tensor,
) -> torch.Tensor:
    """One step of a call split in steps: a preemption point first, unless it is the first."""
    if start:
        point()
    return call(*args)


def _linear_in_steps(
    linear: torch.nn.Linear, whole: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """`linear(x)` in steps of rows (tokens) with a preemption point between steps, where a
    job can step aside, on the CPU, for a call longer than LINEAR_STEP."""
    point = _point()
    rows = x.numel() // linear.in_features
    fits = max(1, LINEAR_STEP // (linear.in_features * linear.out_features))
    n = max(MIN_ROWS, 1 << (fits.bit_length() - 1))  # hiera's token counts are powers of two
    if point is None or x.device.type != "cpu" or rows <= n:
        return whole(x)
    flat = x.reshape(rows, linear.in_features)
    out = torch.cat([_step(point, i, whole, flat[i : i + n]) for i in range(0, rows, n)])
    return out.reshape(*x.shape[:-1], linear.out_features)
