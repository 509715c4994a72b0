"""The one hop from the gateway to the inference service, locally and on Modal.

The gateway checks each upload's header, names it by its file hash, and sends on the request as
one JSON line (`image` replaced by its `image_id`, masks asked for as RLE) followed by the image
file's bytes exactly as uploaded: no base64, no decoded pixels. The inference service decodes
the file and answers with its ordinary JSON body and the headers below; the gateway renders the
client's `mask_format` from the RLE.

On Modal, `ROUTING_HEADER` (Modal's sticky-routing header) carries a hash of (tenant, image_id),
so an upload and every later click on that image reach the container holding its embedding.
"""

from __future__ import annotations

import hashlib

from sam2_contract.errors import InvalidRequestError

FRAME_CONTENT_TYPE = "application/x-sam2-frame"
NAMESPACE_HEADER = "X-Sam2-Namespace"
MASKS_HEADER = "X-Sam2-Masks"
MODEL_MS_HEADER = "X-Sam2-Model-Ms"
WEIGHTS_HEADER = "X-Sam2-Weights"
ROUTING_HEADER = "Modal-Session-ID"
DEADLINE_HEADER = "X-Sam2-Deadline-Ms"
"""How long the caller will wait for the answer: the work stops when it has passed."""
SESSION_LIMIT_HEADER = "X-Sam2-Session-Limit"
"""The most video sessions the caller's tier may hold (inference's own cap is for calls
without it)."""
ANSWER_LIMIT_HEADER = "X-Sam2-Answer-Limit"
"""`<mask_format>:<bytes>`: the largest answer the gateway will build in the client's format;
inference refuses, before any model work, prompts whose masks alone would pass it."""
FORWARDED_HEADERS = (WEIGHTS_HEADER,)
"""Headers of an inference answer that the gateway passes on to its client."""


def pack_frame(request_json: bytes, image_file: bytes | None) -> bytes:
    """The body that carries one request and, when it uploads one, its image file."""
    if b"\n" in request_json:
        raise ValueError("the request JSON must be compact, on one line")
    return request_json + b"\n" + (image_file or b"")


def unpack_frame(body: bytes) -> tuple[bytes, bytes | None]:
    """The request JSON bytes and the image file bytes (None when none came), from `pack_frame`."""
    request_json, newline, image_file = body.partition(b"\n")
    if not newline:
        raise InvalidRequestError("the frame has no request line")
    return request_json, image_file or None


def routing_key(namespace: str, image_id: str) -> str:
    """The sticky-routing value for one tenant's image: equal for the upload and its clicks,
    and revealing neither the tenant nor the image."""
    return hashlib.sha256(f"{namespace}\0{image_id}".encode()).hexdigest()[:32]
