"""The HTTP edge both services share: problem+json handlers, request ids, bounded body reads.

Imports Starlette, so only the services (which have FastAPI) import this module; the rest of
the contract stays free of web-framework dependencies for the Python SDK.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sam2_contract.errors import (
    PROBLEM_CONTENT_TYPE,
    ErrorCode,
    InternalServiceError,
    NotFoundError,
    PayloadTooLargeError,
    Sam2ServiceError,
    UnsupportedMediaTypeError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
DISCONNECT_POLL_S = 0.1

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def problem_response(exc: Sam2ServiceError, request: Request) -> JSONResponse:
    """The RFC 9457 response for an error, with the request's id and path."""
    request_id = getattr(request.state, "request_id", None)
    problem = exc.to_problem(instance=request.url.path, request_id=request_id)
    headers = exc.response_headers()
    if request_id:
        headers = headers | {REQUEST_ID_HEADER: request_id}
    return JSONResponse(
        problem.model_dump(mode="json", exclude_none=True),
        status_code=exc.status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def install_problem_handlers(app: Starlette) -> None:
    """Every error, 404 and 405 and unexpected ones included, as problem+json, never a trace."""

    async def service_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Sam2ServiceError)
        return problem_response(exc, request)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            error = NotFoundError(
                f"{request.method} is not allowed on {request.url.path}",
                code=ErrorCode.METHOD_NOT_ALLOWED,
            )
            error.headers |= {"Allow": (exc.headers or {}).get("Allow", "")}
        else:
            error = NotFoundError(f"there is no {request.url.path}")
        return problem_response(error, request)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path)
        return problem_response(InternalServiceError("an unexpected error occurred"), request)

    app.add_exception_handler(Sam2ServiceError, service_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


class RequestIdMiddleware:
    """Echo a well-formed `X-Request-ID`, or make one; handlers find it on `request.state`.

    Plain ASGI rather than BaseHTTPMiddleware: it runs on every call, so it should cost nothing.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        await self.app(scope, receive, send_with_id)


def install_request_ids(app: Starlette) -> None:
    app.add_middleware(RequestIdMiddleware)


async def read_body(
    request: Request, limit: int, *, content_type: str = "application/json"
) -> bytes:
    """The body, refusing another content type (415) and stopping at `limit` bytes (413)."""
    given = request.headers.get("content-type", "")
    if given.split(";")[0].strip().lower() != content_type:
        raise UnsupportedMediaTypeError(
            f"expected {content_type}, got {given or 'no content type'}"
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"the body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def unless_abandoned(
    request: Request, work: Awaitable[T], on_abandon: Callable[[], Awaitable[None]]
) -> T:
    """Await `work`, checking every DISCONNECT_POLL_S whether the client has gone away; if it
    has, run `on_abandon` once (stop the work rather than finish it for nobody) and go on
    waiting for `work`, which then ends soon with what it used so far."""
    task = asyncio.ensure_future(work)
    abandoned = False
    while not task.done():
        await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
        if not task.done() and not abandoned and await request.is_disconnected():
            abandoned = True
            await on_abandon()
    return task.result()


class StreamWithCleanup(StreamingResponse):
    """A streamed answer whose `cleanup` runs once the response is over, however it ends:
    sent in full, cut off by the client, or never started (a client gone before the first
    byte, where the body's own `finally` would never run). What a stream holds (a session's
    exclusive use, a concurrency slot, the upstream connection) is released there."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        cleanup: Callable[[], Awaitable[None]],
        media_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self._cleanup = cleanup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._cleanup()
