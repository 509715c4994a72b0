"""Polygon masks: exact at tolerance 0, within 1% IoU at the default, rings the right way round."""

from __future__ import annotations

import numpy as np
import pytest
from sam2_contract import decode_mask, encode_mask
from sam2_contract.errors import ErrorCode, InvalidRequestError
from sam2_contract.polygons import EdgeBudget, encode_polygons, polygons_to_mask


def _random_masks() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    masks = [rng.random(tuple(rng.integers(1, 40, size=2))) < rng.random() for _ in range(150)]
    masks += [np.zeros((4, 6), bool), np.ones((6, 4), bool), np.ones((1, 1), bool)]
    return masks


def _shapes() -> dict[str, np.ndarray]:
    """Object-like masks: an ellipse with a hole and an island in it, a ring, touching discs."""
    yy, xx = np.mgrid[0:480, 0:640]
    ellipse = ((yy - 240) / 180) ** 2 + ((xx - 320) / 260) ** 2 <= 1
    ellipse[180:260, 250:330] = False
    ellipse[200:230, 270:300] = True
    radius = np.hypot(yy - 240, xx - 320)
    ring = (radius > 80) & (radius < 150)
    discs = (np.hypot(yy - 150, xx - 200) < 90) | (np.hypot(yy - 300, xx - 380) < 120)
    return {"ellipse with hole and island": ellipse, "ring": ring, "two discs": discs}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("mask", _random_masks(), ids=lambda m: f"{m.shape[0]}x{m.shape[1]}")
def test_tolerance_zero_gives_the_mask_back_exactly(mask: np.ndarray) -> None:
    polygons = encode_polygons(mask, tolerance=0)
    assert polygons.size == list(mask.shape)
    assert np.array_equal(polygons_to_mask(polygons), mask)


@pytest.mark.parametrize("name", list(_shapes()))
def test_real_shapes_at_the_default_tolerance(name: str) -> None:
    mask = _shapes()[name]
    exact = encode_polygons(mask, tolerance=0)
    simple = encode_polygons(mask)
    assert np.array_equal(polygons_to_mask(exact), mask)
    assert _iou(polygons_to_mask(simple), mask) >= 0.99
    corners = sum(len(p.exterior) + sum(map(len, p.holes)) for p in simple.polygons)
    assert corners * 5 < sum(len(p.exterior) + sum(map(len, p.holes)) for p in exact.polygons)


def test_pieces_holes_and_orientation() -> None:
    mask = _shapes()["ellipse with hole and island"]
    polygons = encode_polygons(mask, tolerance=0).polygons
    assert len(polygons) == 2  # the ellipse, and the island inside its hole
    outer, island = sorted(polygons, key=lambda p: -len(p.exterior))
    assert len(outer.holes) == 1
    assert island.holes == []

    def area(ring: list[list[int]]) -> float:
        x, y = np.asarray(ring, dtype=float).T
        return float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) / 2

    assert area(outer.exterior) > 0 > area(outer.holes[0])  # clockwise on screen; hole counter
    # The exterior's area is the pixel count inside it (corners, not centres).
    assert area(outer.exterior) + area(outer.holes[0]) == mask.sum() - 30 * 30
    assert area(island.exterior) == 30 * 30


def test_pixels_touching_at_a_corner_are_separate_pieces() -> None:
    mask = np.array([[1, 0], [0, 1]], dtype=bool)
    polygons = encode_polygons(mask, tolerance=0).polygons
    assert sorted(p.exterior for p in polygons) == [
        [[0, 0], [1, 0], [1, 1], [0, 1]],
        [[1, 1], [2, 1], [2, 2], [1, 2]],
    ]
    assert np.array_equal(polygons_to_mask(encode_polygons(mask, tolerance=0)), mask)


def test_the_polygon_format_round_trips_through_the_codecs() -> None:
    mask = _shapes()["ring"]
    encoded = encode_mask(mask, "polygon", tolerance=0)
    assert np.array_equal(decode_mask(encoded), mask)
    assert np.array_equal(decode_mask(encoded.model_dump()), mask)  # type: ignore[union-attr]


def test_one_answers_polygons_have_a_bounded_number_of_edges() -> None:
    noisy = np.random.default_rng(5).random((300, 400)) < 0.5  # about 120,000 edges
    budget = EdgeBudget(edges=200_000)
    encode_polygons(noisy, budget=budget)
    with pytest.raises(InvalidRequestError) as raised:
        encode_polygons(noisy, budget=budget)  # the second mask of the same answer
    assert raised.value.code == ErrorCode.TOO_COMPLEX_FOR_POLYGONS
    smooth = _shapes()["ring"]
    assert np.array_equal(polygons_to_mask(encode_polygons(smooth, 0, budget=EdgeBudget())), smooth)
