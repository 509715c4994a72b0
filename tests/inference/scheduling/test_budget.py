"""The memory budget: a request's model work is estimated before it starts, automatic mode's
`points_per_batch` is lowered to fit (the masks of that batch size), and what cannot fit is
refused with a code and a hint. The estimate is checked against peaks measured on this
machine's CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sam2_inference import InferenceSettings, Sam2Engine, create_app
from sam2_inference.scheduling.budget import request_bytes
from support import fresh_engine, image_b64, post_segment

AUTO = {
    "mode": "auto",
    "points_per_side": 4,
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.0,
    "mask_format": "rle",
}

# The peak is read from /proc/self/status, its high-water mark reset just before the auto call:
# getrusage's ru_maxrss would start from the parent's size at fork (Linux keeps it across exec).
PEAK_PROBE = """
import json, sys
import numpy as np
from sam2_contract.images import DecodedImage, image_id_for
from sam2_contract.models import SegmentRequest
from sam2_inference import InferenceSettings, Sam2Engine
checkpoint, batch = sys.argv[1], int(sys.argv[2])
engine = Sam2Engine.from_settings(InferenceSettings(model="tiny", weights=checkpoint, device="cpu",
    auto_slice_prompts=0))  # batches as asked: the batch's peak is what is measured
rng = np.random.default_rng(0)
pixels = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
image = DecodedImage(pixels=pixels, format="raw", image_id=image_id_for(pixels))
engine.segment(SegmentRequest(image_id=image.image_id, point_coords=[[5, 5]]), image=image)
def status(field):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(field))
open("/proc/self/clear_refs", "w").write("5")  # the high-water mark starts again from now
before = status("VmRSS:")
engine.segment(SegmentRequest(image_id=image.image_id, mode="auto", points_per_side=8,
    points_per_batch=batch, pred_iou_thresh=0, stability_score_thresh=0, mask_format="rle"))
print(json.dumps({"grown": status("VmHWM:") - before}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("batch", [16, 64])
def test_the_estimate_covers_the_measured_peak_without_wasting_half(
    checkpoint: Path, batch: int
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PEAK_PROBE, str(checkpoint), str(batch)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    grown = json.loads(done.stdout.strip().splitlines()[-1])["grown"]
    estimate = request_bytes(batch, 256, 256)
    print(f"points_per_batch {batch}: measured +{grown >> 20} MiB, estimated {estimate >> 20} MiB")
    assert grown <= estimate <= 2 * grown


def _client(loaded_engine: Sam2Engine, settings: InferenceSettings, budget: int) -> TestClient:
    engine = fresh_engine(loaded_engine, max_request_bytes=budget, auto_slice=0)
    return TestClient(create_app(settings, engine=engine))


def test_points_per_batch_is_lowered_to_fit_and_the_masks_stay_the_same(
    loaded_engine: Sam2Engine, settings: InferenceSettings
) -> None:
    """Lowered to 4, a request gets what asking for 4 gets (sam2's decoder rounds a prompt's
    last bits by its batch's size, so that is the batch to compare with)."""
    body = {"image": image_b64("landscape"), "points_per_batch": 1024} | AUTO
    with _client(loaded_engine, settings, request_bytes(4, 120, 200)) as tight:
        capped = post_segment(tight, body)
    with _client(loaded_engine, settings, 0) as roomy:
        free = post_segment(roomy, body | {"points_per_batch": 4})
    assert capped.status_code == 200, capped.text
    assert any("points_per_batch lowered from 1024 to 4" in w for w in capped.json()["warnings"])
    assert not any("points_per_batch" in w for w in free.json()["warnings"])
    assert capped.json()["masks"] == free.json()["masks"]
    assert capped.json()["count"] >= 1


def test_what_cannot_fit_is_refused_before_any_work(
    loaded_engine: Sam2Engine, settings: InferenceSettings
) -> None:
    with _client(loaded_engine, settings, request_bytes(1, 120, 200) - 1) as none_fit:
        auto = post_segment(none_fit, {"image": image_b64("landscape")} | AUTO)
    with _client(loaded_engine, settings, request_bytes(2, 120, 200)) as two_fit:
        boxes = post_segment(
            two_fit,
            {
                "image": image_b64("landscape"),
                "mode": "box",
                "box_coords": [[1, 1, 50, 50], [5, 5, 60, 60], [9, 9, 90, 90]],
            },
        )
    for refused, knob in ((auto, "smaller image"), (boxes, "several requests")):
        assert (refused.status_code, refused.json()["code"]) == (422, "over_budget")
        assert knob in refused.json()["hint"]
        assert "MiB" in refused.json()["detail"]
