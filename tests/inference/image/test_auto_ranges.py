"""Automatic mode's parameters over their documented ranges: every combination is run or
refused with a 4xx that names it, never a 5xx (issue 34: points_per_side 1 with a crop layer
and factor 8 was a division by zero inside sam2, answered 500)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sam2.automatic_mask_generator import build_all_layer_point_grids
from sam2.utils.amg import generate_crop_boxes
from sam2_contract.errors import InvalidRequestError
from sam2_contract.models import SegmentRequest
from sam2_contract.validation import parse_segment_request
from sam2_contract.wire import DEADLINE_HEADER
from support import b64, encode, post_segment, scene

IMAGE = b64(encode(scene(40, 60)))
FIELDS = SegmentRequest.model_fields


def _range(name: str) -> range:
    """A documented integer range, from the contract itself (its ge/le)."""
    low = high = None
    for rule in FIELDS[name].metadata:
        low = getattr(rule, "ge", low)
        high = getattr(rule, "le", high)
    assert low is not None, name
    assert high is not None, name
    return range(low, high + 1)


def test_every_accepted_grid_combination_builds_in_sam2_and_every_other_is_named() -> None:
    """All 4,096 (points_per_side, crop_n_layers, downscale factor) combinations: accepted ones
    build sam2's point grids and crop boxes; refused ones are a 422 invalid_parameter whose
    detail names the layer and the fix."""
    accepted = 0
    refusals: list[tuple[int, int, int, InvalidRequestError]] = []
    for side, layers, factor in itertools.product(
        _range("points_per_side"),
        _range("crop_n_layers"),
        _range("crop_n_points_downscale_factor"),
    ):
        request = {"image": IMAGE, "mode": "auto", "points_per_side": side}
        request |= {"crop_n_layers": layers, "crop_n_points_downscale_factor": factor}
        try:
            parse_segment_request(request)
        except InvalidRequestError as exc:
            refusals.append((side, layers, factor, exc))
            continue
        accepted += 1
        grids = build_all_layer_point_grids(side, layers, factor)
        assert len(grids) == layers + 1
        assert all(len(grid) for grid in grids)
    assert accepted
    assert refusals
    for side, layers, factor, refused in refusals:
        assert refused.code == "invalid_parameter"
        assert f"crop layer {layers}" in refused.detail
        assert "points_per_side >=" in refused.detail
        with pytest.raises(ZeroDivisionError):  # what sam2 would have done with it
            build_all_layer_point_grids(side, layers, factor)
    for ratio in (0.0, 0.5, 0.999):
        boxes, layer_of = generate_crop_boxes((40, 60), 3, ratio)
        assert len(boxes) == 1 + 4 + 16 + 64
        assert len(layer_of) == len(boxes)


@given(
    side=st.one_of(st.integers(1, 3), st.integers(1, 128)),  # small grids run, large are refused
    layers=st.integers(0, 3),
    factor=st.integers(1, 8),
    overlap=st.floats(0, 0.999),
    iou=st.floats(0, 1),
    stability=st.floats(0, 1),
    offset=st.floats(0, 100),
    nms=st.floats(0, 1),
    area=st.integers(0, 2000),
    m2m=st.booleans(),
)
@example(  # a crop layer that runs (its grid of 1 point a side), as sam2 builds it
    side=2,
    layers=1,
    factor=2,
    overlap=0.5,
    iou=0.0,
    stability=0.0,
    offset=1.0,
    nms=0.7,
    area=0,
    m2m=False,
)
@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_automatic_mode_over_its_documented_ranges_never_answers_5xx(
    client: TestClient, **knobs: Any
) -> None:
    """Sampled combinations, sent to the service with a 30 s deadline (so the large grids are
    refused as over their time budget instead of run): 200, or a 4xx problem with a code."""
    request = {
        "image": IMAGE,
        "mode": "auto",
        "points_per_side": knobs["side"],
        "crop_n_layers": knobs["layers"],
        "crop_n_points_downscale_factor": knobs["factor"],
        "crop_overlap_ratio": knobs["overlap"],
        "pred_iou_thresh": knobs["iou"],
        "stability_score_thresh": knobs["stability"],
        "stability_score_offset": knobs["offset"],
        "box_nms_thresh": knobs["nms"],
        "crop_nms_thresh": knobs["nms"],
        "min_mask_region_area": knobs["area"],
        "use_m2m": knobs["m2m"],
        "mask_format": "rle",
    }
    answer = post_segment(client, request, headers={DEADLINE_HEADER: "30000"})
    assert answer.status_code < 500, (request | {"image": "..."}, answer.text)
    if answer.status_code != 200:
        assert answer.json()["code"], answer.text
