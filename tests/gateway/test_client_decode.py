"""Decoding clicks on the client, through the gateway (issue 29): the embedding of an uploaded
image and the decoder, downloaded, give the server's masks and scores; another key's image,
a bad dtype, an unknown model and a missing scope are refused as clicks are."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (sam2's spelling)
from fastapi.testclient import TestClient
from sam2_contract import decode_mask
from sam2_contract.embedding import decode_embedding
from support import RunningServer, bearer, decoder_feed, image_b64

ort = pytest.importorskip("onnxruntime")
CLICK = {"point_coords": [[60, 40], [100, 90]], "point_labels": [1, 0], "mask_format": "rle"}


@pytest.fixture
def local(make_client: Callable[..., TestClient], inference_server: RunningServer) -> TestClient:
    return make_client(inference_url=inference_server.url)


def test_a_click_decoded_on_the_client_is_the_servers_answer(
    local: TestClient, new_key: Callable[..., str]
) -> None:
    auth = bearer(new_key())
    served = local.post("/v1/segment", json={"image": image_b64("landscape")} | CLICK, headers=auth)
    answer = served.json()
    embedding = local.get(f"/v1/images/{answer['image_id']}/embedding?dtype=float32", headers=auth)
    assert embedding.status_code == 200, embedding.text
    assert embedding.headers["content-type"] == "application/vnd.sam2.embedding+safetensors"
    tensors, metadata = decode_embedding(embedding.content)
    assert (metadata["image_id"], metadata["height"], metadata["width"]) == (
        answer["image_id"],
        "120",
        "200",
    )
    decoder = local.get("/v1/models/tiny/decoder.onnx", headers=auth)
    assert decoder.status_code == 200
    etag = decoder.headers["etag"]
    again = local.get("/v1/models/tiny/decoder.onnx", headers=auth | {"if-none-match": etag})
    assert (again.status_code, again.content) == (304, b"")
    session = ort.InferenceSession(decoder.content)
    prompt = {"points": CLICK["point_coords"], "labels": CLICK["point_labels"]}
    masks, scores, _, _ = session.run(None, decoder_feed(tensors, prompt, (120, 200)))
    best = int(np.argmax(scores[0]))
    assert abs(float(scores[0][best]) - answer["score"]) < 1e-4
    up = F.interpolate(torch.from_numpy(masks), (120, 200), mode="bilinear")[0, best].numpy() > 0
    theirs = decode_mask(answer["mask"])
    iou = np.logical_and(up, theirs).sum() / max(np.logical_or(up, theirs).sum(), 1)
    assert iou >= 0.999


def test_another_keys_image_is_not_cached_for_this_one(
    local: TestClient, new_key: Callable[..., str]
) -> None:
    alice, bob = bearer(new_key()), bearer(new_key())
    image_id = local.post(
        "/v1/segment", json={"image": image_b64("portrait")} | CLICK, headers=alice
    ).json()["image_id"]
    refused = local.get(f"/v1/images/{image_id}/embedding", headers=bob)
    assert (refused.status_code, refused.json()["code"]) == (404, "image_not_cached")
    assert local.get(f"/v1/images/{image_id}/embedding", headers=alice).status_code == 200


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/images/img_" + "0" * 32 + "/embedding?dtype=float64", 422, "invalid_parameter"),
        ("/v1/images/img_" + "0" * 32 + "/embedding", 404, "image_not_cached"),
        ("/v1/models/large/decoder.onnx", 404, "model_not_found"),
        ("/v1/models/huge/decoder.onnx", 404, "model_not_found"),
        ("/v1/images/img_%3Fdtype%3Dint8%23/embedding", 404, "image_not_cached"),
    ],
)
def test_bad_requests_get_their_problem(
    local: TestClient, new_key: Callable[..., str], path: str, status: int, code: str
) -> None:
    answer = local.get(path, headers=bearer(new_key()))
    problem: dict[str, Any] = answer.json()
    assert (answer.status_code, problem["code"]) == (status, code)
    assert problem["hint"]


def test_a_key_without_the_segment_scope_is_refused(
    local: TestClient, new_key: Callable[..., str]
) -> None:
    video_only = bearer(new_key("video"))
    for path in ("/v1/images/img_" + "0" * 32 + "/embedding", "/v1/models/tiny/decoder.onnx"):
        answer = local.get(path, headers=video_only)
        assert (answer.status_code, answer.json()["code"]) == (403, "insufficient_scope")


def test_new_weights_under_the_same_name_are_a_new_decoder(
    local: TestClient,
    new_key: Callable[..., str],
    inference_server: RunningServer,
    reference_model: Any,
) -> None:
    """The gateway keeps the decoder, but asks inference each time whether it is current (by
    its ETag): after inference serves other weights under the same name (a redeploy), a
    client holding the old ETag gets the new file, not a 304 for the old one."""
    import copy

    from sam2_inference.image.client_decode import DecoderExport

    retrained = copy.deepcopy(reference_model)  # the same architecture, other decoder weights
    with torch.no_grad():
        retrained.sam_mask_decoder.iou_prediction_head.layers[-1].bias.add_(0.5)
    auth = bearer(new_key())
    first = local.get("/v1/models/tiny/decoder.onnx", headers=auth)
    engine = inference_server.engine
    served = engine.decoder_export
    engine.decoder_export = DecoderExport(retrained)
    try:
        again = local.get(
            "/v1/models/tiny/decoder.onnx", headers=auth | {"if-none-match": first.headers["etag"]}
        )
        assert again.status_code == 200
        assert again.headers["etag"] != first.headers["etag"]
        assert again.content != first.content
        assert ort.InferenceSession(again.content).get_inputs()[0].name == "image_embed"
    finally:
        engine.decoder_export = served
    back = local.get("/v1/models/tiny/decoder.onnx", headers=auth)
    assert (back.headers["etag"], back.content) == (first.headers["etag"], first.content)


def test_an_evicted_image_is_not_cached_and_the_sdk_sends_it_again(
    make_client: Callable[..., TestClient],
    new_key: Callable[..., str],
    loaded_engine: Any,
    settings: Any,
) -> None:
    """Behind an inference process whose cache holds one image, the first image's embedding is
    404 image_not_cached once a second image took its place; the SDK's local session uploads
    it again by itself and decodes the server's mask."""
    from sam2_inference import create_app as create_inference_app
    from sam2_inference.api.serving import BackgroundServer
    from sam2_sdk import Sam2Client
    from support import IMAGES, free_port, fresh_engine

    engine = fresh_engine(loaded_engine, cache_bytes=20 << 20)  # one image's 16 MiB of features
    port = free_port()
    server = BackgroundServer(create_inference_app(settings, engine=engine), "127.0.0.1", port)
    server.start()
    try:
        gateway = make_client(inference_url=f"http://127.0.0.1:{port}")
        key = new_key()
        with Sam2Client(api_key=key, base_url="http://testserver", http_client=gateway) as client:
            first = client.segment(IMAGES["landscape"], points=[[60, 40]]).image_id
            client.segment(IMAGES["portrait"], points=[[60, 40]])  # takes the first one's place
            gone = gateway.get(f"/v1/images/{first}/embedding", headers=bearer(key))
            assert (gone.status_code, gone.json()["code"]) == (404, "image_not_cached")
            assert gone.json()["hint"]
            # The client still holds the first image's id: its probe click by image_id is
            # refused, and it uploads the image again before downloading the embedding.
            local = client.local(IMAGES["landscape"], dtype="float32")
            assert local.image_id == first
            mine = local.segment(points=[[60, 40]])
            theirs = client.segment(IMAGES["landscape"], points=[[60, 40]])
        assert np.logical_xor(mine.mask, theirs.mask).mean() < 1e-3
    finally:
        server.stop()
