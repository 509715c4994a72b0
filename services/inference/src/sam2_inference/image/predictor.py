"""sam2's predictor and mask generator, with the hooks this service needs.

`CachingPredictor.set_image` looks in the embedding cache first (the automatic mask generator
calls it once per crop, so auto mode reuses a cached embedding too); `Generator` runs a hook
before each crop and decoder batch (deadline, cancellation, clicks first).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
from sam2.modeling.sam2_base import SAM2Base
from sam2.sam2_image_predictor import SAM2ImagePredictor
from sam2_contract.images import Pixels, image_id_for

from sam2_inference.image.cache import CachedImage, EmbeddingCache
from sam2_inference.runtime import fastpath
from sam2_inference.scheduling.lock import Work


class CachingPredictor(SAM2ImagePredictor):  # type: ignore[misc]
    """A SAM2ImagePredictor whose `set_image` looks in the embedding cache first.

    The automatic mask generator calls `set_image` once per crop; going through this method
    means auto mode reuses a cached embedding too.
    """

    _cache: EmbeddingCache
    _namespace: str
    _known_pixels: Pixels
    _known_id: str
    _work: Work
    embed_ms: float
    encoder_runs: int

    def bind(
        self, cache: EmbeddingCache, namespace: str, image: tuple[Pixels, str], work: Work
    ) -> None:
        """Point this predictor at one request: its cache, tenant, (pixels, image_id) and
        work (whose clock times the encoder without the time it stepped aside)."""
        self.reset_predictor()
        self._cache = cache
        self._namespace = namespace
        self._known_pixels, self._known_id = image
        self._work = work
        self.embed_ms = 0.0
        self.encoder_runs = 0

    def set_image(self, image: Pixels) -> None:
        pixels = np.asarray(image)
        image_id = (
            self._known_id
            if fastpath.same_array(pixels, self._known_pixels)
            else image_id_for(pixels)
        )
        entry = self._cache.get(self._namespace, image_id)
        if entry is not None:
            self.use(entry)
            return
        started = self._work.clock_ms()
        super().set_image(pixels)
        self.embed_ms += self._work.clock_ms() - started
        self.encoder_runs += 1
        self._cache.put(self._namespace, image_id, CachedImage(pixels, self._features))

    def use(self, entry: CachedImage) -> None:
        """Restore the state `set_image` would have left, from a cache entry."""
        self.reset_predictor()
        self._orig_hw = [entry.orig_hw]
        self._features = entry.features
        self._is_image_set = True


class Generator(SAM2AutomaticMaskGenerator):  # type: ignore[misc]
    """SAM2AutomaticMaskGenerator with a hook before each crop and decoder batch (deadline,
    cancellation, clicks first), answering zero masks where sam2 1.1.0 fails: with crop
    layers and no mask surviving the thresholds, it takes the areas of an empty box tensor
    (an IndexError in torchvision's box_area)."""

    _kept: int
    fast: bool
    work: Work
    between_batches: Callable[[], None]
    observe_batch: Callable[[float, int], None]

    def generate(self, image: Pixels) -> list[dict[str, Any]]:
        self._kept = 0
        try:
            records: list[dict[str, Any]] = super().generate(image)
        except IndexError:
            if self._kept:
                raise
            return []
        return records

    def _process_crop(self, *args: Any) -> Any:
        self.between_batches()  # a crop starts with an image encoder run
        data = super()._process_crop(*args)
        self._kept += len(data["rles"])
        return data

    def _process_batch(self, points: Any, *args: Any, **kwargs: Any) -> Any:
        self.between_batches()
        started = self.work.clock_ms()  # stepping aside inside the decoder is not its time
        if self.fast and not self.use_m2m:
            data = fastpath.process_batch(self, points, *args)
        else:
            data = super()._process_batch(points, *args, **kwargs)
        self.observe_batch(self.work.clock_ms() - started, len(points))
        return data


class Predictors:
    """A predictor for each request on one model. Building one scripts its transforms (~10 ms),
    so the common case copies a template instead; copies share the model and transforms only."""

    def __init__(self, model: SAM2Base, device: torch.device, *, fast: bool) -> None:
        self._model = model
        self._device = device
        self._fast = fast
        self._template: CachingPredictor | None = None

    def get(
        self,
        cache: EmbeddingCache,
        namespace: str,
        image: tuple[Pixels, str, torch.Tensor | None],
        work: Work,
        *,
        hole_area: float = 0.0,
    ) -> CachingPredictor:
        """One request's predictor for (pixels, image_id, the pixels already on the device)."""
        pixels, image_id, on_device = image
        if hole_area:
            predictor = self._new(hole_area)
        else:
            if self._template is None:
                self._template = self._new(0.0)
            predictor = copy.copy(self._template)
        predictor.bind(cache, namespace, (pixels, image_id), work)
        if on_device is not None and isinstance(predictor._transforms, fastpath.DeviceTransforms):
            # this copy's own attribute: the template keeps its transforms
            predictor._transforms = fastpath.Uploaded(predictor._transforms, pixels, on_device)
        return predictor

    def _new(self, hole_area: float) -> CachingPredictor:
        predictor = CachingPredictor(
            self._model, max_hole_area=hole_area, max_sprinkle_area=hole_area
        )
        if self._fast:
            predictor._transforms = fastpath.DeviceTransforms(predictor._transforms, self._device)
        return predictor
