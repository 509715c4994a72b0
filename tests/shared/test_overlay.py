"""The rendered overlay: the image with its masks and prompts drawn, small enough to glance at."""

from __future__ import annotations

import numpy as np
from sam2_contract.overlay import (
    ALPHA,
    FOREGROUND,
    MAX_SIDE,
    PALETTE,
    decode_overlay,
    preview_size,
    render_overlay,
)


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pixels = np.full((40, 60, 3), 100, dtype=np.uint8)
    first = np.zeros((40, 60), dtype=bool)
    first[5:25, 5:35] = True
    second = np.zeros((40, 60), dtype=bool)
    second[28:38, 40:58] = True
    return pixels, first, second


def test_masks_are_tinted_in_their_own_colours_and_outlined() -> None:
    pixels, first, second = _scene()
    out = decode_overlay(render_overlay(pixels, [first, second]))
    assert out.shape == (40, 60, 3)  # small images keep their size
    tinted = np.round(100 * (1 - ALPHA) + np.asarray(PALETTE[0]) * ALPHA)
    assert np.abs(out[15, 20].astype(int) - tinted).max() <= 1  # inside the first mask
    assert tuple(out[5, 20]) == PALETTE[0]  # its boundary, solid
    assert tuple(out[33, 40]) == PALETTE[1]  # the second mask's left edge
    assert tuple(out[1, 1]) == (100, 100, 100)  # outside every mask: the image
    assert tuple(out[39, 0]) == (100, 100, 100)


def test_prompts_are_drawn_on_top() -> None:
    pixels, first, _ = _scene()
    out = decode_overlay(render_overlay(pixels, [first], points=[[20, 15]], labels=[1]))
    assert tuple(out[15, 20]) == FOREGROUND


def test_a_large_image_gives_a_preview_whose_long_side_is_bounded() -> None:
    pixels = np.zeros((300, 3000, 3), dtype=np.uint8)
    mask = np.zeros((300, 3000), dtype=bool)
    mask[:, 1500:] = True
    for image_format in ("png", "jpeg"):
        out = decode_overlay(render_overlay(pixels, [mask], image_format=image_format))
        assert out.shape == (*preview_size(300, 3000), 3) == (102, MAX_SIDE, 3)
        assert out[50, 100].max() < 20  # left half: the black image
        assert out[50, 900, 2] > 60  # right half: tinted blue
