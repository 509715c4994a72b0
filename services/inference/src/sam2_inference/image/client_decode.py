"""What a client needs to decode clicks itself (issue 29): an image's embedding as a file
(sam2_contract.embedding) and the exported decoder (image/onnx.py), built once per model."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import numpy.typing as npt
import torch
from sam2.modeling.sam2_base import SAM2Base
from sam2_contract.embedding import EmbeddingDtype, encode_embedding

from sam2_inference.image.cache import CachedImage
from sam2_inference.image.onnx import export_decoder


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
    """The exported decoder of one model: built on first use (seconds, on the CPU, beside the
    served model), then kept."""

    def __init__(self, model: SAM2Base) -> None:
        self._model = model
        self._lock = threading.Lock()
        self._onnx: tuple[bytes, str] | None = None

    def get(self) -> tuple[bytes, str]:
        """The ONNX file and its ETag (a quoted digest of the file: new weights, new tag)."""
        with self._lock:
            if self._onnx is None:
                onnx = export_decoder(self._model)
                self._onnx = (onnx, f'"{hashlib.sha256(onnx).hexdigest()[:32]}"')
            return self._onnx


def _host(tensor: torch.Tensor) -> npt.NDArray[np.float32]:
    host: npt.NDArray[np.float32] = tensor.detach().float().cpu().numpy()
    return host
