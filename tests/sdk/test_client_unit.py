"""The Python SDK against a scripted service (httpx.MockTransport at the HTTP boundary, and an
injected clock): retries, backoff, Retry-After, error mapping, image_id reuse, decoding, typed
answers and options. The failure paths run on both clients, Sam2Client and AsyncSam2Client."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from email.parser import BytesParser
from typing import Any, get_type_hints

import httpx
import numpy as np
import pytest
import sam2_sdk
from PIL import Image
from pycocotools import mask as coco
from sam2_contract import encode_rle
from sam2_contract.models import ModelInfo, PromptSegmentResponse, SegmentRequest
from sam2_sdk import AutoOptions, Sam2Client

MASK = np.zeros((4, 6), dtype=bool)
MASK[1:3, 2:5] = True
ANSWER = {
    "mask": encode_rle(MASK).model_dump(),
    "score": 0.9,
    "all_scores": [0.9, 0.5, 0.1],
    "image_shape": [4, 6],
    "image_id": "img_" + "a" * 32,
    "cached": False,
    "mode": "point",
    "mask_format": "rle",
    "model": {
        "name": "tiny",
        "model_id": "facebook/sam2.1-hiera-tiny",
        "weights": "random",
        "random_weights": True,
        "device": "cpu",
        "dtype": "float32",
    },
    "timings_ms": {
        "decode_ms": 1.0,
        "embed_ms": 2.0,
        "predict_ms": 3.0,
        "encode_ms": 0.5,
        "total_ms": 7.0,
    },
    "warnings": ["random weights: masks are meaningless"],
}
IMAGE = np.zeros((4, 6, 3), dtype=np.uint8)


def _fields(request: httpx.Request) -> dict[str, Any]:
    """The request's fields as the gateway reads them: a JSON body, or a multipart body's
    `request` part with its `image` file part as "image" (bytes)."""
    kind = request.headers["content-type"]
    if kind.startswith("application/json"):
        fields: dict[str, Any] = json.loads(request.content)
        return fields
    assert kind.startswith("multipart/form-data"), kind
    head = f"Content-Type: {kind}\r\n\r\n".encode()
    message = BytesParser().parsebytes(head + request.content)
    parts = {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
        for part in message.get_payload()  # type: ignore[union-attr]
    }
    assert set(parts) == {"image", "request"}
    return json.loads(parts["request"]) | {"image": parts["image"]}


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


class _Blocking:
    """An AsyncSam2Client whose methods run to completion on a loop of its own, so that one
    test body checks both clients."""

    def __init__(self, client: sam2_sdk.AsyncSam2Client) -> None:
        self._client = client
        self.loop = asyncio.new_event_loop()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._client, name)
        return lambda *args, **kwargs: self.loop.run_until_complete(method(*args, **kwargs))


Make = Callable[..., Any]


@pytest.fixture(params=["sync", "async"])
def make(request: pytest.FixtureRequest) -> Iterator[Make]:
    """Builds a client of each kind on a scripted transport; the async one's sleeps are
    recorded the same way."""
    loops: list[asyncio.AbstractEventLoop] = []

    def build(
        handler: Callable[[httpx.Request], httpx.Response], sleeps: list[float], **kw: Any
    ) -> Any:
        if request.param == "sync":
            return _client(handler, sleeps, **kw)

        async def record(delay: float) -> None:
            sleeps.append(delay)

        client = _Blocking(
            sam2_sdk.AsyncSam2Client(
                api_key="sam2_k",
                base_url="http://sam2.test",
                http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
                sleep=record,
                **kw,
            )
        )
        loops.append(client.loop)
        return client

    yield build
    for loop in loops:
        loop.close()


def test_retries_5xx_with_growing_jittered_backoff_then_succeeds(make: Make) -> None:
    answers = [
        _problem(503, "inference_unavailable"),
        _problem(502, "internal_error"),
        httpx.Response(200, json=ANSWER),
    ]
    sleeps: list[float] = []
    result = make(lambda _: answers.pop(0), sleeps).segment(IMAGE, points=[[1, 1]])
    assert result.score == 0.9
    assert len(sleeps) == 2
    assert 0.375 <= sleeps[0] <= 0.5  # 0.5 s, minus up to 25 % jitter
    assert 0.75 <= sleeps[1] <= 1.0


def test_honours_retry_after_on_429_and_gives_up_after_max_retries(make: Make) -> None:
    sleeps: list[float] = []
    client = make(
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
def test_errors_are_typed_and_not_retried(
    make: Make, status: int, code: str, error: type[Exception]
) -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def handler(_: httpx.Request) -> httpx.Response:
        calls.append(1)
        return _problem(status, code)

    with pytest.raises(error) as info:
        make(handler, sleeps).segment(IMAGE, points=[[1, 1]])
    assert isinstance(info.value, sam2_sdk.APIStatusError)
    assert info.value.status_code == status
    assert info.value.code == code
    assert (len(calls), sleeps) == (1, [])


def test_timeouts_and_connection_errors(make: Make) -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    sleeps: list[float] = []
    with pytest.raises(sam2_sdk.APITimeoutError):
        make(timeout, sleeps).segment(IMAGE, points=[[1, 1]])
    assert len(sleeps) == 2
    with pytest.raises(sam2_sdk.APIConnectionError, match=r"cannot reach http://sam2\.test"):
        make(refused, sleeps, max_retries=0).segment(IMAGE, points=[[1, 1]])
    assert len(sleeps) == 2  # no retry left: no wait


def test_image_id_is_reused_and_the_image_resent_when_evicted(make: Make) -> None:
    sent: list[str] = []
    evicted = {"now": False}

    def handler(request: httpx.Request) -> httpx.Response:
        body = _fields(request)
        sent.append("image" if "image" in body else "image_id")
        if "image_id" in body and evicted["now"]:
            evicted["now"] = False
            return _problem(404, "image_not_cached")
        return httpx.Response(200, json=ANSWER)

    client = make(handler, [])
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


def test_numpy_points_boxes_and_scalars_are_sent_as_json_numbers(make: Make) -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(_fields(request))
        return httpx.Response(200, json=ANSWER)

    client = make(handler, [])
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
    real = sam2_sdk._base.image_bytes
    monkeypatch.setattr(
        sam2_sdk._base, "image_bytes", lambda image: encoded.append(1) or real(image)
    )
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(_fields(request))
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
        if "image" in _fields(request):
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
        if "image" in _fields(request):
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


def test_answers_are_the_contracts_models_with_warnings_model_and_timings(make: Make) -> None:
    boxes = ANSWER | {
        "mode": "box",
        "predictions": [
            {"mask": ANSWER["mask"], "score": 0.7, "all_scores": [0.7]},
            {"mask": encode_rle(~MASK).model_dump(), "score": 0.4, "all_scores": [0.4]},
        ],
    }
    answers = [ANSWER, boxes]
    client = make(lambda _: httpx.Response(200, json=answers.pop(0)), [])
    click = client.segment(IMAGE, points=[[1, 1]])
    assert click.warnings == ["random weights: masks are meaningless"]
    assert isinstance(click.model, ModelInfo)
    assert (click.model.name, click.model.random_weights) == ("tiny", True)
    assert (click.timings.embed_ms, click.timings.total_ms) == (2.0, 7.0)
    assert isinstance(click.response, PromptSegmentResponse)
    per_box = client.segment(IMAGE, boxes=[[0, 0, 2, 2], [1, 1, 5, 3]])
    assert [p.score for p in per_box.predictions] == [0.7, 0.4]
    assert np.array_equal(per_box.predictions[1].mask, ~MASK)
    assert np.array_equal(per_box.masks[0], MASK)


def test_an_answer_that_breaks_the_contract_is_an_error_not_a_half_result(make: Make) -> None:
    broken = {k: v for k, v in ANSWER.items() if k != "score"}
    client = make(lambda _: httpx.Response(200, json=broken), [])
    with pytest.raises(sam2_sdk.APIResponseValidationError, match="PromptSegmentResponse"):
        client.segment(IMAGE, points=[[1, 1]])


def test_the_auto_options_are_the_contracts_automatic_mode_fields() -> None:
    """Every automatic-mode field of the API is a typed keyword of segment_auto(), with the
    contract's type, and nothing else is."""
    contract = {
        name: info.annotation
        for name, info in SegmentRequest.model_fields.items()
        if (info.description or "").startswith("Auto mode:")
    }
    options = get_type_hints(AutoOptions)
    shared = {"model", "render"}  # not automatic mode's own, but they apply to it
    assert set(options) == set(contract) | shared
    assert {name: options[name] for name in contract} == contract
    assert options["render"] | None == SegmentRequest.model_fields["render"].annotation


def test_segment_auto_sends_its_options_and_refuses_unknown_ones(make: Make) -> None:
    auto_answer = {k: v for k, v in ANSWER.items() if k not in ("mask", "score", "all_scores")}
    auto_answer |= {
        "mode": "auto",
        "count": 1,
        "masks": [
            {
                "segmentation": ANSWER["mask"],
                "area": int(MASK.sum()),
                "bbox": [2.0, 1.0, 3.0, 2.0],
                "predicted_iou": 0.9,
                "stability_score": 0.97,
                "point_coords": [[3.0, 2.0]],
                "crop_box": [0.0, 0.0, 6.0, 4.0],
            }
        ],
    }
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(_fields(request))
        return httpx.Response(200, json=auto_answer)

    client = make(handler, [])
    auto = client.segment_auto(IMAGE, points_per_side=8, crop_n_layers=1, use_m2m=True)
    assert {k: bodies[0][k] for k in ("mode", "points_per_side", "crop_n_layers", "use_m2m")} == {
        "mode": "auto",
        "points_per_side": 8,
        "crop_n_layers": 1,
        "use_m2m": True,
    }
    assert np.array_equal(auto.masks[0].mask, MASK)
    assert auto.masks[0].crop_box == [0.0, 0.0, 6.0, 4.0]
    assert auto.warnings == ANSWER["warnings"]
    with pytest.raises(TypeError, match=r"unknown key\(s\) mode; .*use segment\(\)"):
        client.segment_auto(IMAGE, mode="box")
    assert len(bodies) == 1  # refused before anything was sent


def test_a_file_is_uploaded_as_it_is_then_named_by_its_id(make: Make, tmp_path: Any) -> None:
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((4, 6, 3), 200, dtype=np.uint8)).save(photo)
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json=ANSWER)

    client = make(handler, [])
    client.segment(photo, points=[[1, 1]])
    client.segment(photo, points=[[2, 2]])
    first, second = (_fields(r) for r in requests)
    assert requests[0].headers["content-type"].startswith("multipart/form-data")
    assert first["image"] == photo.read_bytes()  # the file's bytes, no base64
    assert first["point_coords"] == [[1, 1]]
    assert requests[1].headers["content-type"] == "application/json"
    assert second["image_id"] == ANSWER["image_id"]
    assert "image" not in second


def _once_unavailable(
    ok: Callable[[], httpx.Response],
) -> Callable[[httpx.Request], httpx.Response]:
    """503 with Retry-After: 0 on the first call, `ok()` after."""
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return _problem(503, "inference_unavailable", {"retry-after": "0"})
        return ok()

    return handler


def test_every_request_primitive_shares_one_retry_and_error_path() -> None:
    """JSON, a video upload, the NDJSON stream and a binary download each retry a 503 after its
    Retry-After, and a 404 is the typed error, in the sync client and the async one."""

    def lines() -> httpx.Response:
        return httpx.Response(200, content=b'{"frame_index":0}\n\n{"done":true}\n')

    def png() -> httpx.Response:
        return httpx.Response(200, content=b"\x89PNG...", headers={"content-type": "image/png"})

    sleeps: list[float] = []
    sync = _client(_once_unavailable(lambda: httpx.Response(200, json={"ok": 1})), sleeps)
    assert sync.request("GET", "/v1/models") == {"ok": 1}
    upload = _client(_once_unavailable(lambda: httpx.Response(200, json={"video_id": "v"})), sleeps)
    assert upload.request("POST", "/v1/videos", files=[("frames", b"x")], fields={"fps": "2"})
    assert list(_client(_once_unavailable(lines), sleeps).stream("/p", {})) == [
        '{"frame_index":0}',
        '{"done":true}',
    ]
    assert _client(_once_unavailable(png), sleeps).download("/f") == b"\x89PNG..."
    assert sleeps == [0.0, 0.0, 0.0, 0.0]
    missing = _client(lambda r: _problem(404, "video_not_found"), sleeps)
    with pytest.raises(sam2_sdk.VideoNotFoundError):
        missing.download("/f")
    with pytest.raises(sam2_sdk.VideoNotFoundError):
        list(missing.stream("/p", {}))

    async def run_async() -> tuple[list[str], bytes]:
        waits: list[float] = []

        async def record(delay: float) -> None:
            waits.append(delay)

        def client(handler: Callable[[httpx.Request], httpx.Response]) -> Any:
            transport = httpx.MockTransport(handler)
            return sam2_sdk.AsyncSam2Client(
                api_key="sam2_k",
                base_url="http://sam2.test",
                http_client=httpx.AsyncClient(transport=transport),
                sleep=record,
            )

        streamed = [line async for line in client(_once_unavailable(lines)).stream("/p", {})]
        downloaded = await client(_once_unavailable(png)).download("/f")
        assert waits == [0.0, 0.0]
        with pytest.raises(sam2_sdk.VideoNotFoundError):
            await client(lambda r: _problem(404, "video_not_found")).download("/f")
        return streamed, downloaded

    assert asyncio.run(run_async()) == (['{"frame_index":0}', '{"done":true}'], b"\x89PNG...")
