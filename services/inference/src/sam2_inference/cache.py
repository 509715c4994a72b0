"""The image-embedding cache: what the image encoder produced, kept by (tenant, image_id).

A hit skips the encoder entirely, which is most of a click's cost. Entries are keyed by the
caller's namespace so tenants never share entries (nor learn what others uploaded), and the
cache is an LRU bounded by the bytes its tensors and pixels occupy.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from sam2_contract.models import CacheStats


@dataclass(frozen=True, slots=True)
class CachedImage:
    """One image's pixels and SAM2 features, as `SAM2ImagePredictor.set_image` leaves them."""

    pixels: npt.NDArray[np.uint8]
    features: dict[str, Any]
    nbytes: int = field(init=False)

    def __post_init__(self) -> None:
        tensors = [self.features["image_embed"], *self.features["high_res_feats"]]
        size = sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))
        object.__setattr__(self, "nbytes", size + self.pixels.nbytes)

    @property
    def orig_hw(self) -> tuple[int, int]:
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


class EmbeddingCache:
    """A thread-safe LRU of CachedImage, bounded by bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str], CachedImage] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._lock = threading.Lock()

    def get(self, namespace: str, image_id: str) -> CachedImage | None:
        key = (namespace, image_id)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return entry

    def put(self, namespace: str, image_id: str, entry: CachedImage) -> None:
        """Store an entry, evicting the least recently used until it fits; one that can never
        fit is not stored."""
        if entry.nbytes > self.max_bytes:
            return
        key = (namespace, image_id)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            while self._entries and self._bytes + entry.nbytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.nbytes
                self._evictions += 1
            self._entries[key] = entry
            self._bytes += entry.nbytes

    def __contains__(self, key: tuple[str, str]) -> bool:
        with self._lock:
            return key in self._entries

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                entries=len(self._entries),
                bytes=self._bytes,
                max_bytes=self.max_bytes,
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
            )
