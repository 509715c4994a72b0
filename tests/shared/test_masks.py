"""Mask codecs: RLE is byte-for-byte pycocotools, and every format round-trips."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as coco
from sam2_contract import RLEMask, decode_mask, decode_rle, encode_mask, encode_rle
from sam2_contract.masks import (
    decode_png,
    encode_png,
    mask_from_counts,
    rle_counts,
    rle_from_counts,
)


def _random_masks() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    masks = []
    for _ in range(200):
        height, width = rng.integers(1, 80, size=2)
        masks.append(rng.random((height, width)) < rng.random())
    masks += [np.zeros((5, 7), bool), np.ones((7, 5), bool), np.zeros((1, 1), bool)]
    big = np.zeros((768, 1024), bool)
    big[100:700, 50:900] = True
    big[0, 0] = True  # forces a leading zero-length run and large deltas
    masks.append(big)
    return masks


# pycocotools 2.0 decodes through an __array__ that numpy 2 flags as deprecated.
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
@pytest.mark.parametrize("mask", _random_masks(), ids=lambda m: f"{m.shape[0]}x{m.shape[1]}")
def test_rle_equals_pycocotools_and_round_trips(mask: np.ndarray) -> None:
    ours = encode_rle(mask)
    theirs = coco.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert ours.counts == theirs["counts"].decode("ascii")
    assert ours.size == list(theirs["size"])
    assert np.array_equal(decode_rle(ours), mask)
    assert np.array_equal(coco.decode({"size": ours.size, "counts": ours.counts.encode()}), mask)
    assert rle_from_counts(mask.shape, rle_counts(mask).tolist()) == ours  # from runs alone
    assert np.array_equal(mask_from_counts(mask.shape, rle_counts(mask).tolist()), mask)


def test_png_round_trips_and_is_one_bit() -> None:
    mask = np.random.default_rng(1).random((33, 65)) < 0.3
    data = encode_png(mask)
    assert np.array_equal(decode_png(data), mask)
    assert data.startswith("iVBOR")  # base64 of the PNG signature


@pytest.mark.parametrize("fmt", ["bool2d", "rle", "png"])
def test_decode_mask_reads_every_format(fmt: str) -> None:
    mask = np.random.default_rng(2).random((9, 14)) < 0.5
    encoded = encode_mask(mask, fmt)  # type: ignore[arg-type]
    as_json = encoded.model_dump() if isinstance(encoded, RLEMask) else encoded
    assert np.array_equal(decode_mask(as_json), mask)


def test_bool2d_is_the_original_nested_lists() -> None:
    mask = np.array([[True, False, False], [False, True, True]])
    assert encode_mask(mask, "bool2d") == [[True, False, False], [False, True, True]]


def test_rle_rejects_counts_that_do_not_cover_the_mask() -> None:
    with pytest.raises(ValueError, match="cover"):
        decode_rle(RLEMask(size=[4, 4], counts=encode_rle(np.zeros((3, 3), bool)).counts))
