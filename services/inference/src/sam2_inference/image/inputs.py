"""A request's image: the gateway's forwarded file, a cached embedding, or base64 pixels.

A forwarded file is named by its hash and decoded only when its embedding is not cached; an
`image_id` must name a cached embedding of the same tenant; base64 `image` is the engine's own
Python API (warm-up, tests and benchmarks), decoded under the same pixel bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sam2_contract.errors import ErrorCode, ImageNotCachedError, InvalidRequestError
from sam2_contract.images import DecodedImage, Pixels, decode_base64, image_id_for_file
from sam2_contract.models import SegmentRequest

from sam2_inference.image.cache import CachedImage, EmbeddingCache
from sam2_inference.image.decoding import Decoded, ImageDecoder


@dataclass(frozen=True, slots=True)
class ResolvedImage:
    """The pixels a request runs on, its id, its cache entry (None: not cached) and what
    decoding it took."""

    pixels: Pixels
    image_id: str
    entry: CachedImage | None
    decode_ms: float
    on_device: torch.Tensor | None = None  # the pixels, decoded on the model's device

    @property
    def size(self) -> str:
        """`WIDTHxHEIGHT`, as messages name an image."""
        height, width = self.pixels.shape[:2]
        return f"{width}x{height}"


def resolve_image(
    request: SegmentRequest,
    namespace: str,
    *,
    cache: EmbeddingCache,
    decoder: ImageDecoder,
    decoded: DecodedImage | None = None,
    image_file: bytes | None = None,
) -> ResolvedImage:
    """The request's image, from the first of: the forwarded file, an already decoded image,
    the cache (`image_id`), base64 `image`."""
    if image_file is not None:
        return _forwarded(request, namespace, image_file, cache, decoder)
    if decoded is not None:
        return ResolvedImage(
            decoded.pixels, decoded.image_id, cache.get(namespace, decoded.image_id), 0.0
        )
    if request.image_url is not None:
        raise InvalidRequestError(
            "the inference service fetches no URLs: send `image_url` to the gateway, "
            "which fetches it under its SSRF rules and forwards the file",
            code=ErrorCode.INVALID_IMAGE_URL,
        )
    if request.image_id is not None:
        entry = cache.get(namespace, request.image_id)
        if entry is None:
            raise ImageNotCachedError(f"no cached embedding for {request.image_id}")
        return ResolvedImage(entry.pixels, request.image_id, entry, 0.0)
    assert request.image is not None  # the model validator guarantees image or image_id
    return _decoded(decoder.load(decode_base64(request.image)))


def check_bounds(request: SegmentRequest, image: ResolvedImage) -> None:
    """Every point and box corner inside the image."""
    if request.mode == "auto":
        return
    height, width = image.pixels.shape[:2]
    for item in request.prompt_sets():
        box = item.box_coords
        corners = [box[:2], box[2:]] if box is not None else []
        if any(x > width or y > height for x, y in [*(item.point_coords or []), *corners]):
            raise InvalidRequestError(
                f"a point or box lies outside the {width}x{height} image",
                code=ErrorCode.COORDINATES_OUT_OF_BOUNDS,
            )


def _forwarded(
    request: SegmentRequest,
    namespace: str,
    image_file: bytes,
    cache: EmbeddingCache,
    decoder: ImageDecoder,
) -> ResolvedImage:
    """The gateway's upload: named by its file hash, decoded only when not cached."""
    image_id = image_id_for_file(image_file)
    if request.image_id not in (None, image_id):
        raise InvalidRequestError(
            "the forwarded image does not match the request's image_id",
            code=ErrorCode.INVALID_REQUEST,
        )
    entry = cache.get(namespace, image_id)
    if entry is not None:
        return ResolvedImage(entry.pixels, image_id, entry, 0.0)
    return _decoded(decoder.load(image_file))


def _decoded(decoded: Decoded) -> ResolvedImage:
    image = decoded.image
    return ResolvedImage(image.pixels, image.image_id, None, decoded.ms, decoded.on_device)
