"""Where the gateway sends work: the inference service over HTTP (local), or a Modal call.

Both take the request as one JSON line plus decoded pixels (sam2_contract.wire) and give back
the inference service's JSON body untouched, with the mask count and model milliseconds it
reported, so the gateway never re-encodes an image nor parses a large mask body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx
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
    """The inference service's HTTP app, reached over the network (the local stack)."""

    def __init__(self, base_url: str, *, timeout_s: float, connect_timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
        )

    async def segment(
        self, request_json: bytes, pixels: Pixels | None, *, namespace: str, request_id: str
    ) -> InferenceResult:
        body, headers = pack_frame(request_json, pixels)
        headers |= {
            "content-type": FRAME_CONTENT_TYPE,
            NAMESPACE_HEADER: namespace,
            REQUEST_ID_HEADER: request_id,
        }
        response = await self._send("POST", "/internal/segment", content=body, headers=headers)
        if response.status_code != 200:
            raise self._error(response)
        return InferenceResult(
            body=response.content,
            masks=int(response.headers.get(MASKS_HEADER, "0")),
            model_ms=float(response.headers.get(MODEL_MS_HEADER, "0")),
        )

    async def health(self) -> dict[str, Any]:
        response = await self._send("GET", "/healthz")
        if response.status_code != 200:
            raise unavailable(f"inference /healthz answered {response.status_code}")
        body: dict[str, Any] = response.json()
        return body

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            if isinstance(exc, httpx.ConnectTimeout):
                raise unavailable("the inference service did not accept the connection") from None
            raise timed_out(self._timeout_s) from None
        except httpx.TransportError:
            raise unavailable("the inference service is unreachable") from None

    @staticmethod
    def _error(response: httpx.Response) -> Sam2ServiceError:
        if response.headers.get("content-type", "").startswith(PROBLEM_CONTENT_TYPE):
            problem = response.json()
            retry = response.headers.get("retry-after")
            if retry and retry.isdigit():
                problem["retry_after"] = int(retry)
            return error_from_problem(response.status_code, problem)
        return unavailable(f"inference answered {response.status_code} without a problem body")
