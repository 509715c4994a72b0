"""Where the gateway sends work: the inference service over HTTP (local), or a Modal call.

Both take the request as one JSON line plus decoded pixels (sam2_contract.wire) and give back
the inference service's JSON body untouched, with the mask count and model milliseconds it
reported, so the gateway never re-encodes an image nor parses a large mask body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from sam2_contract.errors import (
    PROBLEM_CONTENT_TYPE,
    ErrorCode,
    Sam2ServiceError,
    ServiceUnavailableError,
)
from sam2_contract.images import Pixels
from sam2_contract.models import FieldError
from sam2_contract.wire import FRAME_CONTENT_TYPE, MASKS_HEADER, MODEL_MS_HEADER, pack_frame

UNAVAILABLE_RETRY_AFTER_S = 1
NAMESPACE_HEADER = "X-Sam2-Namespace"
REQUEST_ID_HEADER = "X-Request-ID"


@dataclass(frozen=True, slots=True)
class InferenceResult:
    """An inference answer as bytes, with what the gateway meters."""

    body: bytes
    masks: int
    model_ms: float


class InferenceBackend(Protocol):
    async def segment(
        self, request_json: bytes, pixels: Pixels | None, *, namespace: str, request_id: str
    ) -> InferenceResult:
        """Run one request; raises Sam2ServiceError with the inference service's code."""
        ...

    async def health(self) -> dict[str, Any]:
        """The inference service's /healthz body; raises ServiceUnavailableError."""
        ...

    async def aclose(self) -> None: ...


def unavailable(detail: str) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        detail, code=ErrorCode.INFERENCE_UNAVAILABLE, retry_after=UNAVAILABLE_RETRY_AFTER_S
    )


def timed_out(limit_s: float) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"inference took longer than {limit_s:g} s", code=ErrorCode.INFERENCE_TIMEOUT
    )


def error_from_problem(status: int, problem: dict[str, Any]) -> Sam2ServiceError:
    """The exception an inference problem body stands for, so the client sees the same code."""
    try:
        code = ErrorCode(str(problem.get("code")))
    except ValueError:
        code = ErrorCode.INTERNAL_ERROR
    retry = problem.get("retry_after")
    return Sam2ServiceError(
        str(problem.get("detail") or f"inference answered {status}"),
        code=code,
        hint=problem.get("hint"),
        errors=[FieldError.model_validate(e) for e in problem.get("errors") or []] or None,
        retry_after=int(retry) if isinstance(retry, int) else None,
    )


class HttpBackend:
    """The inference service's HTTP app, reached over the network (the local stack).

    aiohttp rather than httpx for this hop: it is on every click, and aiohttp's round trip
    on loopback measured 0.6 ms shorter (bench/gateway.py)."""

    def __init__(self, base_url: str, *, timeout_s: float, connect_timeout_s: float) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=connect_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def segment(
        self, request_json: bytes, pixels: Pixels | None, *, namespace: str, request_id: str
    ) -> InferenceResult:
        body, headers = pack_frame(request_json, pixels)
        headers |= {
            "content-type": FRAME_CONTENT_TYPE,
            NAMESPACE_HEADER: namespace,
            REQUEST_ID_HEADER: request_id,
        }
        status, answer_headers, answer = await self._send(
            "POST", "/internal/segment", data=body, headers=headers
        )
        if status != 200:
            raise self._error(status, answer_headers, answer)
        return InferenceResult(
            body=answer,
            masks=int(answer_headers.get(MASKS_HEADER, "0")),
            model_ms=float(answer_headers.get(MODEL_MS_HEADER, "0")),
        )

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
        if self._session is None:  # made here: a session belongs to the running event loop
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.request(method, self._base_url + path, **kwargs) as response:
                return response.status, response.headers, await response.read()
        except aiohttp.ConnectionTimeoutError:
            raise unavailable("the inference service did not accept the connection") from None
        except TimeoutError:
            raise timed_out(self._timeout_s) from None
        except aiohttp.ClientError:
            raise unavailable("the inference service is unreachable") from None

    @staticmethod
    def _error(status: int, headers: Mapping[str, str], body: bytes) -> Sam2ServiceError:
        if headers.get("content-type", "").startswith(PROBLEM_CONTENT_TYPE):
            problem = json.loads(body)
            retry = headers.get("retry-after")
            if retry and retry.isdigit():
                problem["retry_after"] = int(retry)
            return error_from_problem(status, problem)
        return unavailable(f"inference answered {status} without a problem body")
