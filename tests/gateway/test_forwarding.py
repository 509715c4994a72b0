"""Through the gateway to the real inference service: the original requests and shapes, the
same masks as inference answers directly, per-tenant caches, metering, and failure modes."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sam2_contract import decode_mask, polygons
from sam2_gateway.core.store import KeyStore
from support import RunningServer, bearer, image_b64, post_segment

ORIGINAL = {
    "point": {"mode": "point", "point_coords": [[100, 50]], "point_labels": [1]},
    "box": {"mode": "box", "box_coords": [20, 15, 110, 90]},
    "auto": {
        "mode": "auto",
        "points_per_batch": 16,
        "points_per_side": 2,
        "pred_iou_thresh": 0.0,
        "stability_score_thresh": 0.0,
    },
}


@pytest.mark.parametrize("mode", list(ORIGINAL))
def test_original_request_through_the_gateway_matches_inference_direct(
    e2e: TestClient, new_key: Callable[..., str], inference_server: RunningServer, mode: str
) -> None:
    body = {"image": image_b64("landscape")} | ORIGINAL[mode]
    via_gateway = e2e.post("/v1/segment", json=body, headers=bearer(new_key()))
    assert via_gateway.status_code == 200, via_gateway.text
    direct = post_segment(httpx, body, base_url=inference_server.url, timeout=120).json()
    got = via_gateway.json()
    if mode == "auto":
        assert set(got) >= {"masks", "count", "image_shape"}
        assert got["count"] == direct["count"] >= 1
        for ours, theirs in zip(got["masks"], direct["masks"], strict=True):
            assert ours["segmentation"] == theirs["segmentation"]  # bool2d, the original format
            assert ours["predicted_iou"] == pytest.approx(theirs["predicted_iou"], abs=1e-5)
    else:
        assert set(got) >= {"mask", "score", "all_scores", "image_shape"}
        assert isinstance(got["mask"][0][0], bool)
        assert got["mask"] == direct["mask"]
        assert got["all_scores"] == pytest.approx(direct["all_scores"], abs=1e-5)
    assert got["image_shape"] == [120, 200]


def test_tenants_do_not_share_cached_images(e2e: TestClient, new_key: Callable[..., str]) -> None:
    alice, bob = new_key(), new_key()
    first = e2e.post(
        "/v1/segment",
        json={"image": image_b64("portrait")} | ORIGINAL["point"],
        headers=bearer(alice),
    ).json()
    by_id = {"image_id": first["image_id"]} | ORIGINAL["point"]
    again = e2e.post("/v1/segment", json=by_id, headers=bearer(alice))
    assert again.status_code == 200
    assert again.json()["cached"] is True
    stolen = e2e.post("/v1/segment", json=by_id, headers=bearer(bob))
    assert (stolen.status_code, stolen.json()["code"]) == (404, "image_not_cached")


def test_a_mask_is_refined_only_with_its_key_and_on_its_image(
    e2e: TestClient, new_key: Callable[..., str]
) -> None:
    alice, bob = new_key(), new_key()
    click = ORIGINAL["point"] | {"mask_format": "rle"}
    first = e2e.post(
        "/v1/segment", json={"image": image_b64("portrait")} | click, headers=bearer(alice)
    ).json()
    refine = {"refine": first["mask_id"]} | click
    again = e2e.post(
        "/v1/segment", json={"image_id": first["image_id"]} | refine, headers=bearer(alice)
    )
    assert again.status_code == 200, again.text
    assert again.json()["mask_id"] != first["mask_id"]
    # Bob sends the same image (his own cached copy) and Alice's mask_id: not his to use.
    stolen = e2e.post(
        "/v1/segment", json={"image": image_b64("portrait")} | refine, headers=bearer(bob)
    )
    elsewhere = e2e.post(
        "/v1/segment", json={"image": image_b64("landscape")} | refine, headers=bearer(alice)
    )
    for response in (stolen, elsewhere):
        assert (response.status_code, response.json()["code"]) == (404, "mask_not_found")
        assert response.json()["hint"]


def test_polygons_are_rendered_by_the_gateway_from_the_same_mask(
    e2e: TestClient, new_key: Callable[..., str]
) -> None:
    headers = bearer(new_key())
    click = {"point_coords": [[60, 100]], "point_labels": [1]}
    rle = e2e.post(
        "/v1/segment",
        json={"image": image_b64("portrait"), "mask_format": "rle"} | click,
        headers=headers,
    ).json()
    by_id = {"image_id": rle["image_id"], "mask_format": "polygon"} | click
    exact = e2e.post("/v1/segment", json=by_id | {"polygon_tolerance": 0}, headers=headers)
    simple = e2e.post("/v1/segment", json=by_id, headers=headers).json()
    assert exact.status_code == 200, exact.text
    traced = exact.json()["mask"]
    assert traced["size"] == [200, 120]
    assert np.array_equal(decode_mask(traced), decode_mask(rle["mask"]))

    def corners(mask: dict[str, Any]) -> int:
        return sum(len(p["exterior"]) + sum(map(len, p["holes"])) for p in mask["polygons"])

    assert corners(simple["mask"]) < corners(traced)
    bad = e2e.post("/v1/segment", json=by_id | {"polygon_tolerance": -1}, headers=headers)
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_parameter")
    with pytest.MonkeyPatch.context() as patch:  # the gateway traces: its bound holds there
        patch.setattr(polygons, "MAX_EDGES", 50)
        noisy = e2e.post("/v1/segment", json=by_id, headers=headers)
    assert (noisy.status_code, noisy.json()["code"]) == (422, "too_complex_for_polygons")


def test_usage_is_metered_per_key(
    e2e: TestClient, new_key: Callable[..., str], store: KeyStore
) -> None:
    key = new_key()
    headers = bearer(key)
    image = {"image": image_b64("portrait")}
    first = e2e.post("/v1/segment", json=image | ORIGINAL["point"], headers=headers).json()
    boxes = {
        "image_id": first["image_id"],
        "mode": "box",
        "box_coords": [[1, 1, 50, 50], [10, 10, 90, 90]],
    }
    e2e.post("/v1/segment", json=boxes, headers=headers)
    e2e.portal.call(e2e.app.state.gateway.meter.flush)  # type: ignore[union-attr]
    [row] = store.usage(key.split("_")[1])
    assert (row.requests, row.images, row.masks) == (2, 1, 3)
    assert row.gpu_ms >= first["timings_ms"]["embed_ms"] > 0
    assert store.get(key.split("_")[1]).last_used_at is not None  # type: ignore[union-attr]


def test_batch_through_the_gateway_shares_one_upload(
    e2e: TestClient, new_key: Callable[..., str], store: KeyStore
) -> None:
    key = new_key()
    body = {
        "image": image_b64("landscape"),
        "requests": [
            ORIGINAL["point"] | {"mask_format": "rle"},
            ORIGINAL["box"],
            {"mode": "lasso"},
        ],
    }
    answer = e2e.post("/v1/segment/batch", json=body, headers=bearer(key)).json()
    assert [r["status"] for r in answer["results"]] == [200, 200, 422]
    assert answer["results"][2]["error"]["code"] == "invalid_mode"
    assert answer["results"][1]["result"]["cached"] is True
    assert decode_mask(answer["results"][0]["result"]["mask"]).shape == (120, 200)
    e2e.portal.call(e2e.app.state.gateway.meter.flush)  # type: ignore[union-attr]
    [row] = store.usage(key.split("_")[1])
    assert (row.requests, row.images) == (2, 1)  # two items ran, one image was uploaded


def test_inference_down_gives_503_with_retry_after_at_once(
    make_client: Callable[..., TestClient], new_key: Callable[..., str]
) -> None:
    gateway = make_client()  # the fixture's inference URL is a closed port
    started = time.monotonic()
    response = gateway.post(
        "/v1/segment",
        json={"image": image_b64("portrait")} | ORIGINAL["point"],
        headers=bearer(new_key()),
    )
    elapsed = time.monotonic() - started
    assert (response.status_code, response.json()["code"]) == (503, "inference_unavailable")
    assert response.headers["retry-after"] == "1"
    assert elapsed < 1.0, "an unreachable backend must not hang the caller"
    ready = gateway.get("/readyz")
    assert (ready.status_code, ready.json()["code"]) == (503, "inference_unavailable")


def test_inference_too_slow_gives_504(
    make_client: Callable[..., TestClient],
    backend: dict[str, Any],
    new_key: Callable[..., str],
) -> None:
    impatient = make_client(**backend, inference_timeout_s=0.05)
    # A new image for a new key: its encoder pass alone takes seconds on this CPU. (Automatic
    # mode would be refused before it starts: 422 over_time_budget, tests/inference.)
    click = {"image": image_b64("landscape"), "point_coords": [[5, 5]]}
    response = impatient.post("/v1/segment", json=click, headers=bearer(new_key()))
    assert (response.status_code, response.json()["code"]) == (504, "inference_timeout")


def test_readyz_and_models_report_the_inference_model(
    e2e: TestClient, new_key: Callable[..., str]
) -> None:
    ready = e2e.get("/readyz").json()
    assert ready["state"] == "ready"
    assert ready["random_weights"] is True
    models: dict[str, Any] = e2e.get("/v1/models", headers=bearer(new_key())).json()
    assert models["serving"]["name"] == "tiny"
    assert [m["name"] for m in models["models"] if m["loaded"]] == ["tiny"]
    assert e2e.get("/healthz").json() == {"status": "ok"}


def test_a_batch_whose_shared_image_is_corrupt_fails_each_item_with_its_code(
    e2e: TestClient, new_key: Callable[..., str]
) -> None:
    """The gateway checks headers only: a file corrupt past its header fails where it is
    decoded, once per item that uses it; a refused header fails the whole call."""
    png = base64.b64decode(image_b64("landscape"))
    truncated = base64.b64encode(png[: len(png) // 2]).decode()
    items = [ORIGINAL["point"], ORIGINAL["box"]]
    answer = e2e.post(
        "/v1/segment/batch", json={"image": truncated, "requests": items}, headers=bearer(new_key())
    )
    assert answer.status_code == 200
    assert [(r["status"], r["error"]["code"]) for r in answer.json()["results"]] == [
        (422, "truncated_image"),
        (422, "truncated_image"),
    ]
    not_an_image = base64.b64encode(b"just text").decode()
    refused = e2e.post(
        "/v1/segment/batch",
        json={"image": not_an_image, "requests": items},
        headers=bearer(new_key()),
    )
    assert (refused.status_code, refused.json()["code"]) == (422, "unsupported_image")
