"""What model work costs here, measured as it runs, and what an automatic-mode job will cost.

Automatic mode's work follows from its knobs: crop layer i has (2^i)^2 crops, each an image-
encoder pass (the first is skipped when the image's embedding is cached) and a grid of
(points_per_side / crop_n_points_downscale_factor^i)^2 prompts through the mask decoder. The
engine keeps moving averages of one encoder pass and of one prompt in an automatic-mode batch
(decoder plus mask post-processing), from every request it runs and from its warm-up, so the
estimate fits this device and model. Before a job starts the engine compares its estimate with
the time left before the request's deadline and refuses what cannot finish (422
`over_time_budget`, naming the largest `points_per_side` that would), and it sizes decoder
batches so that one batch takes about `auto_slice_ms`, or a click's own model time if that is
shorter: a click that comes while a batch runs waits at most about its own time again (and
less, as batches also step aside between the decoder's stages).

A batch's time is fitted as a fixed part plus a part per prompt, from the recent batches of
different sizes (the warm-up runs two). On a CPU the fixed part is nil. On a GPU it is most of a
small batch (launching the decoder's kernels): there batches never shrink below the size whose
prompts cost as much as that fixed part, or an automatic-mode job of 1-prompt batches would
take hundreds of times its work while a click would wait no less.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

SMOOTHING = 0.3  # weight of the newest measurement
RECENT_BATCHES = 16  # the batches the fixed-plus-per-prompt fit is made from


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
        self.click_ms: float | None = None
        self._batches: deque[tuple[int, float]] = deque(maxlen=RECENT_BATCHES)

    def observe_encoder(self, ms: float) -> None:
        with self._lock:
            self.encoder_ms = _mix(self.encoder_ms, ms)

    def observe_batch(self, ms: float, prompts: int) -> None:
        if prompts > 0:
            with self._lock:
                self.prompt_ms = _mix(self.prompt_ms, ms / prompts)
                self._batches.append((prompts, ms))

    def batch_fit(self) -> tuple[float, float] | None:
        """A batch's fixed ms and ms per prompt, fitted (least squares) to the recent batches;
        None until they have two sizes."""
        with self._lock:
            batches = list(self._batches)
        if len({n for n, _ in batches}) < 2:
            return None
        mean_n = sum(n for n, _ in batches) / len(batches)
        mean_t = sum(t for _, t in batches) / len(batches)
        spread = sum((n - mean_n) ** 2 for n, _ in batches)
        per_prompt = sum((n - mean_n) * (t - mean_t) for n, t in batches) / spread
        fixed = mean_t - per_prompt * mean_n
        if fixed < 0:  # noise on a device with no fixed cost
            return 0.0, mean_t / mean_n
        return fixed, per_prompt

    def observe_click(self, ms: float) -> None:
        """The model time of a click on a cached embedding (prompt encoder and decoder)."""
        with self._lock:
            self.click_ms = _mix(self.click_ms, ms)

    def estimate_ms(self, work: AutoWork) -> float | None:
        """The job's model time, or None before anything was measured."""
        if self.encoder_ms is None or self.prompt_ms is None:
            return None
        return work.encoder_passes * self.encoder_ms + work.prompts * self.prompt_ms

    def slice_ms(self, setting_ms: float) -> float:
        """How long one automatic-mode batch should take: the setting, or a click's model
        time if that is shorter (0: batches are not sliced)."""
        if setting_ms <= 0 or self.click_ms is None:
            return setting_ms
        return min(setting_ms, self.click_ms)

    def batch_for(self, slice_ms: float) -> int | None:
        """Prompts per decoder batch that take about `slice_ms` (None: not measured yet)."""
        if self.prompt_ms is None or slice_ms <= 0:
            return None
        fit = self.batch_fit()
        if fit is None:
            return max(1, int(slice_ms // self.prompt_ms))
        fixed, per_prompt = fit
        if per_prompt <= 0:
            return None  # time does not grow with the batch: as asked
        fitting = int((slice_ms - fixed) // per_prompt) if slice_ms > fixed else 1
        return max(1, fitting, int(fixed // per_prompt))


def _mix(old: float | None, new: float) -> float:
    return new if old is None else (1 - SMOOTHING) * old + SMOOTHING * new
