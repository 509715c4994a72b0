"""The Python SDK against the real local gateway and inference service (random weights)."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
from sam2_contract import UsageResponse, decode_mask
from sam2_sdk import (
    AsyncSam2Client,
    PermissionDeniedError,
    Sam2Client,
    SegmentObject,
    segment_image,
)
from support import IMAGES, GatewayServer, RunningServer, b64, encode, post_segment, scene


def test_sdk_masks_equal_the_inference_service_direct(
    gateway_server: GatewayServer, inference_server: RunningServer
) -> None:
    pixels = IMAGES["landscape"]
    with Sam2Client(api_key=gateway_server.key, base_url=gateway_server.url) as client:
        result = client.segment(pixels, points=[[100, 50]], labels=[1])
        boxes = client.segment(pixels, boxes=[[10, 10, 90, 90], [100, 20, 190, 110]])
    direct = post_segment(
        httpx,
        base_url=inference_server.url,
        body={
            "image": b64(encode(pixels)),
            "point_coords": [[100, 50]],
            "point_labels": [1],
            "mask_format": "rle",
        },
        timeout=60,
    ).json()
    assert np.array_equal(result.mask, decode_mask(direct["mask"]))
    assert result.all_scores == direct["all_scores"]
    assert result.image_shape == (120, 200)
    assert len(boxes.masks) == 2
    assert boxes.cached is True


def test_refine_corrects_the_previous_mask_as_the_service_does(
    gateway_server: GatewayServer, inference_server: RunningServer
) -> None:
    pixels = IMAGES["portrait"]
    correction = {"points": [[50, 50], [60, 120]], "labels": [1, 0]}
    with Sam2Client(api_key=gateway_server.key, base_url=gateway_server.url) as client:
        first = client.segment(pixels, points=[[50, 50]])
        refined = client.segment(pixels, refine=first.mask_id, **correction)
        boxes = client.segment(pixels, boxes=[[10, 10, 90, 90], [20, 100, 110, 190]])
    assert first.mask_id is not None
    assert refined.mask_id not in (None, first.mask_id)
    assert all(p.mask_id for p in boxes.predictions)
    url = inference_server.url
    click = {"point_coords": [[50, 50]], "point_labels": [1], "mask_format": "rle"}
    direct = post_segment(
        httpx, base_url=url, body={"image": b64(encode(pixels))} | click, timeout=60
    ).json()
    body = {
        "image_id": direct["image_id"],
        "refine": direct["mask_id"],
        "point_coords": correction["points"],
        "point_labels": correction["labels"],
        "mask_format": "rle",
    }
    again = post_segment(httpx, base_url=url, body=body, timeout=60).json()
    assert np.array_equal(refined.mask, decode_mask(again["mask"]))
    assert refined.all_scores == again["all_scores"]
    # Polygons for labelling tools, computed from the mask: exact at tolerance 0.
    assert np.array_equal(decode_mask(refined.to_polygons(0).model_dump()), refined.mask)
    assert refined.to_polygons().size == [200, 120]


def test_several_objects_in_one_call_answer_as_each_alone(gateway_server: GatewayServer) -> None:
    pixels = IMAGES["landscape"]
    objects: list[SegmentObject] = [
        {"points": [[100, 50]]},
        {"box": [10, 10, 90, 90]},
        {"points": [[150, 60], [120, 30]], "labels": [1, 0], "box": [100, 5, 190, 110]},
    ]
    with Sam2Client(api_key=gateway_server.key, base_url=gateway_server.url) as client:
        together = client.segment(pixels, objects=objects, render="jpeg")
        alone = [
            client.segment(pixels, points=o.get("points"), labels=o.get("labels"), box=o.get("box"))
            for o in objects
        ]
        refined = client.segment(
            pixels,
            objects=[
                {"points": [[100, 50], [20, 20]], "labels": [1, 0], "refine": together.mask_id}
            ],
        )
        with pytest.raises(TypeError, match="unknown key"):
            client.segment(pixels, objects=[{"point_coords": [[1, 1]]}])  # type: ignore[typeddict-unknown-key]
    assert len(together.masks) == len(objects)
    for mask, prediction, single in zip(together.masks, together.predictions, alone, strict=True):
        assert np.array_equal(mask, single.mask)
        assert prediction.all_scores == pytest.approx(single.all_scores, abs=1e-5)
    assert np.array_equal(together.mask, together.masks[0])
    assert together.overlay is not None
    assert together.overlay.size == (200, 120)
    assert together.overlay.format == "JPEG"
    assert alone[0].overlay is None
    assert refined.predictions[0].mask_id not in (None, together.mask_id)


def test_a_repeat_click_uploads_no_image_bytes(gateway_server: GatewayServer) -> None:
    bodies: list[bytes] = []
    http = httpx.Client(event_hooks={"request": [lambda r: bodies.append(r.read())]}, timeout=60)
    photo = encode(IMAGES["portrait"], "JPEG")
    with Sam2Client(
        api_key=gateway_server.key, base_url=gateway_server.url, http_client=http
    ) as client:
        first = client.segment(photo, points=[[50, 50]])
        second = client.segment(photo, points=[[60, 120]])
    assert first.cached is False
    assert second.cached is True
    assert len(bodies[0]) > len(photo)  # the upload, base64
    assert len(bodies[1]) < 400  # the image_id and the prompt only
    assert "image" not in json.loads(bodies[1])


def test_async_client_auto_mode_and_tokens(gateway_server: GatewayServer) -> None:
    async def run() -> tuple[int, bool]:
        async with AsyncSam2Client(
            api_key=gateway_server.key, base_url=gateway_server.url
        ) as client:
            token = await client.create_token(scopes=["segment"], ttl_s=60)
            auto = await client.segment_auto(
                IMAGES["portrait"], points_per_side=2, pred_iou_thresh=0, stability_score_thresh=0
            )
        async with AsyncSam2Client(api_key=token.token, base_url=gateway_server.url) as browser:
            click = await browser.segment(IMAGES["portrait"], points=[[10, 10]])
        return len(auto.masks), click.mask.shape == (200, 120)

    count, shaped = asyncio.run(run())
    assert count >= 1
    assert shaped


def test_the_original_segment_image_helper(gateway_server: GatewayServer, tmp_path: object) -> None:
    path = f"{tmp_path}/photo.png"
    with open(path, "wb") as handle:
        handle.write(encode(IMAGES["landscape"]))
    answer = segment_image(
        image_path=path,
        endpoint_url=gateway_server.url,
        point_coords=[[100, 100]],
        point_labels=[1],
        mode="point",
        api_key=gateway_server.key,
    )
    assert set(answer) >= {"mask", "score", "all_scores", "image_shape"}
    assert len(answer["mask"]) == 120
    assert isinstance(answer["mask"][0][0], bool)


def test_batches_share_one_upload_and_fail_item_by_item(gateway_server: GatewayServer) -> None:
    from sam2_sdk import AutoSegmentation, BatchItemError, Segmentation

    bodies: list[bytes] = []
    http = httpx.Client(event_hooks={"request": [lambda r: bodies.append(r.read())]}, timeout=120)
    pixels = IMAGES["portrait"]
    prompts = [
        {"point_coords": [[60, 100]]},
        {"mode": "box", "box_coords": [10, 10, 100, 150]},
        {"mode": "auto", "points_per_side": 2, "pred_iou_thresh": 0, "stability_score_thresh": 0},
        {"mode": "lasso"},
    ]
    with Sam2Client(
        api_key=gateway_server.key, base_url=gateway_server.url, http_client=http
    ) as client:
        first = client.segment_batch(pixels, prompts)
        again = client.segment_batch(pixels, prompts[:1])
    assert [type(r) for r in first] == [
        Segmentation,
        Segmentation,
        AutoSegmentation,
        BatchItemError,
    ]
    assert isinstance(first[3], BatchItemError)
    assert first[3].code == "invalid_mode"
    assert isinstance(again[0], Segmentation)
    assert again[0].cached is True
    assert len(bodies[-1]) < 400  # the second batch named the image by its id


def test_usage_counts_this_keys_calls_in_both_clients(gateway_server: GatewayServer) -> None:
    pixels = scene(64, 96, seed=41)  # an image no other test sends: its upload is counted
    with Sam2Client(api_key=gateway_server.key, base_url=gateway_server.url) as client:
        before = client.usage(days=1)
        click = client.segment(pixels, points=[[20, 30]])
        after = client.usage(days=1)
        token = client.create_token(scopes=["segment"], ttl_s=60).token

    async def read_async() -> UsageResponse:
        async with AsyncSam2Client(
            api_key=gateway_server.key, base_url=gateway_server.url
        ) as async_client:
            return await async_client.usage(days=1)

    assert asyncio.run(read_async()) == after
    grew = {
        field: getattr(after.total, field) - getattr(before.total, field)
        for field in ("requests", "images", "masks", "gpu_ms")
    }
    assert (grew["requests"], grew["images"], grew["masks"]) == (1, 1, 1)
    assert grew["gpu_ms"] == pytest.approx(
        click.timings_ms["embed_ms"] + click.timings_ms["predict_ms"], abs=0.2
    )
    assert (after.rate_tier, after.limits.concurrent) == ("dev", 32)
    with (
        Sam2Client(api_key=token, base_url=gateway_server.url) as browser,
        pytest.raises(PermissionDeniedError, match="API key"),
    ):
        browser.usage()
