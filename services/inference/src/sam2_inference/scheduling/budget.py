"""The memory a request's model work needs, estimated from its knobs before it starts.

One prompt through SAM2's mask decoder holds copies of the image embedding and the high-
resolution features (256x64x64 + 32x256x256 + 64x128x128 floats) and its attention
activations: about 27 MiB per prompt measured on the CPU in float32, 30 MiB counted
(tests/inference/scheduling/test_budget.py checks the estimate against measured peaks), the same for
every model size since they share the decoder. Each prompt's three candidate masks are then
upsampled to the image's size (float logits, then booleans). Automatic mode runs
`points_per_batch` prompts at once, so its peak is that many prompts: `points_per_batch` is
capped by the budget rather than trusted. On top comes a fixed part (the point grids, crops and
buffers of the request: about 80 MiB measured, 128 MiB counted).
"""

from __future__ import annotations

import os

import torch

DECODER_BYTES_PER_PROMPT = 30 << 20
MASK_BYTES_PER_PIXEL = 3 * (4 + 1)  # three candidates, float32 logits and a boolean copy
FIXED_BYTES = 128 << 20
BUDGET_SHARE = 0.5  # of the device's memory, the rest for the model, the cache and the process


def bytes_per_prompt(height: int, width: int) -> int:
    """Peak memory one prompt adds while its batch runs."""
    return DECODER_BYTES_PER_PROMPT + MASK_BYTES_PER_PIXEL * height * width


def request_bytes(prompts: int, height: int, width: int) -> int:
    """Peak memory of a request running `prompts` prompts at once on an image of this size."""
    return FIXED_BYTES + prompts * bytes_per_prompt(height, width)


def prompts_that_fit(budget_bytes: int, height: int, width: int) -> int:
    """How many prompts may run at once within the budget (0: not even one)."""
    return max(0, (budget_bytes - FIXED_BYTES) // bytes_per_prompt(height, width))


def default_budget(device: torch.device) -> int:
    """Half the device's memory: the GPU's, or the machine's for the CPU. Its total, not what
    is free at the moment, so that automatic mode's batches (and with them its masks' last
    bits) do not depend on what else held memory when the budget was first asked for."""
    if device.type == "cuda":
        _, total = torch.cuda.mem_get_info(device)
    else:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(total * BUDGET_SHARE)
