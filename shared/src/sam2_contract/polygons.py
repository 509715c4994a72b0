"""Masks as polygons: outer boundaries and holes along pixel edges, in image coordinates.

A polygon's vertices are pixel corners: pixel (row r, column c) is the unit square from (c, r) to
(c + 1, r + 1), so a polygon covers exactly the squares of its pixels, and its area is their
count. Outer rings run clockwise on screen (y down), holes counter-clockwise; pixels that touch
only at a corner belong to separate polygons (4-connectivity), so every ring is simple.

`tolerance` simplifies each ring with Douglas-Peucker: no dropped vertex lies farther than
`tolerance` pixels from the simplified ring. At 0 nothing is dropped but the vertices inside
straight runs, and `polygons_to_mask` gives the mask back exactly (it fills the pixels whose
centres lie inside, even-odd). Pure NumPy, like the other codecs.

The work grows with the boundary: a smooth object has a few thousand unit edges, a noisy mask
(random weights give them) hundreds of thousands. One answer's polygons may have at most
MAX_EDGES edges in all (`EdgeBudget`, checked before any ring is traced); more is a
`too_complex_for_polygons` error that says to ask for RLE.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sam2_contract.errors import ErrorCode, InvalidRequestError
from sam2_contract.models import Polygon, PolygonMask

BoolMask = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

DEFAULT_TOLERANCE = 1.0
MAX_EDGES = 500_000  # about 2-4 s of tracing on a 2-core CPU
# Directions of travel (y down): +x, +y, -x, -y. The mask is always on the right-hand side.
_STEPS = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.int64)


class EdgeBudget:
    """The unit edges one answer's polygons may still have."""

    def __init__(self, edges: int | None = None) -> None:
        self.left = MAX_EDGES if edges is None else edges

    def spend(self, edges: int) -> None:
        if edges > self.left:
            raise InvalidRequestError(
                f"these masks' polygons would have more than {MAX_EDGES:,} edges",
                code=ErrorCode.TOO_COMPLEX_FOR_POLYGONS,
            )
        self.left -= edges


def encode_polygons(
    mask: BoolMask, tolerance: float = DEFAULT_TOLERANCE, *, budget: EdgeBudget | None = None
) -> PolygonMask:
    """The polygons of a HxW mask, each an outer ring and the holes inside it. `budget`: the
    edges left to the answer this mask belongs to (a fresh one when not given)."""
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    starts, directions = _edges(mask)
    (budget or EdgeBudget()).spend(len(starts))
    cycles = _cycles(starts, directions, width)
    rings = [_corners(starts[cycle], directions[cycle]) for cycle in cycles]
    areas = [_signed_area(ring) for ring in rings]
    parents = _parents(cycles, areas, starts, directions)
    simplified = [_simplify(ring, tolerance) for ring in rings]
    polygons: dict[int, Polygon] = {}
    for index, ring in enumerate(simplified):
        if areas[index] > 0 and len(ring) >= 3:
            polygons[index] = Polygon(exterior=ring.tolist(), holes=[])
    for index, ring in enumerate(simplified):
        owner = polygons.get(parents[index])
        if areas[index] < 0 and owner is not None and len(ring) >= 3:
            owner.holes.append(ring.tolist())
    return PolygonMask(size=[height, width], polygons=list(polygons.values()))


def polygons_to_mask(polygons: PolygonMask) -> BoolMask:
    """Rasterise: the pixels whose centres lie inside (even-odd over every ring)."""
    height, width = polygons.size
    rings = [ring for p in polygons.polygons for ring in (p.exterior, *p.holes)]
    edges = [
        np.stack([points, np.roll(points, -1, axis=0)], axis=1)
        for points in (np.asarray(ring, dtype=np.float64).reshape(-1, 2) for ring in rings)
        if len(points) >= 3
    ]
    filled = np.zeros((height, width + 1), dtype=np.int32)
    if edges:
        _fill_rows(np.concatenate(edges), filled, width)
    return np.cumsum(filled, axis=1)[:, :width] > 0


def _fill_rows(edges: npt.NDArray[np.float64], filled: npt.NDArray[np.int32], width: int) -> None:
    """Mark the spans between successive crossings of each pixel row's centre line."""
    (x0, y0), (x1, y1) = edges[:, 0].T, edges[:, 1].T
    low, high = np.minimum(y0, y1), np.maximum(y0, y1)
    first = np.ceil(low - 0.5).astype(np.int64)  # rows whose centre y + 0.5 is in [low, high)
    last = np.ceil(high - 0.5).astype(np.int64)
    first = np.clip(first, 0, filled.shape[0])
    last = np.clip(last, 0, filled.shape[0])
    counts = np.maximum(last - first, 0)
    owner = np.repeat(np.arange(len(edges)), counts)
    rows = (
        np.repeat(first, counts)
        + np.arange(counts.sum())
        - np.repeat(np.cumsum(counts) - counts, counts)
    )
    centre = rows + 0.5
    xs = x0[owner] + (centre - y0[owner]) * (x1[owner] - x0[owner]) / (y1[owner] - y0[owner])
    order = np.lexsort((xs, rows))
    rows, xs = rows[order], xs[order]
    columns = np.clip(np.ceil(xs - 0.5).astype(np.int64), 0, width)
    # Crossings come in pairs per row (closed rings): fill [enter, leave) of each pair.
    np.add.at(filled, (rows[0::2], columns[0::2]), 1)
    np.add.at(filled, (rows[1::2], columns[1::2]), -1)


def _edges(mask: BoolMask) -> tuple[IntArray, IntArray]:
    """Every unit edge between a mask pixel and a non-mask pixel, as its start corner (x, y)
    and its direction, oriented with the mask on its right."""
    padded = np.pad(mask, 1)
    vertical = padded[1:, 1:-1] != padded[:-1, 1:-1]  # (h + 1) x w: edges along y = row
    below = padded[1:, 1:-1]
    ys, xs = np.nonzero(vertical)
    top = below[ys, xs]  # the mask is below: travel +x from (x, y), else -x from (x + 1, y)
    h_start = np.stack([np.where(top, xs, xs + 1), ys], axis=1)
    h_dir = np.where(top, 0, 2)
    horizontal = padded[1:-1, 1:] != padded[1:-1, :-1]  # h x (w + 1): edges along x = column
    right = padded[1:-1, 1:]
    ys, xs = np.nonzero(horizontal)
    left_edge = right[ys, xs]  # the mask is to the right: travel -y from (x, y + 1), else +y
    v_start = np.stack([xs, np.where(left_edge, ys + 1, ys)], axis=1)
    v_dir = np.where(left_edge, 3, 1)
    return (
        np.concatenate([h_start, v_start]).astype(np.int64),
        np.concatenate([h_dir, v_dir]).astype(np.int64),
    )


def _cycles(starts: IntArray, directions: IntArray, width: int) -> list[IntArray]:
    """The edges linked into closed rings: from each edge's end, the edge that turns right,
    else straight on, else left (right first keeps corner-touching pixels apart)."""
    if not len(starts):
        return []
    stride = width + 2
    corner = starts[:, 1] * stride + starts[:, 0]
    ends = starts + _STEPS[directions]
    end_corner = ends[:, 1] * stride + ends[:, 0]
    order = np.lexsort((directions, corner))
    keys = corner[order] * 4 + directions[order]
    following = np.full(len(starts), -1, dtype=np.int64)
    for turn in (1, 0, 3):  # right, straight, left
        wanted = end_corner * 4 + (directions + turn) % 4
        at = np.clip(np.searchsorted(keys, wanted), 0, len(keys) - 1)
        found = (keys[at] == wanted) & (following < 0)
        following[found] = order[at[found]]
    successor = following.tolist()
    seen = np.zeros(len(starts), dtype=bool)
    cycles = []
    for first in range(len(starts)):
        if seen[first]:
            continue
        cycle = [first]
        seen[first] = True
        edge = successor[first]
        while edge != first:
            cycle.append(edge)
            seen[edge] = True
            edge = successor[edge]
        cycles.append(np.asarray(cycle, dtype=np.int64))
    return cycles


def _corners(starts: IntArray, directions: IntArray) -> IntArray:
    """A ring's vertices: the starts of the edges where the direction changes."""
    turns = directions != np.roll(directions, 1)
    corners: IntArray = starts[turns]
    return corners


def _signed_area(ring: IntArray) -> float:
    """Positive for outer rings (clockwise on screen), negative for holes."""
    x, y = ring[:, 0].astype(np.float64), ring[:, 1].astype(np.float64)
    return float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) / 2


def _parents(
    cycles: Sequence[IntArray], areas: Sequence[float], starts: IntArray, directions: IntArray
) -> list[int]:
    """For each hole, the outer ring around it: the nearest boundary to the left of the hole's
    left side belongs to that outer ring or to another hole of the same piece."""
    parents = list(range(len(cycles)))
    if not any(area < 0 for area in areas):
        return parents
    ring_of = np.empty(len(starts), dtype=np.int64)
    for index, cycle in enumerate(cycles):
        ring_of[cycle] = index
    vertical = np.flatnonzero(directions % 2 == 1)
    row = np.minimum(starts[vertical, 1], starts[vertical, 1] + _STEPS[directions[vertical], 1])
    order = vertical[np.lexsort((starts[vertical, 0], row))]
    position = np.empty(len(starts), dtype=np.int64)
    position[order] = np.arange(len(order))
    for index, area in enumerate(areas):
        if area >= 0:
            continue
        own = vertical[(ring_of[vertical] == index) & (directions[vertical] == 1)][0]
        parents[index] = int(ring_of[order[position[own] - 1]])
    for index in range(len(areas)):  # a hole found beside a sibling hole: up to the outer
        seen = {index}
        while areas[parents[index]] < 0 and parents[index] not in seen:
            seen.add(parents[index])
            parents[index] = parents[parents[index]]
    return parents


def _simplify(ring: IntArray, tolerance: float) -> IntArray:
    """Douglas-Peucker on a closed ring, split at its first vertex and the one farthest away."""
    if tolerance <= 0 or len(ring) <= 4:
        return ring
    far = int(np.argmax(((ring - ring[0]) ** 2).sum(axis=1)))
    first = _douglas_peucker(ring[: far + 1], tolerance)
    second = _douglas_peucker(np.concatenate([ring[far:], ring[:1]]), tolerance)
    return np.concatenate([first[:-1], second[:-1]])


def _douglas_peucker(line: IntArray, tolerance: float) -> IntArray:
    keep = np.zeros(len(line), dtype=bool)
    keep[[0, -1]] = True
    stack = [(0, len(line) - 1)]
    points = line.astype(np.float64)
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        between = points[a + 1 : b]
        start, end = points[a], points[b]
        segment = end - start
        length = float(np.hypot(*segment))
        offsets = between - start
        if length == 0:
            distances = np.hypot(offsets[:, 0], offsets[:, 1])
        else:
            distances = np.abs(segment[0] * offsets[:, 1] - segment[1] * offsets[:, 0]) / length
        worst = int(np.argmax(distances))
        if distances[worst] > tolerance:
            split = a + 1 + worst
            keep[split] = True
            stack += [(a, split), (split, b)]
    return line[keep]
