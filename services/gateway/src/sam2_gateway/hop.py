"""What a call to inference is and what it answers, whatever carries it: the hop's data
(`Hop`, `InferenceResult`, `Forwarded`), the `InferenceBackend` protocol the routes call, and
the errors and deadlines of the hop. `backends.HttpBackend` is its one implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from sam2_contract.errors import (
    PROBLEM_CONTENT_TYPE,
    ErrorCode,
    Sam2ServiceError,
    ServiceUnavailableError,
)

UNAVAILABLE_RETRY_AFTER_S = 1
STARTING_RETRY_AFTER_S = 5
COLD_START_BACKOFF_S = (0.5, 4.0)  # first wait, longest wait
STALL_PROBE_TIMEOUT_S = 2.0
STALL_PROBE_EVERY_S = 0.5


@dataclass(frozen=True, slots=True)
class InferenceResult:
    """An inference answer as bytes, with what the gateway meters and passes on."""

    body: bytes
    masks: int
    model_ms: float
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Forwarded:
    """An answer passed on as it is (the video API, client decoding's downloads)."""

    status: int
    body: bytes
    content_type: str
    model_ms: float
    etag: str = ""


@dataclass(frozen=True, slots=True)
class Hop:
    """Who a forwarded request is for, and where Modal should route it."""

    namespace: str
    request_id: str
    routing_key: str | None = None
    answer_limit: str | None = None  # ANSWER_LIMIT_HEADER's value, for a segment call


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
        *,
        deadline: bool = False,
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


def starting(detail: str, retry_after_s: int = STARTING_RETRY_AFTER_S) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        detail, code=ErrorCode.INFERENCE_STARTING, retry_after=retry_after_s
    )


def cold_start(status: int, headers: Mapping[str, str]) -> bool:
    """Modal's proxy with no live container: a 503 that is not inference's own problem."""
    return status == 503 and not headers.get("content-type", "").startswith(PROBLEM_CONTENT_TYPE)


DEADLINE_MARGIN_S = 5.0


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
