"""Where the gateway sends work: the inference service's HTTP app, the one hop both locally and
on Modal (a Modal Server behind Modal's proxy).

The request travels as one JSON line plus the image file as uploaded (sam2_contract.wire), with
a sticky-routing key per (tenant, image) and, on Modal, a proxy token; the answer comes back as
the inference service's JSON body with the mask count, model milliseconds and the headers the
client is promised.

A cold start is a wait, not an error. With no live container Modal's proxy answers 503 at once,
with no problem body, and starts one: the gateway then asks again with backoff (0.5 s doubling
to 4 s) until a container answers, `startup_wait_s` has passed or the request's own time is
spent, whichever is first, and only then answers `503 inference_starting` with `Retry-After`.
A 503 that inference itself sends (a problem body: loading, overloaded, stopped work) is never
retried here. The health probe does not wait: it says "starting" at once.

A stalled inference (a frozen process, a black-holed network) accepts connections and never
answers. The first request to run out of time gets `504 inference_timeout`, and makes the
gateway ask inference's `/healthz` (within `STALL_PROBE_TIMEOUT_S`): if that does not answer
either, inference is held to be stalled and every request gets `503 inference_unavailable` at
once, without being sent, while the probe asks again every `STALL_PROBE_EVERY_S` until it
answers. A request that is only slow (a long automatic job) leaves the probe answering, and
nothing else changes. On Modal the probe goes through the proxy like any request, so one
stalled container among several does not stop the others being used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import aiohttp
from sam2_contract.errors import (
    PROBLEM_CONTENT_TYPE,
    ErrorCode,
    Sam2ServiceError,
)
from sam2_contract.models import FieldError
from sam2_contract.problems import REQUEST_ID_HEADER
from sam2_contract.wire import (
    ANSWER_LIMIT_HEADER,
    DEADLINE_HEADER,
    FORWARDED_HEADERS,
    FRAME_CONTENT_TYPE,
    MASKS_HEADER,
    MODEL_MS_HEADER,
    NAMESPACE_HEADER,
    ROUTING_HEADER,
    pack_frame,
)

from sam2_gateway.hop import (
    COLD_START_BACKOFF_S,
    STALL_PROBE_EVERY_S,
    STALL_PROBE_TIMEOUT_S,
    Forwarded,
    Hop,
    InferenceError,
    InferenceResult,
    cold_start,
    starting,
    timed_out,
    unavailable,
    work_deadline_s,
)

log = logging.getLogger(__name__)


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
        startup_wait_s: float = 0.0,
        start_estimate_s: int = 60,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._auth_headers = dict(auth_headers or {})
        self._startup_wait_s = startup_wait_s
        self._start_estimate_s = start_estimate_s
        self._session: aiohttp.ClientSession | None = None
        self._stalled = False
        self._watch: asyncio.Task[None] | None = None

    @property
    def stalled(self) -> bool:
        """Inference ran a request out of time and then did not answer its health probe."""
        return self._stalled

    async def segment(
        self, request_json: bytes, image_file: bytes | None, hop: Hop
    ) -> InferenceResult:
        headers = self._hop_headers(hop) | {"content-type": FRAME_CONTENT_TYPE}
        status, answer_headers, answer = await self._send(
            "POST",
            "/internal/segment",
            data=pack_frame(request_json, image_file),
            headers=headers,
            deadline=True,
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
        if not self._stalled:
            await self._send("POST", "/internal/cancel", headers=self._hop_headers(hop), wait=False)

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
        """`deadline`: send the request's deadline too (work inference bounds by it)."""
        sent = self._hop_headers(hop) | dict(headers or {})
        if content_type:
            sent["content-type"] = content_type
        status, answer_headers, answer = await self._send(
            method, path, data=body, headers=sent, deadline=deadline
        )
        if status >= 400:
            raise self._error(status, answer_headers, answer)
        return Forwarded(
            status=status,
            body=answer,
            content_type=answer_headers.get("content-type", "application/json"),
            model_ms=float(answer_headers.get(MODEL_MS_HEADER, "0")),
            etag=answer_headers.get("etag", ""),
        )

    @asynccontextmanager
    async def stream(self, path: str, hop: Hop, body: bytes) -> AsyncIterator[AsyncIterator[bytes]]:
        headers = self._hop_headers(hop) | {"content-type": "application/json"}
        # No total limit: a stream lasts as long as the clip; each frame must come in time.
        async with self._opened("POST", path, data=body, headers=headers, streaming=True) as got:
            if got.status >= 400:
                raise self._error(got.status, got.headers, await got.read())

            async def lines() -> AsyncIterator[bytes]:
                with self._translated("the inference service broke off the stream"):
                    async for line in got.content:
                        yield line

            yield lines()

    def _hop_headers(self, hop: Hop) -> dict[str, str]:
        headers = {NAMESPACE_HEADER: hop.namespace, REQUEST_ID_HEADER: hop.request_id}
        if hop.routing_key is not None:
            headers[ROUTING_HEADER] = hop.routing_key
        if hop.answer_limit is not None:
            headers[ANSWER_LIMIT_HEADER] = hop.answer_limit
        return headers

    async def health(self) -> dict[str, Any]:
        status, headers, answer = await self._send("GET", "/healthz", wait=False)
        if cold_start(status, headers):
            raise starting(
                f"inference is starting: no model container is running yet, and one takes "
                f"about {self._start_estimate_s} s to start",
                retry_after_s=self._start_estimate_s,
            )
        if status != 200:
            raise unavailable(f"inference /healthz answered {status}")
        body: dict[str, Any] = json.loads(answer)
        return body

    async def aclose(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _send(
        self, method: str, path: str, *, wait: bool = True, **kwargs: Any
    ) -> tuple[int, Mapping[str, str], bytes]:
        async with self._opened(method, path, wait=wait, **kwargs) as response:
            with self._translated():
                return response.status, response.headers, await response.read()

    @asynccontextmanager
    async def _opened(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        deadline: bool = False,
        streaming: bool = False,
        wait: bool = True,
        **kwargs: Any,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The first answer that is not a cold start's 503, asking again with backoff while one
        is (within `startup_wait_s` and the request's own time); the answer of the last try
        when `wait` is False or the time is spent."""
        if self._stalled:
            raise unavailable(
                "inference is not answering (a request ran out of time and its health check "
                "did not answer); asking it again every "
                f"{STALL_PROBE_EVERY_S:g} s"
            )
        started = time.monotonic()
        wait_until = started + min(self._startup_wait_s if wait else 0.0, self._timeout_s)
        pause = COLD_START_BACKOFF_S[0]
        while True:
            left = max(self._timeout_s - (time.monotonic() - started), 0.001)  # 0: no limit
            sent = dict(headers or {})
            if deadline:
                # Inference stops a little before we give up, so its answer (and the model
                # time it used, which we meter) still reaches us.
                sent[DEADLINE_HEADER] = str(int(work_deadline_s(left) * 1000))
            timeout = aiohttp.ClientTimeout(
                total=None if streaming else left,
                connect=self._connect_timeout_s,
                sock_read=self._timeout_s if streaming else None,
            )
            with self._translated():
                response = await self._client().request(
                    method, self._base_url + path, headers=sent, timeout=timeout, **kwargs
                )
            if not cold_start(response.status, response.headers) or not wait:
                try:
                    yield response
                finally:
                    response.release()
                return
            response.release()
            if time.monotonic() + pause > wait_until:
                raise starting(
                    f"inference is starting (a cold start) and did not answer within "
                    f"{time.monotonic() - started:.0f} s"
                )
            if pause == COLD_START_BACKOFF_S[0]:
                log.info("inference has no live container (a cold start): waiting for it")
            await asyncio.sleep(pause)
            pause = min(pause * 2, COLD_START_BACKOFF_S[1])

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made here: a session belongs to the running event loop
            self._session = aiohttp.ClientSession(headers=self._auth_headers)
        return self._session

    @contextmanager
    def _translated(self, broken: str = "the inference service is unreachable") -> Iterator[None]:
        """aiohttp's failures as the problems the client is told."""
        try:
            yield
        except aiohttp.ConnectionTimeoutError:
            raise unavailable("the inference service did not accept the connection") from None
        except TimeoutError:
            self._suspect()
            raise timed_out(self._timeout_s) from None
        except aiohttp.ClientError:
            raise unavailable(broken) from None

    def _suspect(self) -> None:
        """A request ran out of time: find out (once at a time) whether inference is stalled."""
        if self._watch is None or self._watch.done():
            self._watch = asyncio.get_running_loop().create_task(self._watch_stall())

    async def _watch_stall(self) -> None:
        while not await self._answers():
            if not self._stalled:
                log.warning(
                    "inference is not answering: requests get 503 until its health check does"
                )
                self._stalled = True
            await asyncio.sleep(STALL_PROBE_EVERY_S)
        if self._stalled:
            log.warning("inference answers again")
        self._stalled = False

    async def _answers(self) -> bool:
        """Whether inference (or Modal's proxy in front of it) answers /healthz at all."""
        timeout = aiohttp.ClientTimeout(total=STALL_PROBE_TIMEOUT_S)
        try:
            async with self._client().get(self._base_url + "/healthz", timeout=timeout) as got:
                await got.read()
        except (TimeoutError, aiohttp.ClientError):
            return False
        return True

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
