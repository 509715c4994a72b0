"""Sam2Client and AsyncSam2Client: one base for the rules, two thin I/O loops.

Embedding reuse without thinking: the client remembers which `image_id` the service gave each
image (by a hash of its bytes); later calls on the same image send only that id, and if the
service has let it go (`image_not_cached`) the client sends the image again, once, by itself.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
from PIL import Image
from sam2_contract.masks import decode_mask
from sam2_contract.models import ModelsResponse, TokenResponse

from sam2_sdk._constants import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    INITIAL_RETRY_DELAY_S,
    MAX_RETRY_DELAY_S,
    RETRY_STATUSES,
)
from sam2_sdk._exceptions import (
    APIConnectionError,
    APITimeoutError,
    ImageNotCachedError,
    Sam2Error,
    error_for,
)

ImageInput = str | os.PathLike[str] | bytes | Image.Image | npt.NDArray[Any]
# Coordinates as lists, tuples or numpy arrays (numpy scalars inside are fine too).
Points = Sequence[Sequence[float]] | npt.NDArray[Any]
Labels = Sequence[int] | npt.NDArray[Any]
Box = Sequence[float] | npt.NDArray[Any]
BoolMask = npt.NDArray[np.bool_]
_REMEMBERED_IMAGES = 256


@dataclass(frozen=True)
class Segmentation:
    """A point or box answer: the best mask, and every box's best mask for a box list."""

    mask: BoolMask
    score: float
    all_scores: list[float]
    image_shape: tuple[int, int]
    image_id: str
    cached: bool
    timings_ms: dict[str, float]
    masks: list[BoolMask] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_pil(self) -> Image.Image:
        return Image.fromarray(self.mask)


@dataclass(frozen=True)
class AutoMaskResult:
    mask: BoolMask
    area: int
    bbox: list[float]
    predicted_iou: float
    stability_score: float


@dataclass(frozen=True)
class AutoSegmentation:
    masks: list[AutoMaskResult]
    image_shape: tuple[int, int]
    image_id: str
    cached: bool
    timings_ms: dict[str, float]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class BatchItemError:
    """One batch item that failed; the others still ran."""

    status: int
    code: str
    detail: str
    hint: str | None


BatchResult = Segmentation | AutoSegmentation | BatchItemError


def parse_batch(answer: dict[str, Any]) -> list[BatchResult]:
    results: list[BatchResult] = []
    for item in answer["results"]:
        if item["status"] == 200:
            results.append(parse_answer(item["result"]))
        else:
            error = item["error"]
            results.append(
                BatchItemError(item["status"], error["code"], error["detail"], error.get("hint"))
            )
    return results


def image_bytes(image: ImageInput) -> bytes:
    """The file bytes to upload: files and bytes as they are, arrays and PIL images as PNG."""
    if isinstance(image, bytes):
        return image
    if isinstance(image, str | os.PathLike):
        return Path(image).read_bytes()
    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def fingerprint(image: ImageInput) -> str:
    """What names an image for embedding reuse, without encoding it: the hash of a file's
    bytes, or of an array's (or PIL image's) pixels with their shape and type. Encoding a
    12-megapixel array to PNG just to recognise it took seconds."""
    digest = hashlib.sha256()
    if isinstance(image, bytes | str | os.PathLike):
        digest.update(b"file:" + image_bytes(image))
    elif isinstance(image, Image.Image):
        digest.update(f"pil:{image.mode}:{image.size}:".encode() + image.tobytes())
    else:
        array = np.ascontiguousarray(np.asarray(image))
        digest.update(f"array:{array.dtype.str}:{array.shape}:".encode())
        digest.update(array.reshape(-1).view(np.uint8).data)
    return digest.hexdigest()


def plain(value: Any) -> Any:
    """Lists of Python numbers from lists, tuples, numpy arrays or numpy scalars (JSON-ready)."""
    return None if value is None else np.asarray(value).tolist()


def parse_answer(answer: dict[str, Any]) -> Segmentation | AutoSegmentation:
    shape = (int(answer["image_shape"][0]), int(answer["image_shape"][1]))
    if "masks" in answer:
        return AutoSegmentation(
            masks=[
                AutoMaskResult(
                    mask=decode_mask(m["segmentation"]),
                    area=m["area"],
                    bbox=m["bbox"],
                    predicted_iou=m["predicted_iou"],
                    stability_score=m["stability_score"],
                )
                for m in answer["masks"]
            ],
            image_shape=shape,
            image_id=answer["image_id"],
            cached=answer["cached"],
            timings_ms=answer["timings_ms"],
            raw=answer,
        )
    return Segmentation(
        mask=decode_mask(answer["mask"]),
        score=answer["score"],
        all_scores=answer["all_scores"],
        image_shape=shape,
        image_id=answer["image_id"],
        cached=answer["cached"],
        timings_ms=answer["timings_ms"],
        masks=[decode_mask(p["mask"]) for p in answer.get("predictions") or []],
        raw=answer,
    )


class _BaseClient:
    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        max_retries: int,
    ) -> None:
        key = api_key or os.environ.get("SAM2_API_KEY")
        if not key:
            raise Sam2Error("no API key: pass api_key=... or set SAM2_API_KEY")
        self.api_key = key
        self.base_url = (base_url or os.environ.get("SAM2_BASE_URL") or DEFAULT_BASE_URL).rstrip(
            "/"
        )
        self.max_retries = max_retries
        self._image_ids: OrderedDict[str, str] = OrderedDict()
        self._uploads_lock = threading.Lock()
        self._upload_locks: dict[str, threading.Lock] = {}

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def _retry_delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Retry-After when the service gives one, else exponential backoff with jitter."""
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), 60.0)
            except ValueError:
                pass
        delay: float = min(INITIAL_RETRY_DELAY_S * 2**attempt, MAX_RETRY_DELAY_S)
        return delay * (1 - 0.25 * random.random())  # noqa: S311 (jitter, not a secret)

    def _upload_lock(self, key: str) -> threading.Lock:
        """The lock an image's first upload holds: concurrent calls on a new image wait for
        it and then go by `image_id`, so the image is uploaded and encoded once."""
        with self._uploads_lock:
            return self._upload_locks.setdefault(key, threading.Lock())

    def _remember_from(self, fingerprint: str, answer: dict[str, Any]) -> None:
        """Keep the image_id an answer (or a batch's first success) carries."""
        results = answer.get("results")
        carried = (
            [r["result"]["image_id"] for r in results if r["status"] == 200] if results else None
        )
        image_id = answer.get("image_id") or (carried[0] if carried else None)
        if image_id:
            self._remember(fingerprint, image_id)

    def _forget(self, fingerprint: str, image_id: str) -> None:
        """The service let this image go: the next call uploads it again (unless a concurrent
        call already did and remembered a new id)."""
        if self._image_ids.get(fingerprint) == image_id:
            self._image_ids.pop(fingerprint, None)

    def _remember(self, fingerprint: str, image_id: str) -> None:
        self._image_ids[fingerprint] = image_id
        self._image_ids.move_to_end(fingerprint)
        while len(self._image_ids) > _REMEMBERED_IMAGES:
            self._image_ids.popitem(last=False)

    @staticmethod
    def _prompt_fields(
        points: Points | None,
        labels: Labels | None,
        box: Box | None,
        boxes: Points | None,
        multimask: bool,
        model: str | None,
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "mode": "box" if box is not None or boxes is not None else "point",
            "mask_format": "rle",
            "multimask_output": multimask,
        }
        optional: dict[str, Any] = {
            "point_coords": plain(points),
            "point_labels": plain(labels),
            "model": model,
        }
        optional["box_coords"] = plain(boxes if boxes is not None else box)
        return fields | {k: v for k, v in optional.items() if v is not None}


def _missed(answer: dict[str, Any]) -> bool:
    """Whether a batch sent by image_id found the embedding gone (its items say so)."""
    results = answer.get("results") or []
    return any(r.get("error", {}).get("code") == "image_not_cached" for r in results)


class Sam2Client(_BaseClient):
    """Synchronous client. `http_client` lets you bring your own httpx.Client."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(api_key=api_key, base_url=base_url, max_retries=max_retries)
        self._http = http_client or httpx.Client(timeout=timeout)
        self._sleep = sleep

    def segment(
        self,
        image: ImageInput,
        *,
        points: Points | None = None,
        labels: Labels | None = None,
        box: Box | None = None,
        boxes: Points | None = None,
        multimask: bool = True,
        model: str | None = None,
    ) -> Segmentation:
        """Points and/or a box (or a list of boxes, one mask each)."""
        fields = self._prompt_fields(points, labels, box, boxes, multimask, model)
        answer = parse_answer(self._on_image(image, fields))
        assert isinstance(answer, Segmentation)
        return answer

    def segment_auto(self, image: ImageInput, **knobs: Any) -> AutoSegmentation:
        """Everything in the image; `knobs` are the auto-mode fields (points_per_side, ...)."""
        answer = parse_answer(self._on_image(image, {"mode": "auto", "mask_format": "rle"} | knobs))
        assert isinstance(answer, AutoSegmentation)
        return answer

    def segment_batch(self, image: ImageInput, requests: list[dict[str, Any]]) -> list[BatchResult]:
        """Several prompt sets (API field names) on one image, in one call, uploaded once."""
        items = [{"mask_format": "rle"} | request for request in requests]
        return parse_batch(self._on_image(image, {"requests": items}, path="/v1/segment/batch"))

    def create_token(
        self, *, scopes: list[str] | None = None, ttl_s: int | None = None
    ) -> TokenResponse:
        """A short-lived token for a browser (call this on your server, with the API key)."""
        body = {k: v for k, v in {"scopes": scopes, "ttl_s": ttl_s}.items() if v is not None}
        return TokenResponse.model_validate(self._request("POST", "/v1/auth/token", body))

    def models(self) -> ModelsResponse:
        return ModelsResponse.model_validate(self._request("GET", "/v1/models", None))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Sam2Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _on_image(
        self, image: ImageInput, fields: dict[str, Any], *, path: str = "/v1/segment"
    ) -> dict[str, Any]:
        key = fingerprint(image)
        known = self._image_ids.get(key)
        if known is not None:
            try:
                answer = self._request("POST", path, {"image_id": known} | fields)
                if not _missed(answer):
                    return answer
            except ImageNotCachedError:
                pass
            self._forget(key, known)
        with self._upload_lock(key):
            known = self._image_ids.get(key)  # another thread's upload finished meanwhile
            if known is not None:
                return self._on_image(image, fields, path=path)
            body = {"image": base64.b64encode(image_bytes(image)).decode()} | fields
            answer = self._request("POST", path, body)
            self._remember_from(key, answer)
            return answer

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = self._http.request(
                    method, self.base_url + path, json=body, headers=self._headers()
                )
            except httpx.TimeoutException as exc:
                if last:
                    raise APITimeoutError(
                        "the service did not answer in time", request=exc.request
                    ) from exc
                self._sleep(self._retry_delay(attempt, None))
                continue
            except httpx.TransportError as exc:
                if last:
                    raise APIConnectionError(f"cannot reach {self.base_url}: {exc}") from exc
                self._sleep(self._retry_delay(attempt, None))
                continue
            if response.is_success:
                answer: dict[str, Any] = response.json()
                return answer
            if response.status_code in RETRY_STATUSES and not last:
                self._sleep(self._retry_delay(attempt, response))
                continue
            raise error_for(response)
        raise AssertionError("unreachable")  # pragma: no cover


class AsyncSam2Client(_BaseClient):
    """Asynchronous client, the same methods as Sam2Client, awaited."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(api_key=api_key, base_url=base_url, max_retries=max_retries)
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._sleep = sleep
        self._async_upload_locks: dict[str, asyncio.Lock] = {}

    def _async_upload_lock(self, key: str) -> asyncio.Lock:
        """As `_upload_lock`, for tasks on one event loop."""
        return self._async_upload_locks.setdefault(key, asyncio.Lock())

    async def segment(
        self,
        image: ImageInput,
        *,
        points: Points | None = None,
        labels: Labels | None = None,
        box: Box | None = None,
        boxes: Points | None = None,
        multimask: bool = True,
        model: str | None = None,
    ) -> Segmentation:
        fields = self._prompt_fields(points, labels, box, boxes, multimask, model)
        answer = parse_answer(await self._on_image(image, fields))
        assert isinstance(answer, Segmentation)
        return answer

    async def segment_auto(self, image: ImageInput, **knobs: Any) -> AutoSegmentation:
        answer = parse_answer(
            await self._on_image(image, {"mode": "auto", "mask_format": "rle"} | knobs)
        )
        assert isinstance(answer, AutoSegmentation)
        return answer

    async def segment_batch(
        self, image: ImageInput, requests: list[dict[str, Any]]
    ) -> list[BatchResult]:
        items = [{"mask_format": "rle"} | request for request in requests]
        answer = await self._on_image(image, {"requests": items}, path="/v1/segment/batch")
        return parse_batch(answer)

    async def create_token(
        self, *, scopes: list[str] | None = None, ttl_s: int | None = None
    ) -> TokenResponse:
        body = {k: v for k, v in {"scopes": scopes, "ttl_s": ttl_s}.items() if v is not None}
        return TokenResponse.model_validate(await self._request("POST", "/v1/auth/token", body))

    async def models(self) -> ModelsResponse:
        return ModelsResponse.model_validate(await self._request("GET", "/v1/models", None))

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncSam2Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _on_image(
        self, image: ImageInput, fields: dict[str, Any], *, path: str = "/v1/segment"
    ) -> dict[str, Any]:
        key = fingerprint(image)
        known = self._image_ids.get(key)
        if known is not None:
            try:
                answer = await self._request("POST", path, {"image_id": known} | fields)
                if not _missed(answer):
                    return answer
            except ImageNotCachedError:
                pass
            self._forget(key, known)
        async with self._async_upload_lock(key):
            known = self._image_ids.get(key)  # another task's upload finished meanwhile
            if known is not None:
                return await self._on_image(image, fields, path=path)
            data = image_bytes(image)
            body = {"image": base64.b64encode(data).decode()} | fields
            answer = await self._request("POST", path, body)
            self._remember_from(key, answer)
            return answer

    async def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = await self._http.request(
                    method, self.base_url + path, json=body, headers=self._headers()
                )
            except httpx.TimeoutException as exc:
                if last:
                    raise APITimeoutError(
                        "the service did not answer in time", request=exc.request
                    ) from exc
                await self._sleep(self._retry_delay(attempt, None))
                continue
            except httpx.TransportError as exc:
                if last:
                    raise APIConnectionError(f"cannot reach {self.base_url}: {exc}") from exc
                await self._sleep(self._retry_delay(attempt, None))
                continue
            if response.is_success:
                answer: dict[str, Any] = response.json()
                return answer
            if response.status_code in RETRY_STATUSES and not last:
                await self._sleep(self._retry_delay(attempt, response))
                continue
            raise error_for(response)
        raise AssertionError("unreachable")  # pragma: no cover
