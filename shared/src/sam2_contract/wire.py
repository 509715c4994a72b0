"""The frame the gateway sends to the inference service: the request, then the decoded pixels.

The gateway decodes and checks each upload once; what travels on is the request as one JSON line
(`image` replaced by its `image_id`) and the raw RGB bytes, so the inference service neither
base64-decodes nor decompresses the image again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sam2_contract.errors import InvalidRequestError
from sam2_contract.images import Pixels

FRAME_CONTENT_TYPE = "application/x-sam2-frame"
SHAPE_HEADER = "X-Sam2-Image-Shape"
MASKS_HEADER = "X-Sam2-Masks"
MODEL_MS_HEADER = "X-Sam2-Model-Ms"


def pack_frame(request_json: bytes, pixels: Pixels | None) -> tuple[bytes, dict[str, str]]:
    """The body and headers that carry one request (and its pixels, if any)."""
    if b"\n" in request_json:
        raise ValueError("the request JSON must be compact, on one line")
    if pixels is None:
        return request_json + b"\n", {}
    height, width = pixels.shape[:2]
    return request_json + b"\n" + np.ascontiguousarray(pixels).tobytes(), {
        SHAPE_HEADER: f"{height},{width}"
    }


def unpack_frame(body: bytes, shape: str | None) -> tuple[Any, Pixels | None]:
    """The request JSON bytes and the pixels (a writable HxWx3 array), from `pack_frame`."""
    request_json, _, raw = body.partition(b"\n")
    if shape is None:
        return request_json, None
    try:
        height, width = (int(part) for part in shape.split(","))
        pixels = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3).copy()
    except ValueError:
        raise InvalidRequestError(f"the frame's pixels do not match {SHAPE_HEADER}") from None
    return request_json, pixels
