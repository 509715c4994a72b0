"""Clicks decoded in this process (issue 29; `pip install "sam2-sdk[local]"`, onnxruntime):
the server computes an image's embedding once, then `LocalSession` answers clicks, boxes and
refinement with the exported decoder and no request.

    with Sam2Client() as client:
        local = client.local("photo.jpg")  # an upload (or its image_id), two downloads
        click = local.segment(points=[[320, 240]])  # a Segmentation, as segment() gives
        local.segment(points=[[320, 240], [400, 260]], labels=[1, 0], refine=click.mask_id)

The decoder is downloaded once per model and kept on disk by its ETag (`cache_dir`, default
`~/.cache/sam2-sdk`); the embedding once per session. Masks are upsampled and thresholded as
sam2 does (bilinear, half-pixel centres, > 0), so they equal the server's (IoU >= 0.999 with
float32 embeddings; float16, the default, within the bounds tests/sdk/test_local.py holds).
"""

from __future__ import annotations

import os
import secrets
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sam2_contract.embedding import DECODER_INPUTS, EmbeddingDtype, decode_embedding
from sam2_contract.masks import encode_mask
from sam2_contract.models import ModelInfo, PromptSegmentResponse, Timings

from sam2_sdk._exceptions import LocalDecodeError, Sam2Error
from sam2_sdk._types import Box, Labels, Points, Segmentation, prompt_result

FloatArray = npt.NDArray[np.float32]
KEPT_MASKS = 16
PROBE = {"point_coords": [[0, 0]], "mask_format": "rle"}
"""The call that uploads an image (or finds it by image_id) before its embedding is fetched."""


class LocalSession:
    """One image's clicks, decoded here. Made by `Sam2Client.local(image)`."""

    def __init__(
        self,
        embedding: bytes,
        decoder: bytes,
        model: ModelInfo,
    ) -> None:
        try:
            import onnxruntime  # type: ignore[import-untyped]
        except ImportError:  # pragma: no cover - the extra names it
            raise Sam2Error(
                'local decoding needs onnxruntime: pip install "sam2-sdk[local]"'
            ) from None
        try:
            self.tensors, metadata = decode_embedding(embedding)
            self.image_shape = (int(metadata["height"]), int(metadata["width"]))
            self.image_id = metadata["image_id"]
        except (ValueError, KeyError) as exc:
            raise LocalDecodeError(
                f"the embedding download is damaged ({exc}); call client.local() again"
            ) from None
        if metadata.get("model") != model.name:
            raise LocalDecodeError(
                f"the embedding is {metadata.get('model')!r}'s, the decoder {model.name!r}'s"
            )
        self.dtype = metadata["dtype"]
        self.model = model
        try:
            self._session = onnxruntime.InferenceSession(decoder)
        except Exception:  # onnxruntime raises its own kinds for a file it cannot read
            raise LocalDecodeError(
                "the decoder download is not a model onnxruntime can load; it is fetched "
                "again when its cached copy is deleted (cache_dir)"
            ) from None
        if {i.name for i in self._session.get_inputs()} != set(DECODER_INPUTS):
            raise LocalDecodeError("the decoder is not this SDK's: its inputs differ")
        self._kept: OrderedDict[str, FloatArray] = OrderedDict()

    def segment(
        self,
        *,
        points: Points | None = None,
        labels: Labels | None = None,
        box: Box | None = None,
        multimask: bool = True,
        refine: str | None = None,
    ) -> Segmentation:
        """Points and/or one box on this session's image (the server's `segment()` rules:
        labels default to foreground; `refine` is an earlier answer's `mask_id` here)."""
        if points is None and box is None:
            raise TypeError("pass points=, box= or both")
        prompt = _prompt(points, labels, box)
        mask_input = self._kept.get(refine) if refine else None
        if refine and mask_input is None:
            raise Sam2Error(f"no mask {refine} is kept by this local session")
        height, width = self.image_shape
        feed = self.tensors | decoder_inputs(prompt, (height, width), mask_input)
        multi, multi_scores, single, single_score = self._session.run(None, feed)
        low, scores = (multi[0], multi_scores[0]) if multimask else (single[0], single_score[0])
        best = int(np.argmax(scores))
        mask = upsample(low[best], height, width) > 0
        mask_id = "msk_" + secrets.token_hex(12)
        self._kept[mask_id] = np.clip(low[best], -32.0, 32.0)[None]
        while len(self._kept) > KEPT_MASKS:
            self._kept.popitem(last=False)
        response = PromptSegmentResponse(
            mask=encode_mask(mask, "rle"),
            score=float(scores[best]),
            all_scores=[float(s) for s in scores],
            image_shape=[height, width],
            mask_id=mask_id,
            mode="box" if box is not None else "point",
            mask_format="rle",
            image_id=self.image_id,
            model=self.model,
            cached=True,
            timings_ms=Timings(decode_ms=0, embed_ms=0, predict_ms=0, encode_ms=0, total_ms=0),
            warnings=["decoded locally"],
        )
        return prompt_result(response)  # built here, validated by construction: not re-parsed


def upsample(low: FloatArray, height: int, width: int) -> FloatArray:
    """Bilinear resize with half-pixel centres (torch's `align_corners=False`), as sam2
    upsamples its low-resolution logits."""
    rows = _weights(low.shape[0], height)
    cols = _weights(low.shape[1], width)
    out: FloatArray = rows @ low.astype(np.float32) @ cols.T
    return out


def _weights(size_in: int, size_out: int) -> FloatArray:
    """The size_out x size_in interpolation matrix of one axis."""
    scale = size_in / size_out
    source = np.maximum((np.arange(size_out, dtype=np.float32) + 0.5) * scale - 0.5, 0.0)
    low = np.minimum(np.floor(source).astype(int), size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    frac = (source - low).astype(np.float32)
    matrix = np.zeros((size_out, size_in), np.float32)
    np.add.at(matrix, (np.arange(size_out), low), 1 - frac)
    np.add.at(matrix, (np.arange(size_out), high), frac)
    return matrix


def _prompt(points: Points | None, labels: Labels | None, box: Box | None) -> dict[str, Any]:
    prompt: dict[str, Any] = {}
    if box is not None:
        prompt["box"] = [float(v) for v in np.asarray(box, np.float32).reshape(4)]
    if points is not None:
        array = np.asarray(points, np.float32).reshape(-1, 2)
        prompt["points"] = array.tolist()
        prompt["labels"] = (
            [1] * len(array) if labels is None else [int(v) for v in np.asarray(labels).ravel()]
        )
    return prompt


def decoder_inputs(
    prompt: dict[str, Any], orig_hw: tuple[int, int], mask: FloatArray | None
) -> dict[str, FloatArray]:
    """The exported decoder's prompt inputs, in sam2's layout: box corners (labels 2, 3), then
    the points, then the padding point sam2 appends (-1), in pixels of the original image;
    `mask`, 1 x 256 x 256 logits to refine. `prompt`: `points`, `labels`, `box`."""
    coords: list[list[float]] = []
    labels: list[float] = []
    if "box" in prompt:
        x0, y0, x1, y1 = prompt["box"]
        coords += [[x0, y0], [x1, y1]]
        labels += [2, 3]
    coords += prompt.get("points", [])
    labels += prompt.get("labels", [])
    coords.append([0.0, 0.0])
    labels.append(-1)
    return {
        "point_coords": np.asarray([coords], np.float32),
        "point_labels": np.asarray([labels], np.float32),
        "mask_input": np.zeros((1, 1, 256, 256), np.float32) if mask is None else mask[None],
        "has_mask_input": np.asarray([0.0 if mask is None else 1.0], np.float32),
        "orig_im_size": np.asarray(orig_hw, np.float32),
    }


class DecoderCache:
    """A model's decoder kept on disk by its ETag (`<name>.onnx` and `<name>.etag` in
    `directory`, default `~/.cache/sam2-sdk`), so it is downloaded once: a request carries the
    kept ETag, and a 304 answer means the kept file is current."""

    def __init__(self, directory: str | os.PathLike[str] | None, name: str) -> None:
        folder = Path(directory) if directory is not None else Path.home() / ".cache" / "sam2-sdk"
        folder.mkdir(parents=True, exist_ok=True)
        self._onnx, self._tag = folder / f"{name}.onnx", folder / f"{name}.etag"
        self.path = f"/v1/models/{name}/decoder.onnx"

    def headers(self) -> dict[str, str]:
        known = self._tag.read_text() if self._tag.exists() and self._onnx.exists() else ""
        return {"if-none-match": known} if known else {}

    def answer(self, status: int, content: bytes, etag: str) -> bytes:
        """The decoder's bytes for the server's answer (200 with the file, or 304)."""
        if status == 304 and self.headers():
            return self._onnx.read_bytes()
        for path, data in ((self._onnx, content), (self._tag, etag.encode())):
            partial = path.with_name(f"{path.name}.{secrets.token_hex(4)}.partial")
            partial.write_bytes(data)
            partial.replace(path)  # whole or not at all, whoever else reads the folder
        return content


__all__ = ["PROBE", "DecoderCache", "EmbeddingDtype", "LocalSession", "decoder_inputs", "upsample"]
