"""The image-embedding cache: what the image encoder produced, kept by (tenant, image_id).

A hit skips the encoder entirely, which is most of a click's cost. Entries are keyed by the
caller's namespace so tenants never share entries (nor learn what others uploaded), and the
cache is an LRU bounded by the bytes its tensors and pixels occupy.

Each entry also keeps the low-resolution logits of the last MASKS_PER_IMAGE masks answered on
it, under unguessable `mask_id`s, so that a later click can refine one (`refine`); they count
in the byte bound and go with their image.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from sam2_contract.models import MASK_ID_HEX_LENGTH, MASK_ID_PREFIX, CacheStats

MASKS_PER_IMAGE = 16  # 256 KiB of float32 logits each


@dataclass(frozen=True, slots=True)
class CachedImage:
    """One image's pixels and SAM2 features, as `SAM2ImagePredictor.set_image` leaves them,
    and the logits of masks answered on it, by `mask_id` (oldest first)."""

    pixels: npt.NDArray[np.uint8]
    features: dict[str, Any]
    masks: OrderedDict[str, torch.Tensor] = field(default_factory=OrderedDict)
    _base_nbytes: int = field(init=False)

    def __post_init__(self) -> None:
        tensors = [self.features["image_embed"], *self.features["high_res_feats"]]
        size = sum(_nbytes(t) for t in tensors if isinstance(t, torch.Tensor))
        object.__setattr__(self, "_base_nbytes", size + self.pixels.nbytes)

    @property
    def nbytes(self) -> int:
        return self._base_nbytes + sum(_nbytes(t) for t in self.masks.values())

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
            if old is not None:  # two requests embedded the same image: keep both's masks
                self._bytes -= old.nbytes
                entry.masks.update(old.masks)
            self._entries[key] = entry
            self._bytes += entry.nbytes
            self._evict(keep=key)

    def put_mask(self, namespace: str, image_id: str, logits: torch.Tensor) -> str | None:
        """Keep a mask's low-resolution logits with its image; its new `mask_id`, or None
        when the image is not cached (so neither can the mask be)."""
        key = (namespace, image_id)
        mask_id = MASK_ID_PREFIX + secrets.token_hex(MASK_ID_HEX_LENGTH // 2)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            entry.masks[mask_id] = logits
            self._bytes += _nbytes(logits)
            self._entries.move_to_end(key)
            self._evict(keep=key)
            while entry.masks and (
                len(entry.masks) > MASKS_PER_IMAGE or self._bytes > self.max_bytes
            ):
                _, dropped = entry.masks.popitem(last=False)
                self._bytes -= _nbytes(dropped)
            return mask_id if mask_id in entry.masks else None

    def get_mask(self, namespace: str, image_id: str, mask_id: str) -> torch.Tensor | None:
        """The logits kept under `mask_id` for this image and namespace, if still there."""
        with self._lock:
            entry = self._entries.get((namespace, image_id))
            return None if entry is None else entry.masks.get(mask_id)

    def _evict(self, *, keep: tuple[str, str]) -> None:
        """Drop least recently used entries, never `keep`, until the bytes fit."""
        while self._bytes > self.max_bytes and len(self._entries) > 1:
            victim = next(iter(self._entries))
            if victim == keep:
                self._entries.move_to_end(keep)
                continue
            self._bytes -= self._entries.pop(victim).nbytes
            self._evictions += 1

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


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()
