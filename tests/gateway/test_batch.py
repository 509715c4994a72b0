"""`/v1/segment/batch`: the batch rule (in order, each item fails alone, one upload shared),
which lives in the gateway only; each item reaches inference over the one hop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sam2_contract import decode_mask
from support import EncoderCounter, RunningServer, bearer, image_b64

CLICK = {"point_coords": [[60, 40]], "point_labels": [1], "mask_format": "rle"}
MakeClient = Callable[..., TestClient]


@pytest.fixture
def local(make_client: MakeClient, inference_server: RunningServer) -> TestClient:
    return make_client(inference_url=inference_server.url)


@pytest.fixture
def served_encoder(inference_server: RunningServer) -> Any:
    counter = EncoderCounter(inference_server.engine.model)
    yield counter
    counter.close()


def test_batch_runs_in_order_with_one_upload_and_isolated_failures(
    local: TestClient, new_key: Callable[..., str], served_encoder: EncoderCounter
) -> None:
    auth = bearer(new_key())
    first = {"image": image_b64("landscape")} | CLICK
    response = local.post("/v1/segment/batch", json={"requests": [first]}, headers=auth)
    image_id = response.json()["results"][0]["result"]["image_id"]
    items = [
        {"image_id": image_id} | CLICK,
        {"image_id": image_id, "mode": "box", "box_coords": [10, 10, 90, 90], "mask_format": "rle"},
        {"image_id": image_id, "mode": "lasso"},
        {"image": image_b64("portrait")} | CLICK,
    ]
    batch = local.post("/v1/segment/batch", json={"requests": items}, headers=auth).json()
    assert batch["count"] == 4
    statuses = [r["status"] for r in batch["results"]]
    assert statuses == [200, 200, 422, 200]
    assert batch["results"][2]["error"]["code"] == "invalid_mode"
    assert batch["results"][2]["error"]["instance"] == "#/requests/2"
    assert [r["index"] for r in batch["results"]] == [0, 1, 2, 3]
    assert served_encoder.calls == 2  # landscape once, portrait once
    single = local.post("/v1/segment", json={"image_id": image_id} | CLICK, headers=auth).json()
    assert (
        decode_mask(single["mask"]).tolist()
        == decode_mask(batch["results"][0]["result"]["mask"]).tolist()
    )


def test_batch_shares_one_uploaded_image_across_prompt_sets(
    local: TestClient, new_key: Callable[..., str], served_encoder: EncoderCounter
) -> None:
    items = [
        CLICK,
        {"mode": "box", "box_coords": [10, 10, 90, 90], "mask_format": "rle"},
        {"image": image_b64("portrait")} | CLICK,  # an item may still bring its own image
    ]
    batch = local.post(
        "/v1/segment/batch",
        json={"image": image_b64("landscape"), "requests": items},
        headers=bearer(new_key()),
    ).json()
    assert [r["status"] for r in batch["results"]] == [200, 200, 200]
    shapes = [r["result"]["image_shape"] for r in batch["results"]]
    assert shapes == [[120, 200], [120, 200], [200, 120]]
    assert [r["result"]["cached"] for r in batch["results"]] == [False, True, False]
    assert served_encoder.calls == 2


def test_a_bad_shared_image_fails_the_whole_batch(
    local: TestClient, new_key: Callable[..., str]
) -> None:
    body = {"image": "%%%", "requests": [CLICK]}
    response = local.post("/v1/segment/batch", json=body, headers=bearer(new_key()))
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_base64"


@pytest.mark.parametrize(
    "body",
    [{}, {"requests": []}, {"requests": [{}] * 17}, {"requests": "x"}, [1], "requests"],
)
def test_malformed_batches(gateway: TestClient, new_key: Callable[..., str], body: Any) -> None:
    response = gateway.post("/v1/segment/batch", json=body, headers=bearer(new_key()))
    assert (response.status_code, response.json()["code"]) == (422, "invalid_batch")
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["hint"]
