"""What every request of both clients shares, with no I/O: the body as httpx takes it (JSON, a
segment upload, a video upload), when and how long to wait before a retry, the error a caller
gets, and an answer's JSON. Each client adds one loop that sends a `Call` (openai-python's
split of `_base_client`)."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from sam2_sdk._constants import INITIAL_RETRY_DELAY_S, MAX_RETRY_DELAY_S, RETRY_STATUSES
from sam2_sdk._exceptions import APIConnectionError, APITimeoutError, error_for

FilePart = tuple[str, bytes] | tuple[str, str, bytes]
"""A file part: (part name, content), or (part name, file name, content) where the name matters
(a job's uploads: the name is the image's `file_name` in its COCO export)."""


@dataclass(frozen=True, slots=True)
class Call:
    """One request: JSON `body`; with `image`, a segment upload (`multipart/form-data`: an
    `image` file part and a `request` JSON part, the file as it is, no base64); with `files`,
    a video upload (the files, and `fields` beside them)."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    image: bytes | None = None
    files: Sequence[FilePart] | None = None
    fields: dict[str, str] | None = None
    headers: dict[str, str] | None = None

    def content(self) -> dict[str, Any]:
        """httpx's arguments for this body."""
        if self.image is not None:
            request = json.dumps(self.body or {}).encode()
            return {
                "files": {
                    "image": ("image", self.image, "application/octet-stream"),
                    "request": (None, request, "application/json"),
                }
            }
        if self.files is not None:
            parts = [
                (part[0], (_filename(part, i), part[-1], "application/octet-stream"))
                for i, part in enumerate(self.files)
            ]
            return {"files": parts, "data": self.fields or {}}
        return {} if self.body is None else {"json": self.body}


def _filename(part: FilePart, index: int) -> str:
    return part[1] if len(part) == 3 else f"{part[0]}-{index}"


def retry_or_raise(
    attempt: int, outcome: httpx.Response | httpx.TransportError, *, max_retries: int, url: str
) -> float:
    """How long to wait before attempt `attempt + 1`, or the error the caller gets."""
    last = attempt >= max_retries
    if isinstance(outcome, httpx.TimeoutException):
        if last:
            raise APITimeoutError(
                "the service did not answer in time", request=outcome.request
            ) from outcome
    elif isinstance(outcome, httpx.TransportError):
        if last:
            raise APIConnectionError(f"cannot reach {url}: {outcome}") from outcome
    elif last or outcome.status_code not in RETRY_STATUSES:
        raise error_for(outcome)
    return retry_delay(attempt, outcome if isinstance(outcome, httpx.Response) else None)


def retry_delay(attempt: int, response: httpx.Response | None) -> float:
    """Retry-After when the service gives one, else exponential backoff with jitter."""
    retry_after = response.headers.get("retry-after") if response is not None else None
    if retry_after is not None:
        try:
            return min(max(float(retry_after), 0.0), 60.0)
        except ValueError:
            pass
    delay: float = min(INITIAL_RETRY_DELAY_S * 2**attempt, MAX_RETRY_DELAY_S)
    return delay * (1 - 0.25 * random.random())  # noqa: S311 (jitter, not a secret)


def answer_json(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object; `{}` for an empty answer (204)."""
    if response.status_code == 204 or not response.content:
        return {}
    answer: dict[str, Any] = response.json()
    return answer
