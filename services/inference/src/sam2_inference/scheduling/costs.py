"""What model work costs here, measured as it runs, what an automatic-mode job will cost, and
how many prompts its decoder batches hold.

Automatic mode's work follows from its knobs: crop layer i has (2^i)^2 crops, each an image-
encoder pass (the first is skipped when the image's embedding is cached) and a grid of
(points_per_side / crop_n_points_downscale_factor^i)^2 prompts through the mask decoder. The
engine keeps moving averages of one encoder pass and of one prompt in an automatic-mode batch
(decoder plus mask post-processing), from every request it runs and from its warm-up, so the
estimate fits this device and model. Before a job starts the engine compares its estimate with
the time left before the request's deadline and refuses what cannot finish (422
`over_time_budget`, naming the largest `points_per_side` that would).

A decoder batch's size is not taken from those times. sam2's mask decoder gives other last
float32 bits for the same prompt in batches of other sizes (its small matrix products round by
shape; a prompt's result does not depend on the other prompts in a batch of the same size), so
a size read off a clock would make the same request's masks depend on the machine's load. The
size is fixed per device kind instead (`slice_prompts`): one prompt on a CPU, where one prompt
already takes about a click's time (so a click never waits for more than one, and less, as the
decoder steps aside between its stages); on a GPU 128, where a batch's fixed cost (launching
the decoder's kernels: 3.6 ms for one prompt on an H200, bench/README.md) would make one-prompt
batches hundreds of times slower while a click would wait no less.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

SMOOTHING = 0.3  # weight of the newest measurement
SLICE_PROMPTS = {"cpu": 1, "gpu": 128}
"""Prompts per automatic-mode decoder batch where the setting says `auto`, by device kind."""


def slice_prompts(setting: int | Literal["auto"], device_type: str) -> int:
    """Prompts automatic mode's decoder batches hold at most on this device (0: as asked)."""
    if setting != "auto":
        return setting
    return SLICE_PROMPTS["cpu" if device_type == "cpu" else "gpu"]


@dataclass(frozen=True, slots=True)
class AutoWork:
    """The model work of one automatic-mode request."""

    encoder_passes: int
    prompts: int


def auto_work(
    points_per_side: int, crop_n_layers: int, downscale: int, *, cached: bool
) -> AutoWork:
    """Encoder passes and decoder prompts of an automatic-mode job (sam2's point grids)."""
    passes = prompts = 0
    for layer in range(crop_n_layers + 1):
        crops = (2**layer) ** 2
        per_side = int(points_per_side / (downscale**layer))
        passes += crops
        prompts += crops * per_side * per_side
    return AutoWork(encoder_passes=passes - int(cached), prompts=prompts)


class Costs:
    """Moving averages of measured model times on this engine's device."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.encoder_ms: float | None = None
        self.prompt_ms: float | None = None

    def observe_encoder(self, ms: float) -> None:
        with self._lock:
            self.encoder_ms = _mix(self.encoder_ms, ms)

    def observe_batch(self, ms: float, prompts: int) -> None:
        if prompts > 0:
            with self._lock:
                self.prompt_ms = _mix(self.prompt_ms, ms / prompts)

    def estimate_ms(self, work: AutoWork) -> float | None:
        """The job's model time, or None before anything was measured."""
        if self.encoder_ms is None or self.prompt_ms is None:
            return None
        return work.encoder_passes * self.encoder_ms + work.prompts * self.prompt_ms


def _mix(old: float | None, new: float) -> float:
    return new if old is None else (1 - SMOOTHING) * old + SMOOTHING * new
