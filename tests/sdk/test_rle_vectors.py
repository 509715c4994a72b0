"""The RLE test vectors the TypeScript SDK decodes are the Python codec's own answers.

Regenerate after a codec change: `.venv/bin/python tests/sdk/test_rle_vectors.py`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sam2_contract import decode_rle, encode_rle

VECTORS = Path(__file__).parents[2] / "sdk-js" / "test" / "rle-vectors.json"


def vectors() -> list[dict[str, object]]:
    rng = np.random.default_rng(11)
    shapes = [(1, 1), (3, 5), (7, 4), (16, 16), (31, 47), (64, 9)]
    out = []
    for index, (height, width) in enumerate(shapes):
        mask = rng.random((height, width)) < [0.0, 1.0, 0.5, 0.2, 0.6, 0.05][index]
        rle = encode_rle(mask)
        rows = "".join("1" if v else "0" for v in decode_rle(rle).ravel())  # row-major
        out.append({"rle": rle.model_dump(), "mask": rows})
    return out


def test_committed_vectors_are_the_python_codecs_answers() -> None:
    assert json.loads(VECTORS.read_text()) == vectors()


if __name__ == "__main__":
    VECTORS.write_text(json.dumps(vectors(), indent=1) + "\n")
