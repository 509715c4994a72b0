"""The Python SDK's local decoder (issue 29) against the real gateway: clicks, boxes, points
with a box and refinement decoded in this process equal the server's answers, float32 within
the issue's bounds, float16 within its looser ones; the decoder is downloaded once (ETag)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sam2_sdk import Sam2Client
from sam2_sdk._local import upsample
from support import IMAGES, GatewayServer

pytest.importorskip("onnxruntime")

PROMPTS: list[dict[str, Any]] = [
    {"points": [[60, 40]]},
    {"points": [[60, 40], [100, 90]], "labels": [1, 0]},
    {"box": [10, 10, 110, 100]},
    {"box": [30, 20, 110, 110], "points": [[70, 60]], "labels": [0]},
]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / max(np.logical_or(a, b).sum(), 1))


def test_upsampling_is_torchs_bilinear() -> None:
    import torch
    import torch.nn.functional as F  # noqa: N812

    low = np.random.default_rng(1).standard_normal((256, 256)).astype(np.float32)
    theirs = F.interpolate(torch.from_numpy(low)[None, None], (120, 200), mode="bilinear")
    assert np.abs(upsample(low, 120, 200) - theirs[0, 0].numpy()).max() < 1e-4


@pytest.mark.parametrize(("dtype", "bound"), [("float32", 0.999), ("float16", 0.97)])
def test_local_clicks_equal_the_servers(
    gateway_server: GatewayServer, tmp_path: Path, dtype: str, bound: float
) -> None:
    pixels = IMAGES["landscape"]
    with Sam2Client(api_key=gateway_server.key, base_url=gateway_server.url) as client:
        local = client.local(pixels, dtype=dtype, cache_dir=tmp_path)  # type: ignore[arg-type]
        assert local.image_shape == (120, 200)
        ious = []
        for prompt in PROMPTS:
            mine = local.segment(**prompt)
            theirs = client.segment(pixels, **prompt)
            ious.append(_iou(mine.mask, theirs.mask))
            if dtype == "float32":
                assert abs(mine.score - theirs.score) < 1e-4
        assert min(ious) >= bound
        first = local.segment(points=[[60, 40]])
        refined = local.segment(points=[[60, 40], [100, 90]], labels=[1, 0], refine=first.mask_id)
        served = client.segment(pixels, points=[[60, 40]])
        served_refined = client.segment(
            pixels, points=[[60, 40], [100, 90]], labels=[1, 0], refine=served.mask_id
        )
        assert _iou(refined.mask, served_refined.mask) >= bound
        # The decoder came once: the gateway answers the second session's ETag with 304 and
        # the file on disk is used as it is.
        kept = (tmp_path / "tiny.onnx").stat().st_mtime_ns
        again = client.local(pixels, dtype=dtype, cache_dir=tmp_path)  # type: ignore[arg-type]
        assert (tmp_path / "tiny.onnx").stat().st_mtime_ns == kept
        assert again.segment(points=[[60, 40]]).score == pytest.approx(first.score)
