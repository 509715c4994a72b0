"""Decoding uploads where the model runs: JPEG by torchvision's decoder on the model's device.

Pillow decodes a 1-2 megapixel JPEG in about 5 ms on the CPU; on an H200 that was a fifth of a
new image's first click (bench/README.md), where nvjpeg decodes it in 0.5 ms. So in the `fast`
pipeline on CUDA (`SAM2_IMAGE_DECODER=auto`) a JPEG is decoded on the GPU and stays there for
the image encoder's resize and normalisation (`fastpath.DeviceTransforms`); one copy of its
pixels comes to the host for what needs them there (the embedding cache, overlays, automatic
mode's crops).

Pillow (`sam2_contract.images.load_image`) still checks every file's header first (format,
pixel limit: nothing is decompressed before that), and still decodes what the GPU decoder should
not take: other formats, JPEGs that EXIF says to rotate (torchvision applies EXIF orientation
on the CPU only), CMYK and other modes, multi-picture files, and any file the decoder refuses,
so a damaged upload gets Pillow's precise error code. On the CPU torchvision's decoder is the
same libjpeg-turbo as Pillow's and gives the same pixels (tests/inference/image/test_decoding.py);
nvjpeg's may differ in the last bit of some pixels, which `bench/quality.py` measures with the
rest of the fast pipeline.

torchvision 0.29 deprecates its image codecs in favour of TorchCodec and warns on every call of
`torchvision.io.decode_jpeg`; the operators behind it are called directly instead.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from time import perf_counter
from typing import Literal, cast

import numpy as np
import torch
from PIL import Image
from sam2_contract.images import DecodedImage, image_id_for_file, load_image, probe_image

from sam2_inference.config import DecoderPreference

log = logging.getLogger(__name__)

DecoderName = Literal["pillow", "torchvision"]

_RGB = 3  # torchvision.io.ImageReadMode.RGB
_DEVICE_MODES = frozenset({"RGB", "L"})  # YCbCr and greyscale JPEGs; CMYK and others: Pillow


@dataclass(frozen=True, slots=True)
class Decoded:
    """An upload's pixels on the host, and on the model's device when decoded there
    (height x width x 3 uint8, the same pixels), with the time decoding took."""

    image: DecodedImage
    on_device: torch.Tensor | None
    ms: float


def pick_decoder(preference: DecoderPreference, device: torch.device, pipeline: str) -> DecoderName:
    """`torchvision` (nvjpeg) in the fast pipeline on CUDA, where it pays; Pillow elsewhere,
    unless one is named. Before it is chosen, torchvision's decoder decodes a small JPEG on
    `device` (which also initialises nvjpeg); where it cannot (no image operators in this
    build, another operator signature, no nvjpeg), Pillow decodes and the log says why."""
    if preference == "auto":
        preference = "torchvision" if device.type == "cuda" and pipeline == "fast" else "pillow"
    if preference == "pillow":
        return "pillow"
    problem = _self_check(device)
    if problem:
        log.warning(
            "torchvision cannot decode JPEG on %s (%s): Pillow decodes images", device, problem
        )
        return "pillow"
    return "torchvision"


class ImageDecoder:
    """Decodes image files for one device, with the decoder `pick_decoder` chose."""

    def __init__(self, name: DecoderName, device: torch.device, *, max_pixels: int) -> None:
        self.name = name
        self.device = device
        self.max_pixels = max_pixels

    def load(self, data: bytes) -> Decoded:
        """The file's pixels, or the error (with its precise code) Pillow's decoding raises."""
        started = perf_counter()
        on_device = self._on_device(data) if self.name == "torchvision" else None
        if on_device is None:
            image = load_image(data, max_pixels=self.max_pixels)
        else:
            pixels = on_device.cpu().numpy()
            image = DecodedImage(pixels=pixels, format="JPEG", image_id=image_id_for_file(data))
        return Decoded(image, on_device, (perf_counter() - started) * 1000.0)

    def _on_device(self, data: bytes) -> torch.Tensor | None:
        """HxWx3 uint8 on the device, or None where Pillow should decode this file."""
        header = probe_image(data, max_pixels=self.max_pixels)  # the limit before any pixel
        if header.format != "JPEG" or header.mode not in _DEVICE_MODES or header.orientation != 1:
            return None
        try:
            chw = self.decode(data)
        except RuntimeError:  # corrupt, truncated, or a variant the decoder lacks
            return None
        if tuple(chw.shape) != (3, header.height, header.width):
            return None
        return chw.permute(1, 2, 0).contiguous()

    def decode(self, data: bytes) -> torch.Tensor:
        """A JPEG file's RGB pixels (3xHxW uint8) on the device, by torchvision's operators."""
        encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        if self.device.type == "cuda":
            (chw,) = torch.ops.image.decode_jpegs_cuda([encoded], _RGB, self.device)
            return cast(torch.Tensor, chw)
        return cast(torch.Tensor, torch.ops.image.decode_jpeg(encoded, _RGB, False).to(self.device))


def _self_check(device: torch.device) -> str | None:
    """Why torchvision's decoder cannot serve on `device`, or None: it decodes a 24x32 JPEG
    there to Pillow's pixels (nvjpeg's may differ by a level or two)."""
    try:
        import torchvision.io.image  # noqa: F401  (loads the `image` operators)
    except ImportError as exc:
        return f"torchvision's image operators do not load: {exc}"
    ramp = np.linspace(0, 255, 24 * 32 * 3).reshape(24, 32, 3).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, "JPEG", quality=95)
    data = buffer.getvalue()
    try:
        decoded = ImageDecoder("torchvision", device, max_pixels=1 << 20).decode(data)
    except Exception as exc:  # any failure here means: not this decoder
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if tuple(decoded.shape) != (3, 24, 32):
        return f"it decoded a 24x32 JPEG to {tuple(decoded.shape)}"
    pixels = decoded.permute(1, 2, 0).cpu().numpy().astype(np.int16)
    difference = np.abs(pixels - load_image(data).pixels)
    if float(difference.mean()) > 2.0:
        return (
            f"its pixels differ from Pillow's by {float(difference.mean()):.1f} levels on average"
        )
    return None
