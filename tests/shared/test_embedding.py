"""The embedding container (sam2_contract.embedding): safetensors as the library reads it, the
three dtypes within their bounds, and damaged files refused (issue 29)."""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest
from sam2_contract.embedding import TENSORS, decode_embedding, encode_embedding

SHAPES = {
    "image_embed": (1, 256, 64, 64),
    "high_res_feats_0": (1, 32, 256, 256),
    "high_res_feats_1": (1, 64, 128, 128),
}
META = {"image_id": "img_" + "a" * 32, "height": "120", "width": "200", "model": "tiny"}


@pytest.fixture(scope="module")
def tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        name: (rng.standard_normal(shape) * 4).astype(np.float32) for name, shape in SHAPES.items()
    }


def test_float32_round_trips_exactly_and_the_library_reads_it(
    tensors: dict[str, np.ndarray],
) -> None:
    data = encode_embedding(tensors, "float32", META)
    back, metadata = decode_embedding(data)
    for name in TENSORS:
        assert np.array_equal(back[name], tensors[name])
    digest = metadata.pop("sha256")
    assert metadata == {"format": "sam2-embedding", "version": "1", "dtype": "float32", **META}
    assert digest == hashlib.sha256(data[8 + struct.unpack("<Q", data[:8])[0] :]).hexdigest()
    (length,) = struct.unpack("<Q", data[:8])
    assert (8 + length) % 8 == 0  # the data starts aligned
    library = pytest.importorskip("safetensors.numpy")
    loaded = library.load(data)
    assert set(loaded) == set(TENSORS)
    assert np.array_equal(loaded["image_embed"], tensors["image_embed"])


def test_float16_and_int8_are_smaller_and_close(tensors: dict[str, np.ndarray]) -> None:
    full = len(encode_embedding(tensors, "float32", META))
    half = encode_embedding(tensors, "float16", META)
    eighth = encode_embedding(tensors, "int8", META)
    assert len(half) < full * 0.51
    assert len(eighth) < full * 0.26
    back16, _ = decode_embedding(half)
    back8, metadata = decode_embedding(eighth)
    assert metadata["dtype"] == "int8"
    for name in TENSORS:
        values = tensors[name]
        assert np.abs(back16[name] - values).max() <= np.abs(values).max() * 2**-10
        peak = np.abs(values).max(axis=(0, 2, 3), keepdims=True)
        assert (np.abs(back8[name] - values) <= peak / 127 / 2 + 1e-6).all()


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:4],
        lambda data: struct.pack("<Q", 1 << 40) + data[8:],
        lambda data: data[: len(data) // 2],
        lambda data: data.replace(b"sam2-embedding", b"something-else"),
        lambda data: data[:-1000] + bytes(b ^ 1 for b in data[-1000:]),
        lambda data: data[:-2],
        lambda data: struct.pack("<Q", 4) + b"[1] " + data[12:],
    ],
    ids=[
        "too short",
        "header past the end",
        "truncated data",
        "another format",
        "bytes altered",
        "two bytes missing",
        "header not an object",
    ],
)
def test_a_damaged_file_is_refused(tensors: dict[str, np.ndarray], damage: object) -> None:
    data = encode_embedding(tensors, "float16", META)
    with pytest.raises(ValueError, match=r"safetensors|sha256|not a sam2-embedding"):
        decode_embedding(damage(data))  # type: ignore[operator]


def test_a_tensor_of_another_shape_is_refused(tensors: dict[str, np.ndarray]) -> None:
    """A whole file of the wrong tensors (another model's, a crafted one) is not decoded."""
    wrong = tensors | {"image_embed": tensors["image_embed"][:, :128]}
    with pytest.raises(ValueError, match=r"image_embed is missing or not \[1, 256, 64, 64\]"):
        decode_embedding(encode_embedding(wrong, "float32", META))
