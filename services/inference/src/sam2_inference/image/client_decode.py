"""What a client needs to decode clicks itself (issue 29): an image's embedding as a file
(sam2_contract.embedding) and the exported decoder (image/onnx.py), built once per model."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from sam2.modeling.sam2_base import SAM2Base
from sam2_contract.embedding import EmbeddingDtype, encode_embedding

from sam2_inference.image.cache import CachedImage
from sam2_inference.image.onnx import export_decoder

log = logging.getLogger(__name__)
ONNX_START = b"\x08"  # an ONNX ModelProto's first field, ir_version (field 1, varint)


def embedding_file(
    entry: CachedImage, *, image_id: str, dtype: EmbeddingDtype, model: str
) -> bytes:
    """A cached image's features (what `set_image` left) as an embedding file."""
    features = entry.features
    tensors = {
        "image_embed": _host(features["image_embed"]),
        "high_res_feats_0": _host(features["high_res_feats"][0]),
        "high_res_feats_1": _host(features["high_res_feats"][1]),
    }
    height, width = entry.orig_hw
    metadata = {"image_id": image_id, "height": str(height), "width": str(width), "model": model}
    return encode_embedding(tensors, dtype, metadata)


class DecoderExport:
    """The exported decoder of one model: built on first use (about 6 s on the CPU for tiny,
    beside the served model), then kept in memory and, with `path`, on disk per checkpoint
    (AotStore.decoder_path: on Modal the weights Volume), so a later process reads it."""

    def __init__(self, model: SAM2Base, path: Path | None = None) -> None:
        self._model = model
        self._path = path
        self._lock = threading.Lock()
        self._onnx: tuple[bytes, str] | None = None
        self.written = False
        """Whether this process exported the decoder and wrote it to `path`."""
        self.on_written: Callable[[], None] | None = None
        """Called once the export is written (on Modal: the Volume's commit)."""

    def get(self) -> tuple[bytes, str]:
        """The ONNX file and its ETag (a quoted digest of the file: new weights, new tag)."""
        with self._lock:
            if self._onnx is None:
                self._keep(self._read() or self._export())
            assert self._onnx is not None
            return self._onnx

    def preload(self) -> bool:
        """Read a decoder an earlier process exported for these weights, exporting nothing
        (no CUDA call: safe before a memory snapshot); whether there was one."""
        with self._lock:
            if self._onnx is None and (onnx := self._read()) is not None:
                self._keep(onnx)
            return self._onnx is not None

    def _keep(self, onnx: bytes) -> None:
        self._onnx = (onnx, f'"{hashlib.sha256(onnx).hexdigest()[:32]}"')

    def _read(self) -> bytes | None:
        if self._path is None or not self._path.is_file():
            return None
        data = self._path.read_bytes()
        return data if data.startswith(ONNX_START) else None  # a damaged file is exported again

    def _export(self) -> bytes:
        onnx = export_decoder(self._model)
        if self._path is not None:
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                partial = self._path.with_name(f"{self._path.name}.{os.getpid()}.partial")
                partial.write_bytes(onnx)
                partial.replace(self._path)  # whole or not at all, for another process
                self.written = True
                if self.on_written is not None:
                    self.on_written()
            except OSError as exc:  # a read-only cache: serve from memory, export next time
                log.warning("the exported decoder could not be kept in %s: %s", self._path, exc)
        return onnx


def _host(tensor: torch.Tensor) -> npt.NDArray[np.float32]:
    host: npt.NDArray[np.float32] = tensor.detach().float().cpu().numpy()
    return host
