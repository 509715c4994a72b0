"""The answer-size budget: an answer over the bound is refused with a hint before it is built
(before any model work when an upload's size shows it), answers in flight share one pool of
memory that is given back once sent, and bool2d answers are the same bytes as before."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sam2_contract import decode_mask
from sam2_contract.errors import ErrorCode, InvalidRequestError, ServiceUnavailableError
from sam2_contract.masks import bool2d_json, bool2d_json_bytes, encode_bool2d
from sam2_contract.models import SegmentRequest
from sam2_gateway.core import answers
from sam2_gateway.core.answers import AnswerMemory
from sam2_inference import Sam2Engine
from sam2_inference.scheduling.lock import Work
from support import RunningServer, bearer, encode, scene

MakeClient = Callable[..., TestClient]
BIG = (3468, 4624)  # 16 MP, the largest image accepted
CLICK = {"point_coords": [[60, 40]], "point_labels": [1]}


def _photo(height: int, width: int) -> str:
    """A JPEG of that size (a smooth scene, so the file stays small)."""
    small = scene(-(-height // 16), -(-width // 16))
    pixels = np.kron(small, np.ones((16, 16, 1), dtype=np.uint8))[:height, :width]
    return base64.b64encode(encode(pixels, "JPEG", quality=70)).decode()


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (257, 3), (300, 451), (513, 700)])
def test_bool2d_bytes_are_what_the_nested_lists_serialise_to(shape: tuple[int, int]) -> None:
    mask = np.random.default_rng(sum(shape)).random(shape) < 0.4
    expected = json.dumps(encode_bool2d(mask), separators=(",", ":")).encode()
    assert bool2d_json(mask) == expected
    assert len(bool2d_json(np.zeros(shape, dtype=bool))) <= bool2d_json_bytes(*shape)


@pytest.mark.parametrize("boxes", [8, 64])
def test_the_16_mp_box_list_in_bool2d_is_refused_before_inference_is_asked(
    make_client: MakeClient, new_key: Callable[..., str], boxes: int
) -> None:
    """The campaign's reproduction: a 4624x3468 photo, `boxes` boxes, every candidate mask,
    bool2d (the default). Inference is not even reachable here (a closed port): the answer's
    size shows from the upload's header, so the refusal costs no model time."""
    client = make_client(max_body_bytes=32 * 2**20)
    body = {
        "image": _photo(*BIG),
        "mode": "box",
        "box_coords": [[0, 0, 4000, 3000]] * boxes,
        "return_all_masks": True,
    }
    answer = client.post("/v1/segment", json=body, headers=bearer(new_key()))
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["code"] == "answer_too_large"
    assert f"{boxes} masks as bool2d" in problem["detail"]
    assert "rle" in problem["hint"]
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_an_answer_over_the_bound_by_image_id_is_refused_once_inference_answers(
    make_client: MakeClient, new_key: Callable[..., str], inference_server: RunningServer
) -> None:
    """By `image_id` the gateway does not know the size until inference answers; it checks
    the answer's RLE before building any bool2d. Smaller formats of the same answer pass."""
    one_mask = bool2d_json_bytes(300, 451)
    client = make_client(inference_url=inference_server.url, max_answer_bytes=2 * one_mask)
    key = new_key()
    first = client.post(
        "/v1/segment", json={"image": _photo(300, 451)} | CLICK, headers=bearer(key)
    )
    assert first.status_code == 200, first.text  # one bool2d mask fits
    image_id = first.json()["image_id"]
    all_masks = {"image_id": image_id, "return_all_masks": True} | CLICK
    refused = client.post("/v1/segment", json=all_masks, headers=bearer(key))
    assert (refused.status_code, refused.json()["code"]) == (422, "answer_too_large")
    assert "4 masks as bool2d" in refused.json()["detail"]
    as_rle = client.post(
        "/v1/segment", json=all_masks | {"mask_format": "rle"}, headers=bearer(key)
    )
    as_png = client.post(
        "/v1/segment", json=all_masks | {"mask_format": "png"}, headers=bearer(key)
    )
    assert as_rle.status_code == as_png.status_code == 200
    for rle, png in zip(as_rle.json()["all_masks"], as_png.json()["all_masks"], strict=True):
        assert np.array_equal(decode_mask(rle), decode_mask(png))
    gateway_state: Any = client.app.state.gateway  # type: ignore[attr-defined]
    assert gateway_state.answers.used == 0  # every answer's memory given back once sent


def test_inference_refuses_an_answer_past_the_gateways_bound_before_any_model_work(
    engine: Sam2Engine,
) -> None:
    """The gateway sends its bound with each prompt request (X-Sam2-Answer-Limit): inference,
    which knows the image's size by `image_id`, refuses masks that could not be answered
    before it runs the model (the campaign's 8 boxes took 1.8 GB and 8 s of it before)."""
    photo = base64.b64decode(_photo(300, 451))
    first = engine.segment(SegmentRequest(image=base64.b64encode(photo).decode(), **CLICK))
    all_masks = SegmentRequest(image_id=first.image_id, return_all_masks=True, **CLICK)
    work = Work()
    limit = ("bool2d", 3 * bool2d_json_bytes(300, 451))  # room for 3 masks; 4 are asked for
    with pytest.raises(InvalidRequestError, match="4 masks as bool2d") as refused:
        engine.segment(all_masks, work=work, answer_limit=limit)
    assert refused.value.code == ErrorCode.ANSWER_TOO_LARGE
    assert work.model_ms == 0  # refused before the model ran
    fits = engine.segment(all_masks, work=work, answer_limit=("bool2d", 4 * limit[1] // 3))
    assert len(fits.all_masks or []) == 3  # the 4 the check counted: the best and 3 candidates
    assert work.model_ms > 0


def test_a_batch_item_past_the_bound_fails_alone(
    make_client: MakeClient, new_key: Callable[..., str], inference_server: RunningServer
) -> None:
    one_mask = bool2d_json_bytes(300, 451)
    client = make_client(inference_url=inference_server.url, max_answer_bytes=int(2.5 * one_mask))
    key = new_key()
    body = {"image": _photo(300, 451), "requests": [CLICK, CLICK, CLICK | {"mask_format": "rle"}]}
    answer = client.post("/v1/segment/batch", json=body, headers=bearer(key))
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["status"] for r in results] == [200, 200, 200]
    assert len(results[0]["result"]["mask"]) == 300  # bool2d rows
    second = client.post(
        "/v1/segment/batch",
        json={"image_id": results[0]["result"]["image_id"], "requests": [CLICK] * 3},
        headers=bearer(key),
    )
    assert [r["status"] for r in second.json()["results"]] == [200, 200, 422]
    assert second.json()["results"][2]["error"]["code"] == "answer_too_large"


async def test_answers_in_flight_share_one_pool_and_wait_then_get_503(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(answers, "ANSWER_WAIT_S", 0.3)
    memory = AnswerMemory(per_answer=100, total=150)
    first = await memory.take(100)
    with pytest.raises(ServiceUnavailableError) as busy:
        await memory.take(100)
    assert busy.value.code is ErrorCode.GATEWAY_BUSY
    assert busy.value.retry_after == 1
    waiting = asyncio.ensure_future(memory.take(100))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    first()
    first()  # giving back twice gives back once
    second = await asyncio.wait_for(waiting, 1)
    assert memory.used == 100
    second()
    assert memory.used == 0
