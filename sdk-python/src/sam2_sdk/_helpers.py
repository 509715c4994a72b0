"""The original example's helper, kept working: `segment_image(...)` returns the original JSON."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from sam2_sdk._constants import DEFAULT_TIMEOUT
from sam2_sdk._exceptions import error_for


def segment_image(
    image_path: str | os.PathLike[str],
    endpoint_url: str,
    point_coords: list[list[float]] | None = None,
    point_labels: list[int] | None = None,
    mode: str = "point",
    box_coords: list[float] | None = None,
    points_per_batch: int | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """POST the original request and return the original response (`mask` as nested lists).

    `endpoint_url` may be the service's base URL or its /v1/segment URL; the API key comes
    from `api_key` or SAM2_API_KEY.
    """
    body: dict[str, Any] = {
        "image": base64.b64encode(Path(image_path).read_bytes()).decode(),
        "mode": mode,
    }
    optional = {
        "point_coords": point_coords,
        "point_labels": point_labels,
        "box_coords": box_coords,
        "points_per_batch": points_per_batch,
    }
    body |= {k: v for k, v in optional.items() if v is not None}
    url = endpoint_url.rstrip("/")
    if urlsplit(url).path in ("", "/"):
        url += "/v1/segment"
    key = api_key or os.environ.get("SAM2_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = httpx.post(url, json=body, headers=headers, timeout=DEFAULT_TIMEOUT)
    if not response.is_success:
        raise error_for(response)
    answer: dict[str, Any] = response.json()
    return answer
