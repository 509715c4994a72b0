"""An image's embedding as a file, for decoding clicks on the client (issue 29).

The container is safetensors (https://huggingface.co/docs/safetensors): an 8-byte little-endian
header length, a JSON header naming each tensor's dtype, shape and byte range, then the raw
little-endian data. It is kept (the Hugging Face format), needs no library to read (a browser
reads it with a `DataView` and `JSON.parse`), and cannot carry code. The tensors are what
`SAM2ImagePredictor.set_image` keeps and the exported decoder takes:

    image_embed        1 x 256 x 64 x 64
    high_res_feats_0   1 x 32 x 256 x 256
    high_res_feats_1   1 x 64 x 128 x 128

as float32, float16, or int8 with one float32 scale per channel (`<name>.scale`, shape C:
value = int8 x scale, the scale the channel's largest magnitude / 127). The header's
`__metadata__` says what it is: format `sam2-embedding`, its version, the dtype, the image's
`image_id`, `height` and `width`, the model's name, and `sha256`, the hex digest of the data
after the header. A reader checks the digest and every tensor's shape before it decodes a
click, so a damaged or truncated download is an error, never a wrong mask. This module has no
torch: the Python SDK decodes with it.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Literal

import numpy as np
import numpy.typing as npt

from sam2_contract.errors import ErrorCode, InvalidRequestError

EmbeddingDtype = Literal["float32", "float16", "int8"]
FORMAT = "sam2-embedding"
VERSION = "1"
TENSORS = ("image_embed", "high_res_feats_0", "high_res_feats_1")
SHAPES = {
    "image_embed": [1, 256, 64, 64],
    "high_res_feats_0": [1, 32, 256, 256],
    "high_res_feats_1": [1, 64, 128, 128],
}
"""Every SAM 2.1 model's (its image encoder sees 1024 x 1024)."""
_CODES = {"float32": "F32", "float16": "F16", "int8": "I8"}
_NUMPY: dict[str, np.dtype[np.generic]] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I8": np.dtype("i1"),
}
MAX_HEADER_BYTES = 1 << 16

FloatArray = npt.NDArray[np.float32]


DTYPES: dict[str, EmbeddingDtype] = {"float32": "float32", "float16": "float16", "int8": "int8"}
DECODER_INPUTS = (
    *TENSORS,
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
)
DECODER_OUTPUTS = ("multi_masks", "multi_scores", "single_mask", "single_score")
"""The exported decoder's input and output names, in order (docs/api.md says what each is)."""
MEDIA_TYPE = "application/vnd.sam2.embedding+safetensors"
DECODER_MEDIA_TYPE = "application/onnx"
"""The media types of the two downloads: an embedding file and the exported decoder."""


def parse_dtype(value: str) -> EmbeddingDtype:
    """The `dtype` a client asked for, or `422 invalid_parameter`."""
    dtype = DTYPES.get(value)
    if dtype is None:
        raise InvalidRequestError(
            f"`dtype` is {value[:32]!r}; it is float32, float16 or int8",
            code=ErrorCode.INVALID_PARAMETER,
        )
    return dtype


def encode_embedding(
    tensors: dict[str, FloatArray], dtype: EmbeddingDtype, metadata: dict[str, str]
) -> bytes:
    """The safetensors file of `tensors` (TENSORS, float32) stored as `dtype`."""
    stored: list[tuple[str, npt.NDArray[np.generic]]] = []
    for name in TENSORS:
        values = np.ascontiguousarray(tensors[name], dtype=np.float32)
        if dtype == "int8":
            quantised, scale = _quantise(values)
            stored += [(name, quantised), (f"{name}.scale", scale)]
        else:
            stored.append((name, values.astype(_NUMPY[_CODES[dtype]])))
    data = b"".join(a.tobytes() for _, a in stored)
    digest = hashlib.sha256(data).hexdigest()
    header: dict[str, object] = {
        "__metadata__": {
            "format": FORMAT,
            "version": VERSION,
            "dtype": dtype,
            **metadata,
            "sha256": digest,
        }
    }
    offset = 0
    for name, array in stored:
        code = next(code for code, kind in _NUMPY.items() if kind == array.dtype)
        header[name] = {
            "dtype": code,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text + data


def decode_embedding(data: bytes) -> tuple[dict[str, FloatArray], dict[str, str]]:
    """The float32 tensors of an embedding file and its metadata; ValueError, saying what is
    wrong, if it is not one whole (a truncated or altered download, another file)."""
    if len(data) < 8:
        raise ValueError("too short for a safetensors file")
    (length,) = struct.unpack("<Q", data[:8])
    if length > MAX_HEADER_BYTES or 8 + length > len(data):
        raise ValueError("the safetensors header is larger than the file")
    try:
        header = json.loads(data[8 : 8 + length])
    except ValueError:
        raise ValueError("the safetensors header is not JSON") from None
    if not isinstance(header, dict):
        raise ValueError("the safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} file")
    body = memoryview(data)[8 + length :]
    if hashlib.sha256(body).hexdigest() != metadata.get("sha256"):
        raise ValueError("its data does not match its sha256: the file is truncated or altered")
    arrays = {name: _array(name, spec, body) for name, spec in header.items()}
    tensors = {}
    for name in TENSORS:
        if name not in arrays or list(arrays[name].shape) != SHAPES[name]:
            raise ValueError(f"tensor {name} is missing or not {SHAPES[name]}")
        values = arrays[name].astype(np.float32)
        scale = arrays.get(f"{name}.scale")
        if scale is not None:
            values = values * scale.astype(np.float32).reshape(1, -1, *([1] * (values.ndim - 2)))
        tensors[name] = values
    return tensors, {str(k): str(v) for k, v in metadata.items()}


def _array(name: str, spec: object, body: memoryview) -> npt.NDArray[np.generic]:
    """One tensor of the file, checked against its byte range."""
    try:
        begin, end = spec["data_offsets"]  # type: ignore[index]
        kind = _NUMPY[spec["dtype"]]  # type: ignore[index]
        shape = [int(v) for v in spec["shape"]]  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"tensor {name} has no dtype, shape and data_offsets") from None
    count = int(np.prod(shape))
    if not 0 <= begin <= end <= len(body) or end - begin != count * kind.itemsize:
        raise ValueError(f"tensor {name} does not fit its byte range")
    return np.frombuffer(body[begin:end], dtype=kind).reshape(shape)


def _quantise(values: FloatArray) -> tuple[npt.NDArray[np.int8], FloatArray]:
    """Per-channel symmetric int8: channel c's values / scale[c], scale = max |value| / 127."""
    channels = values.shape[1]
    peak = np.abs(values).transpose(1, 0, *range(2, values.ndim)).reshape(channels, -1).max(1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    shaped = scale.reshape(1, -1, *([1] * (values.ndim - 2)))
    quantised = np.clip(np.rint(values / shaped), -127, 127).astype(np.int8)
    return quantised, scale
