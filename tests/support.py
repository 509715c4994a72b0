"""Test images and encoders shared by the suites (plain functions, no fixtures)."""

from __future__ import annotations

import base64
import io
import socket
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from sam2_inference import EmbeddingCache, Sam2Engine

PEPPER = "test-pepper-0123456789abcdef"
"""The gateway tests' API-key pepper."""


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


# Both orientations, neither square: the usual place for x/y and h/w mix-ups.
IMAGES = {"landscape": scene(120, 200, seed=1), "portrait": scene(200, 120, seed=2)}


def fresh_engine(loaded: Sam2Engine, *, cache_bytes: int = 1 << 30) -> Sam2Engine:
    return Sam2Engine(
        loaded.model, loaded.info, EmbeddingCache(cache_bytes), max_pixels=loaded.max_pixels
    )


class EncoderCounter:
    """Counts runs of the image encoder through a forward hook on the real module."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls = 0
        self._handle = model.image_encoder.register_forward_hook(self._count)

    def _count(self, *_: object) -> None:
        self.calls += 1

    def close(self) -> None:
        self._handle.remove()


@dataclass(frozen=True)
class RunningServer:
    url: str
    engine: Sam2Engine


@dataclass(frozen=True)
class GatewayServer:
    url: str
    key: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def image_b64(name: str, fmt: str = "PNG") -> str:
    return b64(encode(IMAGES[name], fmt))


def masks_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def run_hook(container: object, name: str) -> None:
    """Run a Modal lifecycle hook (`@modal.enter`, `@modal.exit`) of a class instance the way
    a container does: the undecorated method, on the instance."""
    hook = type(container).__dict__[name]
    hook._get_raw_f()(container)
