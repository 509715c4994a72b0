"""Every bad request gets a problem+json with its exact status, a stable code and a hint,
and the service keeps serving afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sam2_inference import InferenceSettings, Sam2Engine, create_app
from support import b64, encode, image_b64, png_header, post_segment, scene

GOOD_PNG = encode(scene(40, 60))
IMAGE = b64(GOOD_PNG)
MASK_ID = "msk_" + "c" * 24
POINT = {"image": IMAGE, "point_coords": [[10, 10]], "point_labels": [1]}
OBJECTS = [{"point_coords": [[10, 10]]}, {"box_coords": [2, 2, 30, 20]}]
BODY_LIMIT = 256 * 1024

# (name, request body as dict or raw bytes, status, code)
CASES: list[tuple[str, Any, int, str]] = [
    (
        "invalid base64",
        {"image": "%%%not-base64%%%", "point_coords": [[1, 1]]},
        422,
        "invalid_base64",
    ),
    ("not an image", POINT | {"image": b64(b"just some text")}, 422, "unsupported_image"),
    (
        "truncated file",
        POINT | {"image": b64(GOOD_PNG[: len(GOOD_PNG) // 2])},
        422,
        "truncated_image",
    ),
    ("zero-sized image", POINT | {"image": b64(png_header(0, 20))}, 422, "empty_image"),
    ("empty image string", POINT | {"image": ""}, 422, "missing_image"),
    ("pixel bomb", POINT | {"image": b64(png_header(50_000, 50_000))}, 413, "image_too_large"),
    (
        "over the pixel limit",
        POINT | {"image": b64(png_header(5000, 5000))},
        413,
        "image_too_large",
    ),
    ("labels/points mismatch", POINT | {"point_labels": [1, 0]}, 422, "point_labels_mismatch"),
    ("label not 0/1", POINT | {"point_labels": [2]}, 422, "invalid_point_label"),
    ("label a string", POINT | {"point_labels": ["1"]}, 422, "invalid_point_label"),
    (
        "NaN coordinate",
        b'{"image": "%s", "point_coords": [[NaN, 3]]}' % IMAGE.encode(),
        422,
        "invalid_coordinates",
    ),
    (
        "infinite coordinate",
        b'{"image": "%s", "point_coords": [[1, Infinity]]}' % IMAGE.encode(),
        422,
        "invalid_coordinates",
    ),
    ("negative coordinate", POINT | {"point_coords": [[-1, 3]]}, 422, "invalid_coordinates"),
    ("boolean as a string", POINT | {"multimask_output": "yes"}, 422, "invalid_parameter"),
    ("count as a boolean", POINT | {"points_per_batch": True}, 422, "invalid_parameter"),
    ("count as a float", POINT | {"points_per_batch": 64.0}, 422, "invalid_parameter"),
    ("JSON nested 5,000 deep", b"[" * 5000 + b"]" * 5000, 400, "invalid_json"),
    ("a 5,000-digit integer", b'{"points_per_batch": ' + b"9" * 5000 + b"}", 400, "invalid_json"),
    ("point not a pair", POINT | {"point_coords": [[1, 2, 3]]}, 422, "invalid_coordinates"),
    ("point outside image", POINT | {"point_coords": [[61, 10]]}, 422, "coordinates_out_of_bounds"),
    (
        "box x_max <= x_min",
        {"image": IMAGE, "mode": "box", "box_coords": [30, 5, 30, 20]},
        422,
        "invalid_box",
    ),
    (
        "box of three numbers",
        {"image": IMAGE, "mode": "box", "box_coords": [1, 2, 3]},
        422,
        "invalid_box",
    ),
    (
        "box outside image",
        {"image": IMAGE, "mode": "box", "box_coords": [1, 1, 20, 41]},
        422,
        "coordinates_out_of_bounds",
    ),
    ("unknown mode", POINT | {"mode": "lasso"}, 422, "invalid_mode"),
    ("point mode without points", {"image": IMAGE, "mode": "point"}, 422, "missing_points"),
    ("box mode without box", {"image": IMAGE, "mode": "box"}, 422, "missing_box"),
    (
        "points with several boxes",
        POINT | {"mode": "box", "box_coords": [[1, 1, 5, 5], [2, 2, 9, 9]]},
        422,
        "points_with_multiple_boxes",
    ),
    (
        "too many points",
        POINT | {"point_coords": [[1, 1]] * 65, "point_labels": [1] * 65},
        422,
        "too_many_prompts",
    ),
    (
        "points_per_batch 0",
        {"image": IMAGE, "mode": "auto", "points_per_batch": 0},
        422,
        "invalid_parameter",
    ),
    (
        "points_per_batch absurd",
        {"image": IMAGE, "mode": "auto", "points_per_batch": 10**9},
        422,
        "invalid_parameter",
    ),
    (
        "threshold above 1",
        {"image": IMAGE, "mode": "auto", "pred_iou_thresh": 1.5},
        422,
        "invalid_parameter",
    ),
    ("unknown mask_format", POINT | {"mask_format": "jpeg"}, 422, "invalid_mask_format"),
    ("unknown model", POINT | {"model": "gigantic"}, 422, "unknown_model"),
    ("model not served", POINT | {"model": "large"}, 400, "model_not_loaded"),
    ("unknown field", POINT | {"point_coord": [[1, 1]]}, 422, "unknown_field"),
    ("no image at all", {"mode": "point", "point_coords": [[1, 1]]}, 422, "missing_image"),
    ("image and image_id", POINT | {"image_id": "img_" + "a" * 32}, 422, "image_and_image_id"),
    (
        "malformed image_id",
        {"image_id": "../etc/passwd", "point_coords": [[1, 1]]},
        422,
        "invalid_image_id",
    ),
    (
        "uncached image_id",
        {"image_id": "img_" + "b" * 32, "point_coords": [[1, 1]]},
        404,
        "image_not_cached",
    ),
    ("malformed refine", POINT | {"refine": "img_" + "a" * 32}, 422, "invalid_mask_id"),
    (
        "refine in auto mode",
        {"image": IMAGE, "mode": "auto", "refine": MASK_ID},
        422,
        "refine_not_allowed",
    ),
    (
        "refine with several boxes",
        {
            "image": IMAGE,
            "mode": "box",
            "box_coords": [[1, 1, 9, 9], [2, 2, 8, 8]],
            "refine": MASK_ID,
        },
        422,
        "refine_not_allowed",
    ),
    ("refine of an unknown mask", POINT | {"refine": MASK_ID}, 404, "mask_not_found"),
    ("an object without prompts", {"image": IMAGE, "objects": [{}]}, 422, "missing_prompt"),
    ("an unknown render format", POINT | {"render": "gif"}, 422, "invalid_parameter"),
    ("an empty object list", {"image": IMAGE, "objects": []}, 422, "missing_prompt"),
    ("objects not a list", {"image": IMAGE, "objects": {"a": 1}}, 422, "invalid_request"),
    ("objects and top-level points", POINT | {"objects": OBJECTS}, 422, "objects_with_prompts"),
    (
        "objects in auto mode",
        {"image": IMAGE, "mode": "auto", "objects": OBJECTS},
        422,
        "objects_not_allowed",
    ),
    (
        "too many objects",
        {"image": IMAGE, "objects": [{"point_coords": [[1, 1]]}] * 65},
        422,
        "too_many_prompts",
    ),
    (
        "an object's labels mismatch",
        {"image": IMAGE, "objects": [{"point_coords": [[1, 1]], "point_labels": [1, 0]}]},
        422,
        "point_labels_mismatch",
    ),
    (
        "a list of boxes in one object",
        {"image": IMAGE, "objects": [{"box_coords": [[1, 1, 5, 5], [2, 2, 6, 6]]}]},
        422,
        "invalid_box",
    ),
    (
        "an unknown field in an object",
        {"image": IMAGE, "objects": [{"point_coords": [[1, 1]], "points": [[1, 1]]}]},
        422,
        "unknown_field",
    ),
    (
        "an object outside the image",
        {"image": IMAGE, "objects": [*OBJECTS, {"box_coords": [1, 1, 61, 30]}]},
        422,
        "coordinates_out_of_bounds",
    ),
    (
        "an object refining an unknown mask",
        {"image": IMAGE, "objects": [*OBJECTS, {"point_coords": [[5, 5]], "refine": MASK_ID}]},
        404,
        "mask_not_found",
    ),
    ("invalid JSON", b'{"image": "abc", ', 400, "invalid_json"),
    ("JSON array body", b"[1, 2, 3]", 422, "invalid_request"),
    ("body too large", POINT | {"image": "A" * (BODY_LIMIT + 10)}, 413, "body_too_large"),
]


@pytest.fixture(scope="module")
def bad_client(loaded_engine: Sam2Engine, settings: InferenceSettings) -> Iterator[TestClient]:
    limited = settings.model_copy(update={"max_body_bytes": BODY_LIMIT})
    with TestClient(create_app(limited, engine=loaded_engine)) as client:
        yield client


def _assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == code
    assert problem["type"] == f"urn:sam2:error:{code}"
    assert problem["status"] == status
    assert problem["hint"]
    assert problem["detail"]
    assert problem["title"]
    assert problem["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return problem


@pytest.mark.parametrize(("name", "body", "status", "code"), CASES, ids=[c[0] for c in CASES])
def test_bad_request_gets_its_problem(
    bad_client: TestClient, name: str, body: Any, status: int, code: str
) -> None:
    if isinstance(body, bytes):
        response = post_segment(bad_client, body)
    else:
        response = post_segment(bad_client, body)
    _assert_problem(response, status, code)


def test_field_errors_point_at_the_field(bad_client: TestClient) -> None:
    response = post_segment(bad_client, POINT | {"point_labels": [7]})
    problem = _assert_problem(response, 422, "invalid_point_label")
    assert problem["errors"][0]["loc"] == ["point_labels"]
    bad_object = {"image": IMAGE, "objects": [*OBJECTS, {"point_coords": [[1, -2]]}]}
    problem = _assert_problem(post_segment(bad_client, bad_object), 422, "invalid_coordinates")
    assert problem["errors"][0]["loc"] == ["objects", 2, "point_coords"]


def test_wrong_content_type(bad_client: TestClient) -> None:
    response = bad_client.post(
        "/internal/segment",
        content=b"image=abc",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    _assert_problem(response, 415, "unsupported_media_type")


def test_unknown_path_and_method(bad_client: TestClient) -> None:
    _assert_problem(bad_client.get("/v2/segment"), 404, "not_found")
    not_allowed = bad_client.get("/internal/segment")
    _assert_problem(not_allowed, 405, "method_not_allowed")
    assert not_allowed.headers["allow"] == "POST"


def test_a_given_request_id_is_echoed_and_a_hostile_one_replaced(bad_client: TestClient) -> None:
    ok = bad_client.get("/v2", headers={"X-Request-ID": "req-123"})
    assert ok.headers["x-request-id"] == "req-123"
    hostile = bad_client.get("/v2", headers={"X-Request-ID": "a b\tinjected"})
    assert hostile.headers["x-request-id"] != "a b\tinjected"


def test_the_service_still_serves_after_every_bad_request(bad_client: TestClient) -> None:
    for _, body, _, _ in CASES:
        if isinstance(body, bytes):
            post_segment(bad_client, body)
        else:
            post_segment(bad_client, body)
    assert bad_client.get("/healthz").json()["state"] == "ready"
    response = post_segment(
        bad_client,
        {"image": image_b64("landscape"), "point_coords": [[5, 5]], "mask_format": "rle"},
    )
    assert response.status_code == 200
