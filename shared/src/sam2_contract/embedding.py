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
`image_id`, `height` and `width`, and the model's name. This module has no torch: the Python
SDK decodes with it.
"""

from __future__ import annotations

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
_CODES = {"float32": "F32", "float16": "F16", "int8": "I8"}
_NUMPY: dict[str, np.dtype[np.generic]] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I8": np.dtype("i1"),
}
MAX_HEADER_BYTES = 1 << 16

FloatArray = npt.NDArray[np.float32]


DTYPES: dict[str, EmbeddingDtype] = {"float32": "float32", "float16": "float16", "int8": "int8"}
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
    header: dict[str, object] = {
        "__metadata__": {"format": FORMAT, "version": VERSION, "dtype": dtype, **metadata}
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
    return struct.pack("<Q", len(text)) + text + b"".join(a.tobytes() for _, a in stored)


def decode_embedding(data: bytes) -> tuple[dict[str, FloatArray], dict[str, str]]:
    """The float32 tensors of an embedding file and its metadata; ValueError if it is not one."""
    if len(data) < 8:
        raise ValueError("too short for a safetensors file")
    (length,) = struct.unpack("<Q", data[:8])
    if length > MAX_HEADER_BYTES or 8 + length > len(data):
        raise ValueError("the safetensors header is larger than the file")
    header = json.loads(data[8 : 8 + length])
    metadata = header.pop("__metadata__", {})
    if metadata.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} file")
    body = memoryview(data)[8 + length :]
    arrays: dict[str, npt.NDArray[np.generic]] = {}
    for name, spec in header.items():
        begin, end = spec["data_offsets"]
        kind = _NUMPY[spec["dtype"]]
        count = int(np.prod(spec["shape"]))
        if not 0 <= begin <= end <= len(body) or end - begin != count * kind.itemsize:
            raise ValueError(f"tensor {name} does not fit its byte range")
        arrays[name] = np.frombuffer(body[begin:end], dtype=kind).reshape(spec["shape"])
    tensors = {}
    for name in TENSORS:
        values = arrays[name].astype(np.float32)
        scale = arrays.get(f"{name}.scale")
        if scale is not None:
            values = values * scale.astype(np.float32).reshape(1, -1, *([1] * (values.ndim - 2)))
        tensors[name] = values
    return tensors, {str(k): str(v) for k, v in metadata.items()}


def _quantise(values: FloatArray) -> tuple[npt.NDArray[np.int8], FloatArray]:
    """Per-channel symmetric int8: channel c's values / scale[c], scale = max |value| / 127."""
    channels = values.shape[1]
    peak = np.abs(values).transpose(1, 0, *range(2, values.ndim)).reshape(channels, -1).max(1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    shaped = scale.reshape(1, -1, *([1] * (values.ndim - 2)))
    quantised = np.clip(np.rint(values / shaped), -127, 127).astype(np.int8)
    return quantised, scale
