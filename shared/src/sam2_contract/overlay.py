"""The rendered overlay (`render`): the image with its masks drawn, for a quick look or a chat
app, as a base64 PNG or JPEG.

A preview, not a mask: the long side is at most MAX_SIDE pixels (never enlarged), each mask is
filled in its own colour at ALPHA over the image with its boundary drawn solid, larger masks
first so that small ones stay visible, and the prompts (points green for foreground, red for
background; boxes) are drawn on top. Masks are sampled at the preview's pixel centres, so the
cost is the preview's size per mask whatever the image's size.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

RenderFormat = Literal["png", "jpeg"]
MAX_SIDE = 1024
ALPHA = 0.45
JPEG_QUALITY = 88
PALETTE: tuple[tuple[int, int, int], ...] = (
    (30, 144, 255),
    (255, 99, 71),
    (50, 205, 50),
    (255, 215, 0),
    (186, 85, 211),
    (0, 206, 209),
    (255, 140, 0),
    (255, 20, 147),
    (154, 205, 50),
    (106, 90, 205),
    (240, 128, 128),
    (32, 178, 170),
)
"""Distinct colours, the first the playground's mask blue; mask i takes PALETTE[i % 12]."""
FOREGROUND = (0, 200, 83)
BACKGROUND = (229, 57, 53)

BoolMask = npt.NDArray[np.bool_]


def preview_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) of the preview of a `height` x `width` image."""
    scale = min(1.0, MAX_SIDE / max(height, width, 1))
    return max(1, round(height * scale)), max(1, round(width * scale))


def render_overlay(
    pixels: npt.NDArray[np.uint8],
    masks: Sequence[BoolMask],
    *,
    image_format: RenderFormat = "png",
    points: Sequence[Sequence[float]] = (),
    labels: Sequence[int] = (),
    boxes: Sequence[Sequence[float]] = (),
) -> str:
    """The base64 preview of `pixels` (H x W x 3) with `masks` (each H x W, drawn in this
    order with colours by position) and the prompts drawn on it."""
    height, width = pixels.shape[:2]
    out_h, out_w = preview_size(height, width)
    rows = np.minimum(((np.arange(out_h) + 0.5) * height / out_h).astype(np.intp), height - 1)
    cols = np.minimum(((np.arange(out_w) + 0.5) * width / out_w).astype(np.intp), width - 1)
    base = Image.fromarray(pixels).resize((out_w, out_h), Image.Resampling.BILINEAR)
    canvas = np.asarray(base, dtype=np.float32).copy()
    for index, mask in enumerate(masks):
        small = np.asarray(mask, dtype=bool)[np.ix_(rows, cols)]
        colour = np.asarray(PALETTE[index % len(PALETTE)], dtype=np.float32)
        canvas[small] = canvas[small] * (1 - ALPHA) + colour * ALPHA
        canvas[small & ~_eroded(small)] = colour
    image = Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8))
    _draw_prompts(image, out_w / width, points, labels, boxes)
    buffer = io.BytesIO()
    if image_format == "jpeg":
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return base64.b64encode(buffer.getvalue()).decode()


def decode_overlay(data: str) -> npt.NDArray[np.uint8]:
    """The preview's pixels (H x W x 3), e.g. to show or check it."""
    with Image.open(io.BytesIO(base64.b64decode(data))) as image:
        return np.asarray(image.convert("RGB"))


def _eroded(mask: BoolMask) -> BoolMask:
    """Pixels whose four neighbours are all in the mask (the image's edge counts as inside)."""
    padded = np.pad(mask, 1, mode="edge")
    return mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]


def _draw_prompts(
    image: Image.Image,
    scale: float,
    points: Sequence[Sequence[float]],
    labels: Sequence[int],
    boxes: Sequence[Sequence[float]],
) -> None:
    draw = ImageDraw.Draw(image)
    radius = max(3, round(min(image.size) / 100))
    for box in boxes:
        x0, y0, x1, y1 = (v * scale for v in box)
        draw.rectangle((x0, y0, x1, y1), outline=(255, 255, 255), width=max(2, radius // 2))
    for (x, y), label in zip(points, labels, strict=True):
        cx, cy = x * scale, y * scale
        fill = FOREGROUND if label == 1 else BACKGROUND
        draw.ellipse(
            (cx - radius, cy - radius, cx + radius, cy + radius),
            fill=fill,
            outline=(255, 255, 255),
            width=max(1, radius // 3),
        )
