"""Test images and encoders shared by the suites (plain functions, no fixtures)."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
from PIL import Image


def scene(height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """A deterministic RGB picture of flat shapes on a background: few colours, so lossless
    and palette formats (GIF) all keep it pixel-exact."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, size=(8, 3), dtype=np.uint8)
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[:] = palette[0]
    yy, xx = np.mgrid[0:height, 0:width]
    for index in range(1, 8):
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        ry, rx = (
            rng.integers(height // 8 + 1, height // 3 + 2),
            rng.integers(width // 8 + 1, width // 3 + 2),
        )
        pixels[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = palette[index]
    return pixels


def encode(pixels: np.ndarray | Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but holds almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )
