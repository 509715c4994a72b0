"""Mask codecs: `bool2d` (the original nested lists), COCO `rle`, 1-bit `png` and `polygon`
(polygons.py).

RLE follows pycocotools exactly: runs are counted over the mask in column-major order starting
with a run of zeros, and the counts are written with COCO's 6-bit variable-length, delta-of-two
compression, so `encode_rle(m).counts == pycocotools.mask.encode(m)["counts"].decode()`.
Both directions are vectorised with NumPy; no C extension is needed.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from sam2_contract.errors import ErrorCode, InvalidRequestError
from sam2_contract.models import Mask, MaskFormat, PolygonMask, RLEMask
from sam2_contract.polygons import (
    DEFAULT_TOLERANCE,
    EdgeBudget,
    encode_polygons,
    polygons_to_mask,
)

BoolMask = npt.NDArray[np.bool_]

_CHUNK_BITS = 5
_MAX_CHUNKS = 7  # 7 * 5 bits cover any 32-bit run length difference


def encode_mask(
    mask: npt.ArrayLike,
    mask_format: MaskFormat,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    budget: EdgeBudget | None = None,
) -> Mask:
    """Encode one HxW mask in the requested format (`tolerance`, `budget`: for polygons)."""
    array = np.asarray(mask, dtype=bool)
    if mask_format == "rle":
        return encode_rle(array)
    if mask_format == "png":
        return encode_png(array)
    if mask_format == "polygon":
        return encode_polygons(array, tolerance, budget=budget)
    return encode_bool2d(array)


def decode_mask(value: Mask | dict[str, Any]) -> BoolMask:
    """Decode a mask in any of the four formats; the format is told by its JSON shape."""
    if isinstance(value, str):
        return decode_png(value)
    if isinstance(value, dict):
        if "polygons" in value:
            return polygons_to_mask(PolygonMask.model_validate(value))
        return decode_rle(RLEMask.model_validate(value))
    if isinstance(value, RLEMask):
        return decode_rle(value)
    if isinstance(value, PolygonMask):
        return polygons_to_mask(value)
    return decode_bool2d(value)


def mask_slots(answer: dict[str, Any]) -> list[tuple[Any, Any]]:
    """Where a segment answer holds its masks, as (container, key) pairs in answer order:
    `mask`, `all_masks`, each prediction's, each auto mask's `segmentation`."""
    slots: list[tuple[Any, Any]] = []
    prompts = [answer, *(answer.get("predictions") or [])] if "mask" in answer else []
    for prompt in prompts:
        slots.append((prompt, "mask"))
        slots.extend((prompt["all_masks"], i) for i in range(len(prompt.get("all_masks") or [])))
    slots.extend((auto_mask, "segmentation") for auto_mask in answer.get("masks") or [])
    return slots


def render_answer(
    answer: dict[str, Any], mask_format: MaskFormat, *, tolerance: float = DEFAULT_TOLERANCE
) -> dict[str, Any]:
    """A segment answer whose masks are RLE (as the inference hop sends them), with every mask
    re-encoded in `mask_format`: `mask`, `all_masks`, each prediction's, each auto mask's.
    Changes `answer` in place and returns it."""
    budget = EdgeBudget()
    for holder, key in mask_slots(answer):
        encoded = encode_mask(
            decode_mask(holder[key]), mask_format, tolerance=tolerance, budget=budget
        )
        holder[key] = encoded.model_dump() if isinstance(encoded, PolygonMask) else encoded
    answer["mask_format"] = mask_format
    return answer


def encode_bool2d(mask: BoolMask) -> list[list[bool]]:
    """The original response format: one list of booleans per row."""
    rows: list[list[bool]] = np.asarray(mask, dtype=bool).tolist()
    return rows


_TRUE = np.frombuffer(b"true,", dtype=np.uint8)
_FALSE = np.frombuffer(b"false,", dtype=np.uint8)


def bool2d_json_bytes(height: int, width: int) -> int:
    """The most bytes `bool2d_json` writes for an HxW mask (all `false`): what a bool2d answer
    costs, known before any mask is made."""
    return 2 + height * (6 * width + 3)


PNG_OVERHEAD_BYTES = 1024


def answer_mask_bytes(mask_format: str, height: int, width: int) -> int:
    """The most bytes one HxW mask takes in an answer in `mask_format` (0 for `rle` and
    `polygon`, which are bounded otherwise: RLE by the mask's outline, polygons by their edge
    budget)."""
    if mask_format == "bool2d":
        return bool2d_json_bytes(height, width)
    if mask_format == "png":  # a 1-bit PNG never grows past its raw rows; base64 adds a third
        return ((width + 8) // 8 * height + PNG_OVERHEAD_BYTES) * 4 // 3
    return 0


def answer_too_large(needed: int, limit: int, mask_format: str, masks: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"the answer would be {needed / 2**20:.0f} MiB ({masks} masks as {mask_format}), over "
        f"the gateway's {limit / 2**20:.0f} MiB for one answer",
        code=ErrorCode.ANSWER_TOO_LARGE,
    )


def bool2d_json(mask: BoolMask) -> bytes:
    """`encode_bool2d(mask)` as compact JSON, byte for byte what `json.dumps(..., separators=
    (",", ":"))` writes, without the nested lists: those hold 8 bytes of pointer a pixel (and
    their serialisation as much again), this holds the answer's own bytes and a few rows."""
    return b"".join(bool2d_json_chunks(mask))


def bool2d_json_chunks(mask: BoolMask, rows_at_once: int = 256) -> list[bytes]:
    """`bool2d_json(mask)` in pieces of `rows_at_once` rows, to be sent without joining."""
    array = np.asarray(mask, dtype=bool)
    height, width = array.shape
    if height == 0:
        return [b"[]"]
    if width == 0:
        return [b"[" + b",".join([b"[]"] * height) + b"]"]
    chunks = [b"["]
    for top in range(0, height, rows_at_once):
        block = array[top : top + rows_at_once]
        lengths = np.where(block, 5, 6).astype(np.int64)  # "true," / "false,"
        starts = np.zeros(block.shape, dtype=np.int64)
        row_bytes = lengths.sum(axis=1) + 2  # "[" ... "]" and the "," after the row
        np.cumsum(lengths[:, :-1], axis=1, out=starts[:, 1:])
        starts += (np.cumsum(row_bytes) - row_bytes + 1)[:, None]
        out = np.full(int(row_bytes.sum()), ord(","), dtype=np.uint8)
        for token, where in ((_TRUE, block), (_FALSE, ~block)):
            at = starts[where]
            for k in range(len(token) - 1):
                out[at + k] = token[k]
        row_starts = starts[:, 0] - 1
        out[row_starts] = ord("[")
        out[row_starts + row_bytes - 2] = ord("]")
        chunks.append(out.tobytes())
    chunks[-1] = chunks[-1][:-1] + b"]"
    return chunks


def decode_bool2d(rows: list[list[bool]]) -> BoolMask:
    return np.asarray(rows, dtype=bool)


def rle_counts(mask: BoolMask) -> npt.NDArray[np.int64]:
    """Uncompressed COCO run lengths: column-major, first run counts zeros."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return np.zeros(0, dtype=np.int64)
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    return counts_from_changes(changes, flat.size, starts_set=bool(flat[0]))


def counts_from_changes(
    changes: npt.ArrayLike, size: int, *, starts_set: bool
) -> npt.NDArray[np.int64]:
    """Run lengths from the positions where a flattened mask of `size` pixels changes value
    (column-major), and whether its first pixel is set (then a zero-length run comes first)."""
    bounds = np.concatenate(([0], np.asarray(changes, dtype=np.int64), [size]))
    counts = np.diff(bounds).astype(np.int64)
    return np.concatenate(([0], counts)) if starts_set else counts


def encode_rle(mask: BoolMask) -> RLEMask:
    """COCO compressed RLE of a HxW mask."""
    height, width = np.shape(mask)
    return RLEMask(size=[height, width], counts=_compress(rle_counts(mask)))


def rle_from_counts(size: Sequence[int], counts: npt.ArrayLike) -> RLEMask:
    """COCO compressed RLE from uncompressed run lengths (column-major, zeros first), the form
    SAM2's automatic mask generator keeps its masks in: no mask is built to encode it."""
    return RLEMask(
        size=[int(size[0]), int(size[1])], counts=_compress(np.asarray(counts, dtype=np.int64))
    )


def decode_rle(rle: RLEMask) -> BoolMask:
    return mask_from_counts(rle.size, _decompress(rle.counts))


def mask_from_counts(size: Sequence[int], counts: npt.ArrayLike) -> BoolMask:
    """The HxW mask of uncompressed run lengths (column-major, zeros first)."""
    height, width = int(size[0]), int(size[1])
    runs = np.asarray(counts, dtype=np.int64)
    if int(runs.sum()) != height * width:
        raise ValueError(f"RLE counts cover {int(runs.sum())} pixels, size says {height * width}")
    values = np.zeros(runs.size, dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    return flat.reshape((width, height)).T.copy()


def encode_png(mask: BoolMask) -> str:
    """A 1-bit PNG of the mask, base64-encoded."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=bool)).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_png(data: str) -> BoolMask:
    with Image.open(io.BytesIO(base64.b64decode(data, validate=True))) as image:
        return np.asarray(image.convert("1"), dtype=bool)


def _compress(counts: npt.NDArray[np.int64]) -> str:
    """pycocotools' rleToString: deltas against the count two back, 5 bits per char."""
    x = counts.copy()
    x[3:] -= counts[1:-2]
    # A value needs n chunks when it fits in n*5 bits as a signed number.
    n_chunks = np.ones(x.size, dtype=np.int64)
    for k in range(1, _MAX_CHUNKS):
        limit = 1 << (_CHUNK_BITS * k - 1)
        n_chunks += (x < -limit) | (x >= limit)
    owner = np.repeat(np.arange(x.size), n_chunks)
    starts = np.cumsum(n_chunks) - n_chunks
    position = np.arange(owner.size) - starts[owner]
    chunks = (x[owner] >> (_CHUNK_BITS * position)) & 0x1F
    more = position < n_chunks[owner] - 1
    chars = chunks | np.where(more, 0x20, 0)
    return str((chars + 48).astype(np.uint8).tobytes().decode("ascii"))


def _decompress(counts: str) -> npt.NDArray[np.int64]:
    """pycocotools' rleFrString, the inverse of `_compress`."""
    chars = np.frombuffer(counts.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    if chars.size == 0:
        return np.zeros(0, dtype=np.int64)
    if np.any((chars < 0) | (chars > 0x3F)) or chars[-1] & 0x20:
        raise ValueError("not a COCO RLE counts string")
    last = (chars & 0x20) == 0
    owner = np.concatenate(([0], np.cumsum(last)[:-1]))
    starts = np.flatnonzero(np.concatenate(([True], last[:-1])))
    position = np.arange(chars.size) - starts[owner]
    values = np.zeros(int(last.sum()), dtype=np.int64)
    np.add.at(values, owner, (chars & 0x1F) << (_CHUNK_BITS * position))
    n_chunks = np.bincount(owner)
    negative = (chars[last] & 0x10) != 0
    values[negative] -= 1 << (_CHUNK_BITS * n_chunks[negative])
    # Undo the delta: every count from the fourth on adds the count two before it.
    out = values.copy()
    if values.size > 3:
        out[3::2] = np.cumsum(values[3::2]) + values[1]
    if values.size > 4:
        out[4::2] = np.cumsum(values[4::2]) + values[2]
    return out
