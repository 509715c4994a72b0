"""The gateway's HTTP server: uvicorn with httptools, with a bound on the request head.

httptools (llhttp) buffers a header of any size until it is complete, and uvicorn sets no
limit on top, so a client could make the gateway hold a 32 MB `Authorization` header in memory.
Here every connection counts the bytes of each request's head (request line and headers, up
to and including the blank line that ends it) as they arrive, and answers `431
headers_too_large` (problem+json) and closes the connection as soon as they would pass
`MAX_HEAD_BYTES` (32 KiB exactly), before the parser is given them. On Modal the gateway's ASGI
app is served by Modal's own web server and proxy instead, whose limits apply there.
"""

from __future__ import annotations

import contextlib
from typing import Any

import uvicorn
from sam2_contract.errors import PROBLEM_CONTENT_TYPE, ErrorCode, Sam2ServiceError
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 32 << 10
HEAD_SLICE_BYTES = 4 << 10


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing request heads over MAX_HEAD_BYTES."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = True
        self._tail = b""  # the head's last 3 bytes so far: its end may straddle two slices

    def data_received(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self._in_head and not self.transport.is_closing():
            # A head is fed in slices and counted before each is parsed: where the slice holds
            # the head's end (the first blank line), only the bytes up to it count, so a head
            # one byte over the limit is refused whatever the slices it arrives in.
            piece, view = view[:HEAD_SLICE_BYTES], view[HEAD_SLICE_BYTES:]
            window = self._tail + bytes(piece)
            end = window.find(b"\r\n\r\n")
            counted = len(piece) if end < 0 else end + 4 - len(self._tail)
            if self._head_bytes + counted > MAX_HEAD_BYTES:
                self._refuse()
                return
            self._head_bytes += counted
            self._tail = window[-3:]
            super().data_received(bytes(piece))
        if view and not self.transport.is_closing():
            super().data_received(bytes(view))

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes, self._tail = True, 0, b""  # the next request

    def _refuse(self) -> None:
        problem = Sam2ServiceError(
            f"the request line and headers are over {MAX_HEAD_BYTES >> 10} KiB",
            code=ErrorCode.HEADERS_TOO_LARGE,
        ).to_problem()
        body = problem.model_dump_json(exclude_none=True).encode()
        head = (
            f"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            f"content-type: {PROBLEM_CONTENT_TYPE}\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()


def serve(app: Any, *, host: str, port: int) -> None:
    """Serve the gateway app until Ctrl-C or SIGTERM, then return."""
    # On Ctrl-C uvicorn shuts down gracefully, then raises the signal again: a KeyboardInterrupt.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(app, host=host, port=port, http=BoundedHeadProtocol, log_level="warning")
