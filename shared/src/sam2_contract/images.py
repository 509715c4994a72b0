"""Decoding uploaded images into the RGB pixels SAM2 sees, safely.

The pixel limit is checked from the file header, before any pixel is decompressed, so a small
file that claims a huge canvas (a decompression bomb) costs nothing. EXIF orientation is applied,
every Pillow mode becomes 8-bit RGB, animated formats give their first frame.

An uploaded image is named by the hash of its file bytes (`image_id_for_file`): the gateway
names it from the header check alone, without decoding, and routes every later click on that
name to the container holding its embedding; the inference service, which decodes it, gives it
the same name.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from sam2_contract.errors import ErrorCode, InvalidImageError, PayloadTooLargeError
from sam2_contract.models import IMAGE_ID_HEX_LENGTH, IMAGE_ID_PREFIX

Pixels = npt.NDArray[np.uint8]

DEFAULT_MAX_PIXELS = 4096 * 4096
SUPPORTED_FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP", "BMP", "TIFF", "GIF"})
_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+(;[\w=.+-]+)*;base64,", re.IGNORECASE)
_ORIENTATION = 0x0112
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """What the header of an image file says, read without decoding a pixel: its format, size,
    Pillow mode, and (JPEG only, 1 elsewhere) EXIF orientation, 0 where the EXIF is unreadable."""

    format: str
    width: int
    height: int
    mode: str = "RGB"
    orientation: int = 1


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """RGB pixels (HxWx3 uint8), the file's format, and the image's content id."""

    pixels: Pixels
    format: str
    image_id: str

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


def image_id_for_file(data: bytes) -> str:
    """The content hash that names an uploaded image file: equal bytes, equal id."""
    digest = hashlib.blake2b(data, digest_size=IMAGE_ID_HEX_LENGTH // 2, person=b"sam2-file")
    return IMAGE_ID_PREFIX + digest.hexdigest()


def image_id_for(pixels: Pixels) -> str:
    """The content hash that names raw pixels (an array handed to the engine, a crop)."""
    digest = hashlib.blake2b(digest_size=IMAGE_ID_HEX_LENGTH // 2, person=b"sam2-pixels")
    digest.update(np.asarray(pixels.shape, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(pixels).data)
    return IMAGE_ID_PREFIX + digest.hexdigest()


def decode_base64(data: str) -> bytes:
    """Standard base64 (a `data:` URL prefix and line breaks allowed), strictly checked."""
    payload = _DATA_URL.sub("", data.strip(), count=1)
    payload = "".join(payload.split())
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImageError(
            "`image` is not valid base64", code=ErrorCode.INVALID_BASE64
        ) from None
    if not raw:
        raise InvalidImageError("`image` decodes to zero bytes", code=ErrorCode.EMPTY_IMAGE)
    return raw


def probe_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Check an image file's format and size from its header alone (no pixel is decoded), or
    raise the error that decoding would: unsupported, empty, or over the pixel limit."""
    with _open(data, max_pixels) as image:
        return _checked_header(image, max_pixels)


def load_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode image file bytes into RGB pixels, or raise an error with a precise code."""
    with _open(data, max_pixels) as image:
        header = _checked_header(image, max_pixels)
        try:
            pixels = _to_rgb(image)
        except (OSError, SyntaxError, ValueError) as exc:
            raise _corrupt(exc) from None
    return DecodedImage(pixels=pixels, format=header.format, image_id=image_id_for_file(data))


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large(None, max_pixels) from None
    except UnidentifiedImageError:
        size = _header_size(data)
        if size is not None and 0 in size:
            raise InvalidImageError(
                "the image header says it has no pixels", code=ErrorCode.EMPTY_IMAGE
            ) from None
        raise InvalidImageError(
            "the data is not an image in a supported format", code=ErrorCode.UNSUPPORTED_IMAGE
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise _corrupt(exc) from None


def _checked_header(image: Image.Image, max_pixels: int) -> ImageHeader:
    file_format = image.format or "unknown"
    if file_format not in SUPPORTED_FORMATS:
        raise InvalidImageError(
            f"{file_format} images are not supported", code=ErrorCode.UNSUPPORTED_IMAGE
        )
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidImageError(f"the image is {width}x{height} pixels", code=ErrorCode.EMPTY_IMAGE)
    if width * height > max_pixels:
        raise _too_large((width, height), max_pixels)
    return ImageHeader(
        format=file_format,
        width=width,
        height=height,
        mode=image.mode,
        orientation=_jpeg_orientation(image) if file_format in ("JPEG", "MPO") else 1,
    )


def _jpeg_orientation(image: Image.Image) -> int:
    """The EXIF orientation a JPEG's header gives (Pillow parsed it with the header; other
    formats may keep EXIF after the pixels, so they are not asked)."""
    try:
        orientation = image.getexif().get(_ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError):
        return 0
    return orientation if isinstance(orientation, int) else 0


def _to_rgb(image: Image.Image) -> Pixels:
    image.seek(0)
    image.load()
    oriented = ImageOps.exif_transpose(image)
    if oriented.mode in _SIXTEEN_BIT_MODES:
        grey = np.array(oriented, dtype=np.int64).clip(0, 65535) // 257
        return np.repeat(grey.astype(np.uint8)[:, :, None], 3, axis=2)
    if oriented.mode in ("P", "PA"):
        # Through RGBA: a palette with transparency cannot go to RGB directly.
        oriented = oriented.convert("RGBA")
    return np.array(oriented.convert("RGB"), dtype=np.uint8)


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, GIF or BMP header that Pillow refused, to name the reason."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data.startswith(b"BM") and len(data) >= 26:
        return abs(int.from_bytes(data[18:22], "little", signed=True)), abs(
            int.from_bytes(data[22:26], "little", signed=True)
        )
    return None


def _too_large(size: tuple[int, int] | None, max_pixels: int) -> PayloadTooLargeError:
    claimed = f"{size[0]}x{size[1]} pixels" if size else "more pixels than Pillow allows"
    return PayloadTooLargeError(
        f"the image is {claimed}; the limit is {max_pixels} pixels",
        code=ErrorCode.IMAGE_TOO_LARGE,
    )


def _corrupt(exc: BaseException) -> InvalidImageError:
    if "truncated" in str(exc).lower():
        return InvalidImageError("the image file is truncated", code=ErrorCode.TRUNCATED_IMAGE)
    return InvalidImageError(
        "the image file is corrupt and cannot be decoded", code=ErrorCode.CORRUPT_IMAGE
    )
