"""Sam2Client and AsyncSam2Client: the shared rules live in BaseClient (_base.py) and _http.py;
each client is its public methods (one line each), its public request primitives (`request`,
`stream`, `download`, which resources such as `videos` call) and one request loop (`_send`)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Sequence
from typing import Any, Unpack

import httpx
from sam2_contract.embedding import EmbeddingDtype
from sam2_contract.models import ModelInfo, ModelsResponse, TokenResponse, UsageResponse
from sam2_contract.overlay import RenderFormat

from sam2_sdk._base import BaseClient, fingerprint
from sam2_sdk._constants import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from sam2_sdk._exceptions import ImageNotCachedError, Sam2Error
from sam2_sdk._http import Call, FilePart, answer_json
from sam2_sdk._jobs import AsyncJobs, Jobs
from sam2_sdk._local import PROBE, DecoderCache, LocalSession
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
from sam2_sdk._videos import AsyncVideos, Videos


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
        self.jobs = Jobs(self)
        """Batch jobs: `client.jobs.create(items, request=...)`, `.wait()`, `.results()`."""

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
        answer = self.request("POST", "/v1/auth/token", body=self._token_fields(scopes, ttl_s))
        return TokenResponse.model_validate(answer)

    def models(self) -> ModelsResponse:
        return ModelsResponse.model_validate(self.request("GET", "/v1/models"))

    def usage(self, *, days: int = 30) -> UsageResponse:
        """This key's usage per UTC day over the last `days` (today included), and its limits."""
        return UsageResponse.model_validate(self.request("GET", self._usage_path(days)))

    def local(
        self,
        image: ImageInput,
        *,
        dtype: EmbeddingDtype = "float16",
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> LocalSession:
        """A session that decodes clicks on `image` in this process (`sam2-sdk[local]`): the
        image is uploaded once (or named by its image_id), its embedding downloaded as
        `dtype`, and the decoder downloaded once per model, kept in `cache_dir` by its ETag."""
        for _ in range(2):
            answer = self._on_image(image, dict(PROBE))
            try:
                embedding = self.download(self._embedding_path(answer["image_id"], dtype))
                break
            except ImageNotCachedError:
                self._forget(fingerprint(image), answer["image_id"])
        else:
            raise Sam2Error("the service kept losing this image's embedding; try again")
        model = ModelInfo.model_validate(answer["model"])
        cache = DecoderCache(cache_dir, model.name)
        got = self._send(Call("GET", cache.path, headers=cache.headers()))
        decoder = cache.answer(got.status_code, got.content, got.headers.get("etag", ""))
        return LocalSession(embedding, decoder, model)

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
                answer = self.request("POST", path, body=body)
                if self._answered(key, body, answer):
                    return answer
            except ImageNotCachedError:
                self._forget(key, body["image_id"])
        with self._upload_lock(key):
            if self._by_id(key, fields) is not None:  # another thread's upload finished
                return self._on_image(image, fields, path=path)
            answer = self.request("POST", path, body=fields, image=self._file(image))
            self._answered(key, fields, answer)
            return answer

    def _upload_lock(self, key: str) -> threading.Lock:
        """The lock an image's first upload holds: concurrent calls on a new image wait for
        it and then go by `image_id`, so the image is uploaded and encoded once."""
        with self._uploads_lock:
            return self._upload_locks.setdefault(key, threading.Lock())

    def request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        image: bytes | None = None,
        files: Sequence[FilePart] | None = None,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One API call with this client's retries, timeout and errors; its JSON answer (`{}`
        when empty). `image`: a segment upload; `files` and `fields`: a video or job upload;
        `headers`: sent too (e.g. `Idempotency-Key`)."""
        call = Call(method, path, body, image, files, fields, headers)
        return answer_json(self._send(call))

    def stream(self, path: str, body: dict[str, Any] | None) -> Generator[str, None, None]:
        """POST `body` (GET with None) and the answer's lines as they come (NDJSON); closing
        the iterator closes the connection, which stops the work."""
        response = self._send(Call("GET" if body is None else "POST", path, body), stream=True)
        try:
            yield from (line for line in response.iter_lines() if line)
        finally:
            response.close()

    def download(self, path: str) -> bytes:
        """GET a binary answer (an image file)."""
        return self._send(Call("GET", path)).content

    def _send(self, call: Call, *, stream: bool = False) -> httpx.Response:
        """The one request loop: send, and retry what may be retried (_http.py)."""
        attempt = 0
        while True:
            headers = self._headers() | (call.headers or {})
            request = self._http.build_request(
                call.method, self._url(call.path), headers=headers, **call.content()
            )
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                self._sleep(self._retry_or_raise(attempt, exc))
            else:
                if response.is_success or response.status_code == 304:
                    return response
                response.read()
                response.close()
                self._sleep(self._retry_or_raise(attempt, response))
            attempt += 1


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
        self.jobs = AsyncJobs(self)
        """Batch jobs: `await client.jobs.create(items, request=...)`, `.wait()`, `.results()`."""

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
        answer = await self.request(
            "POST", "/v1/auth/token", body=self._token_fields(scopes, ttl_s)
        )
        return TokenResponse.model_validate(answer)

    async def models(self) -> ModelsResponse:
        return ModelsResponse.model_validate(await self.request("GET", "/v1/models"))

    async def usage(self, *, days: int = 30) -> UsageResponse:
        """This key's usage per UTC day over the last `days` (today included), and its limits."""
        answer = await self.request("GET", self._usage_path(days))
        return UsageResponse.model_validate(answer)

    async def local(
        self,
        image: ImageInput,
        *,
        dtype: EmbeddingDtype = "float16",
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> LocalSession:
        """Sam2Client.local, awaited: the session's clicks then need no request (nor await)."""
        for _ in range(2):
            answer = await self._on_image(image, dict(PROBE))
            try:
                embedding = await self.download(self._embedding_path(answer["image_id"], dtype))
                break
            except ImageNotCachedError:
                self._forget(fingerprint(image), answer["image_id"])
        else:
            raise Sam2Error("the service kept losing this image's embedding; try again")
        model = ModelInfo.model_validate(answer["model"])
        cache = DecoderCache(cache_dir, model.name)
        got = await self._send(Call("GET", cache.path, headers=cache.headers()))
        decoder = cache.answer(got.status_code, got.content, got.headers.get("etag", ""))
        return LocalSession(embedding, decoder, model)

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
                answer = await self.request("POST", path, body=body)
                if self._answered(key, body, answer):
                    return answer
            except ImageNotCachedError:
                self._forget(key, body["image_id"])
        async with self._async_upload_locks.setdefault(key, asyncio.Lock()):
            if self._by_id(key, fields) is not None:  # another task's upload finished
                return await self._on_image(image, fields, path=path)
            answer = await self.request("POST", path, body=fields, image=self._file(image))
            self._answered(key, fields, answer)
            return answer

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        image: bytes | None = None,
        files: Sequence[FilePart] | None = None,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One API call with this client's retries, timeout and errors (see Sam2Client)."""
        call = Call(method, path, body, image, files, fields, headers)
        return answer_json(await self._send(call))

    async def stream(self, path: str, body: dict[str, Any] | None) -> AsyncGenerator[str, None]:
        """POST `body` (GET with None) and the answer's lines as they come (NDJSON)."""
        method = "GET" if body is None else "POST"
        response = await self._send(Call(method, path, body), stream=True)
        try:
            async for line in response.aiter_lines():
                if line:
                    yield line
        finally:
            await response.aclose()

    async def download(self, path: str) -> bytes:
        """GET a binary answer (an image file)."""
        return (await self._send(Call("GET", path))).content

    async def _send(self, call: Call, *, stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            headers = self._headers() | (call.headers or {})
            request = self._http.build_request(
                call.method, self._url(call.path), headers=headers, **call.content()
            )
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                await self._sleep(self._retry_or_raise(attempt, exc))
            else:
                if response.is_success or response.status_code == 304:
                    return response
                await response.aread()
                await response.aclose()
                await self._sleep(self._retry_or_raise(attempt, response))
            attempt += 1
