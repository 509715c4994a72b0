"""The Python SDK against a scripted service (httpx.MockTransport at the HTTP boundary, and an
injected clock): retries, backoff, Retry-After, error mapping, image_id reuse, decoding."""

from __future__ import annotations

import json
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
