"""The Python SDK against a scripted service (httpx.MockTransport at the HTTP boundary, and an
injected clock): retries, backoff, Retry-After, error mapping, image_id reuse, decoding."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
import sam2_sdk
from pycocotools import mask as coco
from sam2_contract import encode_rle
from sam2_sdk import Sam2Client

MASK = np.zeros((4, 6), dtype=bool)
MASK[1:3, 2:5] = True
ANSWER = {
    "mask": encode_rle(MASK).model_dump(),
    "score": 0.9,
    "all_scores": [0.9, 0.5, 0.1],
    "image_shape": [4, 6],
    "image_id": "img_" + "a" * 32,
    "cached": False,
    "timings_ms": {"total_ms": 1.0},
}
IMAGE = np.zeros((4, 6, 3), dtype=np.uint8)


def _problem(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {
        "type": f"urn:sam2:error:{code}",
        "title": "t",
        "status": status,
        "detail": "d",
        "code": code,
        "hint": "h",
    }
    return httpx.Response(
        status, json=body, headers={"content-type": "application/problem+json"} | (headers or {})
    )


def _client(
    handler: Callable[[httpx.Request], httpx.Response], sleeps: list[float], **kw: Any
) -> Sam2Client:
    transport = httpx.MockTransport(handler)
    return Sam2Client(
        api_key="sam2_k",
        base_url="http://sam2.test",
        http_client=httpx.Client(transport=transport),
        sleep=sleeps.append,
        **kw,
    )


def test_retries_5xx_with_growing_jittered_backoff_then_succeeds() -> None:
    answers = [
        _problem(503, "inference_unavailable"),
        _problem(502, "internal_error"),
        httpx.Response(200, json=ANSWER),
    ]
    sleeps: list[float] = []
    result = _client(lambda _: answers.pop(0), sleeps).segment(IMAGE, points=[[1, 1]])
    assert result.score == 0.9
    assert len(sleeps) == 2
    assert 0.375 <= sleeps[0] <= 0.5  # 0.5 s, minus up to 25 % jitter
    assert 0.75 <= sleeps[1] <= 1.0


def test_honours_retry_after_on_429_and_gives_up_after_max_retries() -> None:
    sleeps: list[float] = []
    client = _client(
        lambda _: _problem(429, "rate_limited", {"retry-after": "3"}), sleeps, max_retries=2
    )
    with pytest.raises(sam2_sdk.RateLimitError) as info:
        client.segment(IMAGE, points=[[1, 1]])
    assert sleeps == [3.0, 3.0]
    assert info.value.code == "rate_limited"
    assert info.value.hint == "h"


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (400, "invalid_json", sam2_sdk.BadRequestError),
        (401, "invalid_api_key", sam2_sdk.AuthenticationError),
        (403, "insufficient_scope", sam2_sdk.PermissionDeniedError),
        (413, "image_too_large", sam2_sdk.PayloadTooLargeError),
        (422, "invalid_point_label", sam2_sdk.UnprocessableEntityError),
    ],
)
def test_errors_are_typed_and_not_retried(status: int, code: str, error: type[Exception]) -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def handler(_: httpx.Request) -> httpx.Response:
        calls.append(1)
        return _problem(status, code)

    with pytest.raises(error) as info:
        _client(handler, sleeps).segment(IMAGE, points=[[1, 1]])
    assert isinstance(info.value, sam2_sdk.APIStatusError)
    assert info.value.status_code == status
    assert info.value.code == code
    assert (len(calls), sleeps) == (1, [])


def test_timeouts_and_connection_errors() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    sleeps: list[float] = []
    with pytest.raises(sam2_sdk.APITimeoutError):
        _client(timeout, sleeps).segment(IMAGE, points=[[1, 1]])
    assert len(sleeps) == 2
    with pytest.raises(sam2_sdk.APIConnectionError):
        _client(refused, sleeps, max_retries=0).segment(IMAGE, points=[[1, 1]])


def test_image_id_is_reused_and_the_image_resent_when_evicted() -> None:
    sent: list[str] = []
    evicted = {"now": False}

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append("image" if "image" in body else "image_id")
        if "image_id" in body and evicted["now"]:
            evicted["now"] = False
            return _problem(404, "image_not_cached")
        return httpx.Response(200, json=ANSWER)

    client = _client(handler, [])
    client.segment(IMAGE, points=[[1, 1]])
    client.segment(IMAGE, points=[[2, 2]])
    evicted["now"] = True
    client.segment(IMAGE, points=[[3, 3]])
    client.segment(IMAGE.copy(), points=[[4, 4]])  # equal bytes: the same image
    assert sent == ["image", "image_id", "image_id", "image", "image_id"]


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools
def test_masks_decode_from_rle_like_pycocotools() -> None:
    rng = np.random.default_rng(3)
    mask = rng.random((37, 53)) < 0.4
    answer = ANSWER | {"mask": encode_rle(mask).model_dump(), "image_shape": [37, 53]}
    result = _client(lambda _: httpx.Response(200, json=answer), []).segment(IMAGE, points=[[1, 1]])
    rle = answer["mask"]
    expected = coco.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
    assert np.array_equal(result.mask, expected)
    assert result.to_pil().size == (53, 37)


def test_api_key_and_base_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAM2_API_KEY", raising=False)
    with pytest.raises(sam2_sdk.Sam2Error, match="SAM2_API_KEY"):
        Sam2Client()
    monkeypatch.setenv("SAM2_API_KEY", "sam2_from_env")
    monkeypatch.setenv("SAM2_BASE_URL", "http://elsewhere:9000/")
    seen: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(200, json=ANSWER))
    Sam2Client(http_client=httpx.Client(transport=transport)).segment(IMAGE, points=[[1, 1]])
    assert seen[0].headers["authorization"] == "Bearer sam2_from_env"
    assert str(seen[0].url) == "http://elsewhere:9000/v1/segment"


def test_numpy_points_boxes_and_scalars_are_sent_as_json_numbers() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json=ANSWER)

    client = _client(handler, [])
    client.segment(IMAGE, points=np.array([[1.5, 2]]), labels=np.array([1]))
    client.segment(IMAGE, points=[(np.float32(3), np.int64(4))], labels=[np.int64(0)])
    client.segment(IMAGE, box=np.array([0, 0, 5, 3], dtype=np.int32))
    client.segment(IMAGE, boxes=np.array([[0, 0, 2, 2], [1, 1, 5, 3]]))
    assert [b.get("point_coords") for b in bodies[:2]] == [[[1.5, 2.0]], [[3.0, 4]]]
    assert [b.get("point_labels") for b in bodies[:2]] == [[1], [0]]
    assert bodies[2]["box_coords"] == [0, 0, 5, 3]
    assert bodies[3]["box_coords"] == [[0, 0, 2, 2], [1, 1, 5, 3]]


def test_an_array_is_recognised_by_its_pixels_and_encoded_only_to_upload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoded: list[int] = []
    real = sam2_sdk._client.image_bytes
    monkeypatch.setattr(
        sam2_sdk._client, "image_bytes", lambda image: encoded.append(1) or real(image)
    )
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json=ANSWER)

    client = _client(handler, [])
    picture = np.random.default_rng(0).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    client.segment(picture, points=[[1, 1]])
    client.segment(picture.copy(), points=[[2, 2]])  # equal pixels: the same image
    client.segment(np.ascontiguousarray(picture[:, ::-1]), points=[[2, 2]])  # other pixels
    assert ["image" in b for b in bodies] == [True, False, True]
    assert len(encoded) == 2  # the uploads only, never to recognise the image


def _counting_handler(uploads: list[int], delay_s: float) -> Callable[..., Any]:
    async def handler(request: httpx.Request) -> httpx.Response:
        if "image" in json.loads(request.content):
            uploads.append(1)
            await asyncio.sleep(delay_s)  # the encoder pass
        return httpx.Response(200, json=ANSWER)

    return handler


async def test_concurrent_calls_on_a_new_image_upload_it_once_async() -> None:
    uploads: list[int] = []
    transport = httpx.MockTransport(_counting_handler(uploads, 0.05))
    async with sam2_sdk.AsyncSam2Client(
        api_key="sam2_k",
        base_url="http://sam2.test",
        http_client=httpx.AsyncClient(transport=transport),
    ) as client:
        answers = await asyncio.gather(*(client.segment(IMAGE, points=[[x, 1]]) for x in range(4)))
    assert len(uploads) == 1
    assert {a.image_id for a in answers} == {ANSWER["image_id"]}


def test_concurrent_calls_on_a_new_image_upload_it_once_threads() -> None:
    uploads: list[int] = []
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        if "image" in json.loads(request.content):
            with lock:
                uploads.append(1)
            time.sleep(0.05)
        return httpx.Response(200, json=ANSWER)

    client = _client(handler, [])
    threads = [
        threading.Thread(target=client.segment, args=(IMAGE,), kwargs={"points": [[x, 1]]})
        for x in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(uploads) == 1


async def test_the_async_client_retries_maps_errors_and_times_out() -> None:
    sleeps: list[float] = []
    script = [httpx.Response(503), _problem(429, "rate_limited", {"retry-after": "2"})]

    async def flaky(request: httpx.Request) -> httpx.Response:
        return script.pop(0) if script else httpx.Response(200, json=ANSWER)

    async def record(delay: float) -> None:
        sleeps.append(delay)

    def make(handler: Callable[..., Any], retries: int = 2) -> sam2_sdk.AsyncSam2Client:
        return sam2_sdk.AsyncSam2Client(
            api_key="sam2_k",
            base_url="http://sam2.test",
            max_retries=retries,
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
            sleep=record,
        )

    answer = await make(flaky).segment(IMAGE, points=[[1, 1]])
    assert answer.score == ANSWER["score"]
    assert len(sleeps) == 2
    assert sleeps[1] == 2.0  # Retry-After

    async def refuse(request: httpx.Request) -> httpx.Response:
        return _problem(422, "invalid_box")

    with pytest.raises(sam2_sdk.UnprocessableEntityError) as refused:
        await make(refuse).segment(IMAGE, box=[5, 5, 1, 1])
    assert refused.value.code == "invalid_box"

    async def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(sam2_sdk.APITimeoutError):
        await make(hang, retries=1).segment(IMAGE, points=[[1, 1]])
