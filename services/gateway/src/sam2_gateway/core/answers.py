"""The gateway's memory for answers, bounded before an answer is built.

Masks cross the inference hop as RLE (small: a mask's outline), and the gateway re-encodes them
in the client's `mask_format`. `bool2d`, the original format, is six bytes a pixel: one 16 MP
mask is 91 MB of JSON, and eight boxes with all their candidate masks on a 16 MP photo would be
2.2 GB. Each answer's size is known from the RLE (masks x height x width) before any of it is
built, and:

- an answer over `max_answer_bytes` is refused, `422 answer_too_large`, with a hint to ask for
  `rle` or `png`: before the request is sent to inference when an upload's size already shows
  it; by inference, before any model work, for prompts by `image_id` (the bound travels as
  ANSWER_LIMIT_HEADER); and on inference's answer (automatic mode's count is known only then);
- all answers being built or sent at once hold at most `answer_memory_bytes`; an answer that
  does not fit waits for others to be sent (up to `ANSWER_WAIT_S`), then gets `503
  gateway_busy` with `Retry-After`;
- bool2d is written straight from each mask into JSON bytes (`bool2d_json`), not through nested
  Python lists (which took 8 bytes of pointer a pixel and as much again to serialise: the 7-11 GB
  peaks seen), and sent as those pieces, not joined into one more copy. The memory is given back
  once the last byte is sent, or the client has gone.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from pydantic_core import to_json
from sam2_contract.errors import ErrorCode, ServiceUnavailableError
from sam2_contract.masks import (
    answer_mask_bytes,
    answer_too_large,
    bool2d_json_chunks,
    decode_mask,
    mask_slots,
    render_answer,
)
from sam2_contract.models import MaskFormat
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

ANSWER_WAIT_S = 10.0
ANSWER_POLL_S = 0.05
BUSY_RETRY_AFTER_S = 1


class AnswerMemory:
    """A pool of bytes answers are built and sent in (`answer_memory_bytes`)."""

    def __init__(self, per_answer: int, total: int) -> None:
        self.per_answer = per_answer
        self.total = total
        self._used = 0

    @property
    def used(self) -> int:
        return self._used

    def check(self, needed: int, mask_format: MaskFormat, masks: int) -> None:
        if needed > self.per_answer:
            raise answer_too_large(needed, self.per_answer, mask_format, masks)

    async def take(self, needed: int) -> Callable[[], None]:
        """Hold `needed` bytes (waiting for other answers to be sent); the call that frees them.
        (Polled, not a Condition: the pool outlives any one event loop, as in tests.)"""
        deadline = time.monotonic() + ANSWER_WAIT_S
        while self._used + needed > self.total:
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(
                    f"the gateway is sending {self._used / 2**20:.0f} MiB of answers and this "
                    f"one needs {needed / 2**20:.0f} MiB more",
                    code=ErrorCode.GATEWAY_BUSY,
                    retry_after=BUSY_RETRY_AFTER_S,
                )
            await asyncio.sleep(ANSWER_POLL_S)
        self._used += needed
        freed = False

        def give_back() -> None:
            nonlocal freed
            if not freed:
                freed = True
                self._used -= needed

        return give_back


@dataclass
class Rendered:
    """An answer as the pieces it is sent in, and the memory it holds until sent."""

    parts: list[bytes]
    release: Callable[[], None] = field(default=lambda: None)

    @property
    def size(self) -> int:
        return sum(len(part) for part in self.parts)


def answer_size(
    answer: dict[str, Any], body_bytes: int, mask_format: MaskFormat
) -> tuple[int, int]:
    """The bytes an RLE answer will take in `mask_format` (an upper bound), and its masks."""
    slots = mask_slots(answer)
    needed = body_bytes
    for holder, key in slots:
        height, width = holder[key]["size"]
        needed += answer_mask_bytes(mask_format, int(height), int(width))
    return needed, len(slots)


def render_parts(answer: dict[str, Any], mask_format: MaskFormat, tolerance: float) -> list[bytes]:
    """The answer's JSON in `mask_format`, as pieces (bool2d masks each their own), with the
    time it took added to `encode_ms` and `total_ms`."""
    started = perf_counter()
    timings = answer["timings_ms"]
    nonce = secrets.token_hex(8)
    rendered: list[list[bytes]] = []
    if mask_format != "bool2d":
        render_answer(answer, mask_format, tolerance=tolerance)
    else:
        for index, (holder, key) in enumerate(mask_slots(answer)):
            rendered.append(bool2d_json_chunks(decode_mask(holder[key])))
            holder[key] = f"@mask-{nonce}-{index}@"
        answer["mask_format"] = mask_format
    spent = (perf_counter() - started) * 1000
    timings["encode_ms"] += spent
    timings["total_ms"] += spent
    skeleton = to_json(answer)
    if not rendered:
        return [skeleton]
    pieces = re.split(b'"@mask-' + nonce.encode() + rb'-(\d+)@"', skeleton)
    parts = [pieces[0]]
    for at in range(1, len(pieces), 2):
        parts += [*rendered[int(pieces[at])], pieces[at + 1]]
    return parts


def rle_answer(body: bytes) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(body)
    return answer


class PartsResponse(Response):
    """A 200 JSON answer sent as its pieces, with a Content-Length; `release` runs once the last
    piece is sent or the client has gone."""

    def __init__(self, rendered: Rendered, headers: dict[str, str]) -> None:
        super().__init__(content=b"", media_type="application/json", headers=headers)
        self.rendered = rendered
        self.raw_headers = [
            (name, value) for name, value in self.raw_headers if name != b"content-length"
        ] + [(b"content-length", str(rendered.size).encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = self.rendered.parts
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            for index, part in enumerate(parts):
                await send(
                    {
                        "type": "http.response.body",
                        "body": part,
                        "more_body": index < len(parts) - 1,
                    }
                )
        finally:
            parts.clear()
            self.rendered.release()
