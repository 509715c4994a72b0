"""The HTTP surface besides segmenting: models, health, readiness, random-weight flags, the hop."""

from __future__ import annotations

import json
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sam2_contract import RANDOM_WEIGHTS_WARNING
from sam2_contract.images import image_id_for_file
from sam2_contract.wire import FRAME_CONTENT_TYPE, pack_frame
from sam2_inference import InferenceSettings, create_app
from support import IMAGES, encode, image_b64, post_segment

CLICK = {"point_coords": [[60, 40]], "point_labels": [1], "mask_format": "rle"}


def test_random_weights_are_flagged_everywhere(client: TestClient) -> None:
    health = client.get("/healthz").json()
    assert health["state"] == "ready"
    assert health["random_weights"] is True
    assert RANDOM_WEIGHTS_WARNING in health["warnings"]
    assert health["model"]["device"] == "cpu"
    assert health["model"]["dtype"] == "float32"
    response = post_segment(client, {"image": image_b64("portrait")} | CLICK)
    assert response.headers["x-sam2-weights"] == "random"
    body = response.json()
    assert body["model"]["random_weights"] is True
    assert RANDOM_WEIGHTS_WARNING in body["warnings"]


def test_models_lists_all_four_and_marks_the_served_one(client: TestClient) -> None:
    listing = client.get("/v1/models").json()
    assert {m["name"]: m["loaded"] for m in listing["models"]} == {
        "tiny": True,
        "small": False,
        "base-plus": False,
        "large": False,
    }
    assert listing["serving"]["model_id"] == "facebook/sam2.1-hiera-tiny"


def test_readyz_and_segment_say_not_ready_when_the_model_cannot_load(tmp_path: Path) -> None:
    settings = InferenceSettings(weights=str(tmp_path / "missing.pt"), device="cpu")
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 30
        while client.get("/healthz").json()["state"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/healthz").json()["state"] == "failed"
        for response in (
            client.get("/readyz"),
            post_segment(client, {"image": image_b64("portrait")} | CLICK),
        ):
            assert response.status_code == 503
            assert response.json()["code"] == "not_ready"
            assert response.headers["retry-after"] == "5"
            assert "missing.pt" not in response.text  # paths stay in the logs


def test_the_gateway_frame_carries_the_image_file_and_gives_the_same_answer(
    client: TestClient,
) -> None:
    by_json = post_segment(client, {"image": image_b64("portrait")} | CLICK)
    image_file = encode(IMAGES["portrait"])
    request = json.dumps({"image_id": image_id_for_file(image_file)} | CLICK, separators=(",", ":"))
    for image in (image_file, None):  # the upload, then a click by id on the cached embedding
        by_frame = client.post(
            "/internal/segment",
            content=pack_frame(request.encode(), image),
            headers={"content-type": FRAME_CONTENT_TYPE},
        )
        assert by_frame.status_code == 200, by_frame.text
        assert by_frame.json()["mask"] == by_json.json()["mask"]
        assert by_frame.json()["image_id"] == by_json.json()["image_id"]
        assert by_frame.headers["x-sam2-masks"] == "1"
        assert by_frame.headers["x-sam2-weights"] == "random"
    assert float(by_json.headers["x-sam2-model-ms"]) > 0


def test_a_frame_whose_file_is_not_the_named_image_is_refused(client: TestClient) -> None:
    request = json.dumps({"image_id": "img_" + "0" * 32} | CLICK, separators=(",", ":"))
    answer = client.post(
        "/internal/segment",
        content=pack_frame(request.encode(), encode(IMAGES["portrait"])),
        headers={"content-type": FRAME_CONTENT_TYPE},
    )
    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_request")


def test_crop_layers_with_no_surviving_mask_answer_zero_masks(client: TestClient) -> None:
    """sam2 1.1.0's generator raises an IndexError here; the service answers what happened."""
    body = {
        "image": image_b64("landscape"),
        "mode": "auto",
        "points_per_side": 2,
        "crop_n_layers": 1,
        "pred_iou_thresh": 1.0,
        "mask_format": "rle",
    }
    answer = post_segment(client, body)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["count"], answer.json()["masks"]) == (0, [])
    assert any("no mask passed pred_iou_thresh=1" in w for w in answer.json()["warnings"])


def test_auto_mode_at_default_thresholds_says_why_random_weights_give_no_mask(
    client: TestClient,
) -> None:
    body = {"image": image_b64("landscape"), "mode": "auto", "points_per_side": 4}
    answer = post_segment(client, body).json()
    assert answer["count"] == 0
    hint = "no mask passed pred_iou_thresh=0.8 and stability_score_thresh=0.95: random weights"
    assert any(w.startswith(hint) and "set both to 0" in w for w in answer["warnings"])
    kept = post_segment(client, body | {"pred_iou_thresh": 0, "stability_score_thresh": 0})
    assert kept.json()["count"] > 0
    assert not any("no mask passed" in w for w in kept.json()["warnings"])
