"""Where the gateway sends work: the inference service's HTTP app, the one hop both locally and
on Modal (a Modal Server behind Modal's proxy).

The request travels as one JSON line plus the image file as uploaded (sam2_contract.wire), with
a sticky-routing key per (tenant, image) and, on Modal, a proxy token; the answer comes back as
the inference service's JSON body with the mask count, model milliseconds and the headers the
client is promised.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from sam2_contract.errors import (
    PROBLEM_CONTENT_TYPE,
    ErrorCode,
    Sam2ServiceError,
    ServiceUnavailableError,
)
from sam2_contract.models import FieldError
from sam2_contract.wire import (
    DEADLINE_HEADER,
    FORWARDED_HEADERS,
    FRAME_CONTENT_TYPE,
    MASKS_HEADER,
    MODEL_MS_HEADER,
    NAMESPACE_HEADER,
    ROUTING_HEADER,
    pack_frame,
)

UNAVAILABLE_RETRY_AFTER_S = 1
REQUEST_ID_HEADER = "X-Request-ID"


@dataclass(frozen=True, slots=True)
class InferenceResult:
    """An inference answer as bytes, with what the gateway meters and passes on."""

    body: bytes
    masks: int
    model_ms: float
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Forwarded:
    """A video API answer passed on as it is."""

    status: int
    body: bytes
    content_type: str
    model_ms: float


@dataclass(frozen=True, slots=True)
class Hop:
    """Who a forwarded request is for, and where Modal should route it."""

    namespace: str
    request_id: str
    routing_key: str | None = None


class InferenceBackend(Protocol):
    async def segment(
        self, request_json: bytes, image_file: bytes | None, hop: Hop
    ) -> InferenceResult:
        """Run one request; raises Sam2ServiceError with the inference service's code."""
        ...

    async def cancel(self, hop: Hop) -> None:
        """Stop the work of `hop`'s request (its client went away)."""
        ...

    async def forward(
        self,
        method: str,
        path: str,
        hop: Hop,
        body: bytes | None = None,
        content_type: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> Forwarded:
        """Pass one call of the video API on as it is; raises Sam2ServiceError."""
        ...

    def stream(
        self, path: str, hop: Hop, body: bytes
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """POST `body` and read the answer as it comes (NDJSON); leaving the context closes
        the connection, which stops the work."""
        ...

    async def health(self) -> dict[str, Any]:
        """The inference service's /healthz body; raises ServiceUnavailableError."""
        ...

    async def aclose(self) -> None: ...


def unavailable(detail: str) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        detail, code=ErrorCode.INFERENCE_UNAVAILABLE, retry_after=UNAVAILABLE_RETRY_AFTER_S
    )


DEPENDENCY_RETRY_AFTER_S = 5
DEADLINE_MARGIN_S = 5.0


def dependency_down(name: str) -> ServiceUnavailableError:
    """A dependency of the gateway itself (the key store, the rate limiter) is unreachable."""
    return ServiceUnavailableError(
        f"the {name} is unavailable",
        code=ErrorCode.DEPENDENCY_UNAVAILABLE,
        retry_after=DEPENDENCY_RETRY_AFTER_S,
    )


def work_deadline_s(timeout_s: float) -> float:
    """The deadline the gateway gives inference for a call it waits `timeout_s` for."""
    return timeout_s - min(DEADLINE_MARGIN_S, timeout_s / 4)


def timed_out(limit_s: float) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"inference took longer than {limit_s:g} s", code=ErrorCode.INFERENCE_TIMEOUT
    )


class InferenceError(Sam2ServiceError):
    """A problem the inference service answered, with the model time the request used before
    it failed or was stopped (metered like a success's)."""

    model_ms: float = 0.0


class HttpBackend:
    """The inference service's HTTP app: the local service, or the Modal Server's URL.

    aiohttp rather than httpx for this hop: it is on every click, and aiohttp's round trip
    on loopback measured 0.6 ms shorter (bench/gateway.py)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float,
        connect_timeout_s: float,
        auth_headers: Mapping[str, str] | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=connect_timeout_s)
        self._auth_headers = dict(auth_headers or {})
        self._session: aiohttp.ClientSession | None = None

    async def segment(
        self, request_json: bytes, image_file: bytes | None, hop: Hop
    ) -> InferenceResult:
        headers = {
            "content-type": FRAME_CONTENT_TYPE,
            NAMESPACE_HEADER: hop.namespace,
            REQUEST_ID_HEADER: hop.request_id,
            # Inference stops a little before we give up, so its answer (and the model time
            # it used, which we meter) still reaches us.
            DEADLINE_HEADER: str(int(work_deadline_s(self._timeout_s) * 1000)),
        }
        if hop.routing_key is not None:
            headers[ROUTING_HEADER] = hop.routing_key
        status, answer_headers, answer = await self._send(
            "POST",
            "/internal/segment",
            data=pack_frame(request_json, image_file),
            headers=headers,
        )
        if status != 200:
            raise self._error(status, answer_headers, answer)
        return InferenceResult(
            body=answer,
            masks=int(answer_headers.get(MASKS_HEADER, "0")),
            model_ms=float(answer_headers.get(MODEL_MS_HEADER, "0")),
            headers={
                name: answer_headers[name] for name in FORWARDED_HEADERS if name in answer_headers
            },
        )

    async def cancel(self, hop: Hop) -> None:
        """Stop the work of `hop`'s request: its client went away. Routed like the request, so
        on Modal it reaches the container running it."""
        await self._send("POST", "/internal/cancel", headers=self._hop_headers(hop))

    async def forward(
        self,
        method: str,
        path: str,
        hop: Hop,
        body: bytes | None = None,
        content_type: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> Forwarded:
        sent = self._hop_headers(hop) | dict(headers or {})
        if content_type:
            sent["content-type"] = content_type
        status, answer_headers, answer = await self._send(method, path, data=body, headers=sent)
        if status >= 400:
            raise self._error(status, answer_headers, answer)
        return Forwarded(
            status=status,
            body=answer,
            content_type=answer_headers.get("content-type", "application/json"),
            model_ms=float(answer_headers.get(MODEL_MS_HEADER, "0")),
        )

    @asynccontextmanager
    async def stream(self, path: str, hop: Hop, body: bytes) -> AsyncIterator[AsyncIterator[bytes]]:
        headers = self._hop_headers(hop) | {"content-type": "application/json"}
        # No total limit: a stream lasts as long as the clip; each frame must come in time.
        timeout = aiohttp.ClientTimeout(total=None, sock_read=self._timeout_s)
        with self._translated():
            async with self._client().post(
                self._base_url + path, data=body, headers=headers, timeout=timeout
            ) as response:
                if response.status >= 400:
                    raise self._error(response.status, response.headers, await response.read())

                async def lines() -> AsyncIterator[bytes]:
                    with self._translated("the inference service broke off the stream"):
                        async for line in response.content:
                            yield line

                yield lines()

    def _hop_headers(self, hop: Hop) -> dict[str, str]:
        headers = {NAMESPACE_HEADER: hop.namespace, REQUEST_ID_HEADER: hop.request_id}
        if hop.routing_key is not None:
            headers[ROUTING_HEADER] = hop.routing_key
        return headers

    async def health(self) -> dict[str, Any]:
        status, _, answer = await self._send("GET", "/healthz")
        if status != 200:
            raise unavailable(f"inference /healthz answered {status}")
        body: dict[str, Any] = json.loads(answer)
        return body

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _send(
        self, method: str, path: str, **kwargs: Any
    ) -> tuple[int, Mapping[str, str], bytes]:
        with self._translated():
            async with self._client().request(method, self._base_url + path, **kwargs) as response:
                return response.status, response.headers, await response.read()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made here: a session belongs to the running event loop
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._auth_headers)
        return self._session

    @contextmanager
    def _translated(self, broken: str = "the inference service is unreachable") -> Iterator[None]:
        """aiohttp's failures as the problems the client is told."""
        try:
            yield
        except aiohttp.ConnectionTimeoutError:
            raise unavailable("the inference service did not accept the connection") from None
        except TimeoutError:
            raise timed_out(self._timeout_s) from None
        except aiohttp.ClientError:
            raise unavailable(broken) from None

    @staticmethod
    def _error(status: int, headers: Mapping[str, str], body: bytes) -> Sam2ServiceError:
        """The exception an inference problem answer stands for: the client sees its code."""
        if not headers.get("content-type", "").startswith(PROBLEM_CONTENT_TYPE):
            return unavailable(f"inference answered {status} without a problem body")
        problem = json.loads(body)
        try:
            code = ErrorCode(str(problem.get("code")))
        except ValueError:
            code = ErrorCode.INTERNAL_ERROR
        retry = headers.get("retry-after", "")
        error = InferenceError(
            str(problem.get("detail") or f"inference answered {status}"),
            code=code,
            hint=problem.get("hint"),
            errors=[FieldError.model_validate(e) for e in problem.get("errors") or []] or None,
            retry_after=int(retry) if retry.isdigit() else None,
        )
        error.model_ms = float(headers.get(MODEL_MS_HEADER, "0"))
        return error
