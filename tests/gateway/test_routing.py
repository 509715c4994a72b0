"""The cloud path, simulated here: the gateway's one hop through a stand-in for Modal's proxy
(sticky routing by `Modal-Session-ID`, proxy token) to several inference replicas, driven by
the Python SDK as a user would."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image
from sam2_inference import InferenceSettings, Sam2Engine
from scale_out import PROXY_TOKEN, cluster, drive, images
from support import bearer

IMAGES, CLICKS = 50, 5


@pytest.mark.slow
def test_clicks_follow_their_image_across_replicas_and_survive_one_stopping(
    loaded_engine: Sam2Engine, settings: InferenceSettings
) -> None:
    """50 images x 5 clicks over three replicas; the first replica stops halfway through the
    third round. Repeat clicks find their embedding; after the stop every call still succeeds,
    each moved image re-uploaded once by the SDK."""
    with cluster(loaded_engine, settings, sticky=True) as running:
        report = drive(running, images(IMAGES), CLICKS, stop_at=2 * IMAGES + IMAGES // 2)
        homes = {f.replica for f in running.proxy.log if f.uploaded}
    print(report)
    assert report.failures == 0
    assert report.hit_rate_before_stop >= 0.99
    assert report.most_uploads_of_one_image <= 2  # at most one resend
    assert report.images_uploaded_again >= 1  # the stopped replica's images found a new home
    assert len(homes) == 3  # the images spread over every replica


@pytest.mark.slow
def test_without_affinity_repeat_clicks_mostly_miss(
    loaded_engine: Sam2Engine, settings: InferenceSettings
) -> None:
    """The comparison: the same clicks routed at random find their embedding far less often
    (the bench measures the full 50 x 5)."""
    with cluster(loaded_engine, settings, sticky=False) as running:
        report = drive(running, images(8), 3)
    print(report)
    assert report.failures == 0
    assert report.hit_rate < 0.75


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
