"""Sam2Client and AsyncSam2Client: the shared rules live in BaseClient (_base.py); each client
is its public methods (one line each) and one request loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Sequence
from typing import Any, Unpack

import httpx
from sam2_contract.models import ModelsResponse, TokenResponse, UsageResponse
from sam2_contract.overlay import RenderFormat

from sam2_sdk._base import BaseClient, fingerprint
from sam2_sdk._constants import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from sam2_sdk._exceptions import ImageNotCachedError, error_for
from sam2_sdk._types import (
    AutoOptions,
    AutoSegmentation,
    BatchResult,
    Box,
    ImageInput,
    Labels,
    Points,
    Segmentation,
    SegmentObject,
    parse_auto,
    parse_batch,
    parse_prompt,
)
from sam2_sdk._video import AsyncVideos, Videos


class Sam2Client(BaseClient):
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
        self._uploads_lock = threading.Lock()
        self._upload_locks: dict[str, threading.Lock] = {}
        self.videos = Videos(self)
        """Clips and tracking sessions: `client.videos.upload(...)`, `.session(video)`."""

    def segment(
        self,
        image: ImageInput,
        *,
        points: Points | None = None,
        labels: Labels | None = None,
        box: Box | None = None,
        boxes: Points | None = None,
        multimask: bool = True,
        refine: str | None = None,
        model: str | None = None,
        objects: Sequence[SegmentObject] | None = None,
        render: RenderFormat | None = None,
    ) -> Segmentation:
        """Points and/or a box (or a list of boxes, one mask each). `refine`: an earlier
        answer's `mask_id` on this image, to correct that mask (send all the object's points).
        `objects`: several objects in one call, each `{points, labels, box, refine}`, one mask
        each in `predictions` (instead of the other prompt arguments). `render`: "png" or
        "jpeg" to get `overlay`, the image with the masks drawn."""
        fields = self._prompt_fields(
            points, labels, box, boxes, multimask, refine, model, objects, render
        )
        return parse_prompt(self._on_image(image, fields))

    def segment_auto(self, image: ImageInput, **options: Unpack[AutoOptions]) -> AutoSegmentation:
        """Everything in the image (automatic mode), with the API's options by name."""
        return parse_auto(self._on_image(image, self._auto_fields(options)))

    def segment_batch(self, image: ImageInput, requests: list[dict[str, Any]]) -> list[BatchResult]:
        """Several prompt sets (API field names) on one image, in one call, uploaded once."""
        answer = self._on_image(image, self._batch_fields(requests), path="/v1/segment/batch")
        return parse_batch(answer)

    def create_token(
        self, *, scopes: list[str] | None = None, ttl_s: int | None = None
    ) -> TokenResponse:
        """A short-lived token for a browser (call this on your server, with the API key)."""
        answer = self._request("POST", "/v1/auth/token", self._token_fields(scopes, ttl_s))
        return TokenResponse.model_validate(answer)

    def models(self) -> ModelsResponse:
        return ModelsResponse.model_validate(self._request("GET", "/v1/models", None))

    def usage(self, *, days: int = 30) -> UsageResponse:
        """This key's usage per UTC day over the last `days` (today included), and its limits."""
        return UsageResponse.model_validate(self._request("GET", self._usage_path(days), None))

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
        body = self._by_id(key, fields)
        if body is not None:
            try:
                answer = self._request("POST", path, body)
                if self._answered(key, body, answer):
                    return answer
            except ImageNotCachedError:
                self._forget(key, body["image_id"])
        with self._upload_lock(key):
            if self._by_id(key, fields) is not None:  # another thread's upload finished
                return self._on_image(image, fields, path=path)
            answer = self._request("POST", path, fields, file=self._file(image))
            self._answered(key, fields, answer)
            return answer

    def _upload_lock(self, key: str) -> threading.Lock:
        """The lock an image's first upload holds: concurrent calls on a new image wait for
        it and then go by `image_id`, so the image is uploaded and encoded once."""
        with self._uploads_lock:
            return self._upload_locks.setdefault(key, threading.Lock())

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None, *, file: bytes | None = None
    ) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    method, self._url(path), headers=self._headers(), **self._body(body, file)
                )
            except httpx.TransportError as exc:
                self._sleep(self._retry_or_raise(attempt, exc))
            else:
                if response.is_success:
                    answer: dict[str, Any] = response.json()
                    return answer
                self._sleep(self._retry_or_raise(attempt, response))
            attempt += 1

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        files: list[tuple[str, bytes]] | None = None,
        data: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One call of the video API, with the same retries; `{}` for an empty answer."""
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    method, self._url(path), headers=self._headers(), **_content(body, files, data)
                )
            except httpx.TransportError as exc:
                self._sleep(self._retry_or_raise(attempt, exc))
            else:
                if response.is_success:
                    return _json(response)
                self._sleep(self._retry_or_raise(attempt, response))
            attempt += 1

    def _lines(self, path: str, body: dict[str, Any]) -> Generator[str, None, None]:
        """POST `body` and the answer's lines as they come (NDJSON); closing the iterator
        closes the connection, which stops the work."""
        request = self._http.build_request(
            "POST", self._url(path), headers=self._headers(), json=body
        )
        response = self._http.send(request, stream=True)
        try:
            if not response.is_success:
                response.read()
                raise error_for(response)
            yield from (line for line in response.iter_lines() if line)
        finally:
            response.close()


class AsyncSam2Client(BaseClient):
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
        self.videos = AsyncVideos(self)
        """Clips and tracking sessions: `client.videos.upload(...)`, `.session(video)`."""

    async def segment(
        self,
        image: ImageInput,
        *,
        points: Points | None = None,
        labels: Labels | None = None,
        box: Box | None = None,
        boxes: Points | None = None,
        multimask: bool = True,
        refine: str | None = None,
        model: str | None = None,
        objects: Sequence[SegmentObject] | None = None,
        render: RenderFormat | None = None,
    ) -> Segmentation:
        """Points and/or a box (or a list of boxes, one mask each). `refine`: an earlier
        answer's `mask_id` on this image, to correct that mask (send all the object's points).
        `objects`: several objects in one call, each `{points, labels, box, refine}`, one mask
        each in `predictions` (instead of the other prompt arguments). `render`: "png" or
        "jpeg" to get `overlay`, the image with the masks drawn."""
        fields = self._prompt_fields(
            points, labels, box, boxes, multimask, refine, model, objects, render
        )
        return parse_prompt(await self._on_image(image, fields))

    async def segment_auto(
        self, image: ImageInput, **options: Unpack[AutoOptions]
    ) -> AutoSegmentation:
        """Everything in the image (automatic mode), with the API's options by name."""
        return parse_auto(await self._on_image(image, self._auto_fields(options)))

    async def segment_batch(
        self, image: ImageInput, requests: list[dict[str, Any]]
    ) -> list[BatchResult]:
        """Several prompt sets (API field names) on one image, in one call, uploaded once."""
        fields = self._batch_fields(requests)
        return parse_batch(await self._on_image(image, fields, path="/v1/segment/batch"))

    async def create_token(
        self, *, scopes: list[str] | None = None, ttl_s: int | None = None
    ) -> TokenResponse:
        """A short-lived token for a browser (call this on your server, with the API key)."""
        answer = await self._request("POST", "/v1/auth/token", self._token_fields(scopes, ttl_s))
        return TokenResponse.model_validate(answer)

    async def models(self) -> ModelsResponse:
        return ModelsResponse.model_validate(await self._request("GET", "/v1/models", None))

    async def usage(self, *, days: int = 30) -> UsageResponse:
        """This key's usage per UTC day over the last `days` (today included), and its limits."""
        answer = await self._request("GET", self._usage_path(days), None)
        return UsageResponse.model_validate(answer)

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
        body = self._by_id(key, fields)
        if body is not None:
            try:
                answer = await self._request("POST", path, body)
                if self._answered(key, body, answer):
                    return answer
            except ImageNotCachedError:
                self._forget(key, body["image_id"])
        async with self._async_upload_locks.setdefault(key, asyncio.Lock()):
            if self._by_id(key, fields) is not None:  # another task's upload finished
                return await self._on_image(image, fields, path=path)
            answer = await self._request("POST", path, fields, file=self._file(image))
            self._answered(key, fields, answer)
            return answer

    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None, *, file: bytes | None = None
    ) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    method, self._url(path), headers=self._headers(), **self._body(body, file)
                )
            except httpx.TransportError as exc:
                await self._sleep(self._retry_or_raise(attempt, exc))
            else:
                if response.is_success:
                    answer: dict[str, Any] = response.json()
                    return answer
                await self._sleep(self._retry_or_raise(attempt, response))
            attempt += 1

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        files: list[tuple[str, bytes]] | None = None,
        data: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    method, self._url(path), headers=self._headers(), **_content(body, files, data)
                )
            except httpx.TransportError as exc:
                await self._sleep(self._retry_or_raise(attempt, exc))
            else:
                if response.is_success:
                    return _json(response)
                await self._sleep(self._retry_or_raise(attempt, response))
            attempt += 1

    async def _lines(self, path: str, body: dict[str, Any]) -> AsyncGenerator[str, None]:
        request = self._http.build_request(
            "POST", self._url(path), headers=self._headers(), json=body
        )
        response = await self._http.send(request, stream=True)
        try:
            if not response.is_success:
                await response.aread()
                raise error_for(response)
            async for line in response.aiter_lines():
                if line:
                    yield line
        finally:
            await response.aclose()


def _content(
    body: dict[str, Any] | None,
    files: list[tuple[str, bytes]] | None,
    data: dict[str, str] | None,
) -> dict[str, Any]:
    """httpx's arguments: JSON, or files (and fields) as `multipart/form-data`."""
    if files is None:
        return {} if body is None else {"json": body}
    parts = [
        (name, (f"{name}-{i}", content, "application/octet-stream"))
        for i, (name, content) in enumerate(files)
    ]
    return {"files": parts, "data": data or {}}


def _json(response: httpx.Response) -> dict[str, Any]:
    if response.status_code == 204 or not response.content:
        return {}
    answer: dict[str, Any] = response.json()
    return answer
