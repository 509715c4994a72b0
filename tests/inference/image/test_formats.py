"""Every file format and every mode through the service.

An image is named by its file: lossless formats of the same pixels give the same masks under
different `image_id`s, and sending the same file again reuses its embedding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from pycocotools import mask as coco
from sam2.utils.amg import mask_to_rle_pytorch
from sam2_contract import decode_mask, polygons, rle_from_counts
from sam2_contract.overlay import decode_overlay, render_overlay
from support import IMAGES, EncoderCounter, b64, encode, post_segment

LOSSLESS = [("PNG", {}), ("WEBP", {"lossless": True}), ("BMP", {}), ("TIFF", {}), ("GIF", {})]
CLICK = {"point_coords": [[50, 50]], "point_labels": [1], "mask_format": "rle"}


def test_every_format_is_served_and_the_same_file_reuses_its_embedding(
    client: TestClient, encoder_calls: EncoderCounter
) -> None:
    pixels = IMAGES["portrait"]
    answers = []
    for fmt, params in LOSSLESS:
        body = {"image": b64(encode(pixels, fmt, **params))} | CLICK
        response = post_segment(client, body)
        assert response.status_code == 200, (fmt, response.text)
        answers.append(response.json())
    assert len({a["image_id"] for a in answers}) == len(LOSSLESS)  # one id per file
    assert all(a["mask"] == answers[0]["mask"] for a in answers)  # the same pixels
    assert encoder_calls.calls == len(LOSSLESS)

    again = post_segment(client, {"image": b64(encode(pixels))} | CLICK).json()
    assert (again["image_id"], again["cached"]) == (answers[0]["image_id"], True)
    jpeg = post_segment(client, {"image": b64(encode(pixels, "JPEG"))} | CLICK).json()
    assert jpeg["image_shape"] == [200, 120]
    assert encoder_calls.calls == len(LOSSLESS) + 1


@pytest.mark.parametrize("mode", ["point", "box", "auto"])
def test_every_mode_answers_in_every_mask_format(client: TestClient, mode: str) -> None:
    prompt = {
        "point": {"point_coords": [[50, 50]]},
        "box": {"box_coords": [10, 10, 100, 150]},
        "auto": {"points_per_side": 2, "pred_iou_thresh": 0, "stability_score_thresh": 0},
    }[mode]
    image = {"image": b64(encode(IMAGES["portrait"])), "polygon_tolerance": 0}
    answers = {}
    for fmt in ("bool2d", "rle", "png", "polygon"):
        response = post_segment(client, image | prompt | {"mode": mode, "mask_format": fmt})
        assert response.status_code == 200, response.text
        answers[fmt] = response.json()
        assert answers[fmt]["mask_format"] == fmt
    decoded = {
        fmt: [decode_mask(m["segmentation"]) for m in a["masks"]]
        if mode == "auto"
        else [decode_mask(a["mask"])]
        for fmt, a in answers.items()
    }
    assert decoded["bool2d"]
    for fmt in ("rle", "png", "polygon"):  # polygons at tolerance 0: exact
        assert len(decoded[fmt]) == len(decoded["bool2d"])
        for ours, reference in zip(decoded[fmt], decoded["bool2d"], strict=True):
            assert np.array_equal(ours, reference)
            assert ours.shape == (200, 120)


def test_polygons_of_too_many_edges_are_refused_with_a_hint(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(polygons, "MAX_EDGES", 50)  # random weights' masks have thousands
    body = {"image": b64(encode(IMAGES["portrait"])), "point_coords": [[50, 50]]}
    response = post_segment(client, body | {"mask_format": "polygon"})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "too_complex_for_polygons"
    assert "rle" in problem["hint"]
    assert post_segment(client, body | {"mask_format": "rle"}).status_code == 200


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools
def test_sam2s_own_run_lengths_give_pycocotools_rle_without_a_mask() -> None:
    """Automatic mode answers RLE straight from the run lengths sam2 keeps its masks in."""
    rng = np.random.default_rng(11)
    masks = [rng.random((37, 53)) < 0.5, np.zeros((9, 4), bool), np.ones((4, 9), bool)]
    shaped = np.zeros((120, 200), bool)
    shaped[20:90, 30:170] = True
    masks.append(shaped)
    for mask in masks:
        [runs] = mask_to_rle_pytorch(torch.from_numpy(mask)[None])
        ours = rle_from_counts(runs["size"], runs["counts"])
        theirs = coco.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert (ours.size, ours.counts) == (list(theirs["size"]), theirs["counts"].decode())


def test_render_draws_the_answers_masks_and_prompts_on_the_image(client: TestClient) -> None:
    pixels = IMAGES["landscape"]
    objects = [{"point_coords": [[60, 40]]}, {"box_coords": [120, 20, 190, 100]}]
    body = {"image": b64(encode(pixels)), "objects": objects, "render": "png", "mask_format": "rle"}
    got = post_segment(client, body).json()
    masks = [decode_mask(p["mask"]) for p in got["predictions"]]
    assert got["overlay"] == render_overlay(
        pixels, masks, points=[[60, 40]], labels=[1], boxes=[[120, 20, 190, 100]]
    )
    drawn = decode_overlay(got["overlay"])
    assert drawn.shape == pixels.shape  # under 1024 px: full size
    inside = masks[0] & ~masks[1]
    changed = np.any(drawn != pixels, axis=2)
    assert changed[inside].mean() > 0.95  # the first object's mask is drawn
    assert changed[~masks[0] & ~masks[1]].mean() < 0.1  # elsewhere: the image (and the box)
    plain = post_segment(client, body | {"render": None}).json()
    assert plain.get("overlay") is None  # nothing rendered unless asked

    auto = {
        "image_id": got["image_id"],
        "mode": "auto",
        "points_per_side": 4,
        "pred_iou_thresh": 0.0,  # random weights: keep what they give
        "stability_score_thresh": 0.0,
        "box_nms_thresh": 1.0,
    }
    answer = post_segment(client, auto | {"render": "jpeg"}).json()
    assert answer["count"] > 1
    largest_first = sorted(answer["masks"], key=lambda m: -m["area"])
    expected = render_overlay(
        pixels, [decode_mask(m["segmentation"]) for m in largest_first], image_format="jpeg"
    )
    assert answer["overlay"] == expected
