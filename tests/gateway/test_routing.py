"""The cloud path's hop, simulated here: the gateway through a stand-in for Modal's proxy
(sticky routing by `Modal-Session-ID`, the proxy token) to an inference replica. Routing over
several replicas is end to end: tests/e2e/test_scale_out.py."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image
from sam2_inference import InferenceSettings, Sam2Engine
from scale_out import PROXY_TOKEN, cluster
from support import bearer


def _photo_jpeg(width: int, height: int) -> bytes:
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    pixels = (gradient + rng.normal(0, 20, (height, width, 3))).clip(0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=85)
    return out.getvalue()


@pytest.mark.slow
def test_the_hop_carries_the_upload_as_received_and_answers_keep_their_headers(
    loaded_engine: Sam2Engine, settings: InferenceSettings
) -> None:
    """A 1080p JPEG crosses the hop as its own bytes plus the request line (at most 2 KB more),
    with its routing key and the proxy token; the client gets the weights header and its own
    mask format rendered from the hop's RLE."""
    jpeg = _photo_jpeg(1920, 1080)
    with cluster(loaded_engine, settings, sticky=True, replicas=1) as running:
        body = {"image": base64.b64encode(jpeg).decode(), "point_coords": [[960, 540]]}
        answer = httpx.post(
            f"{running.gateway_url}/v1/segment", json=body, headers=bearer(running.key), timeout=120
        )
        assert answer.status_code == 200, answer.text
        png = httpx.post(
            f"{running.gateway_url}/v1/segment",
            json={"image_id": answer.json()["image_id"], "point_coords": [[960, 540]]}
            | {"mask_format": "png"},
            headers=bearer(running.key),
            timeout=60,
        )
        [upload, click] = running.proxy.log
    assert upload.request_bytes <= len(jpeg) + 2048
    assert click.request_bytes < 2048
    assert not click.uploaded
    assert upload.session_id is not None
    assert upload.session_id == click.session_id
    assert answer.headers["x-sam2-weights"] == "random"
    assert png.headers["x-sam2-weights"] == "random"
    mask = answer.json()["mask"]  # bool2d, the default, rendered by the gateway
    assert (len(mask), len(mask[0])) == (1080, 1920)
    assert isinstance(mask[0][0], bool)
    assert png.json()["mask_format"] == "png"
    assert isinstance(png.json()["mask"], str)
    assert png.json()["cached"] is True
    assert PROXY_TOKEN[1] not in answer.text


def test_without_the_proxy_token_inference_is_unavailable_and_nothing_leaks(
    loaded_engine: Sam2Engine, settings: InferenceSettings
) -> None:
    with cluster(loaded_engine, settings, sticky=True, replicas=1, proxy_token=False) as running:
        answer = httpx.post(
            f"{running.gateway_url}/v1/segment",
            json={"image_id": "img_" + "0" * 32, "point_coords": [[1, 1]]},
            headers=bearer(running.key),
        )
    assert (answer.status_code, answer.json()["code"]) == (503, "inference_unavailable")
    assert "wk-" not in answer.text
    assert "ws-" not in answer.text
