"""SAM2's prompt encoder and mask decoder as an ONNX model, for decoding clicks on the client.

The server computes an image's embedding once (the image encoder, the expensive part); a client
that holds the embedding and this model answers every later click itself, with no round trip.
`DecoderOnnx` is exactly what `SAM2ImagePredictor._predict` runs after the encoder, for one
image: the prompts as sam2 prepares them (points in pixels of the original image, normalised by
`orig_im_size` to the model's 1024x1024 input; a box as two corner points labelled 2 and 3,
before the points; last, the padding point sam2 always appends, label -1, sent by the client),
the mask to refine (`mask_input`, with `has_mask_input` 1) or none, then the decoder. It answers the
low-resolution logits (256 x 256) and IoU scores of both selections sam2 makes: the three
multimask candidates, and the single mask (with sam2's dynamic multimask-via-stability). The
client upsamples (bilinear, to the original size) and thresholds at 0, as sam2 does.

Served by `GET /v1/models/{name}/decoder.onnx` (image/client_decode.py exports it once per
process, with an ETag of its bytes); its parity with sam2 is tests/inference/image/test_onnx.py,
and the SDKs' local sessions (Python onnxruntime, onnxruntime-web in Node and Chromium) are
held to the server's answers by tests/sdk/test_local.py, test_js_local.py and the playground's
browser test.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from sam2.modeling.sam2_base import SAM2Base
from sam2_contract.embedding import DECODER_INPUTS, DECODER_OUTPUTS
from sam2_contract.models import MAX_POINTS as REQUEST_POINTS

INPUT_NAMES, OUTPUT_NAMES = DECODER_INPUTS, DECODER_OUTPUTS
OPSET = 18
MAX_POINTS = REQUEST_POINTS + 3
"""The most points the model takes: a request's points, a box's two corners, the padding point."""


class DecoderOnnx(torch.nn.Module):
    """The part of `SAM2ImagePredictor._predict` after the image encoder, for one image."""

    def __init__(self, model: SAM2Base) -> None:
        super().__init__()
        # Copies: the export runs on the CPU and must not move the served model.
        self.prompt_encoder = copy.deepcopy(model.sam_prompt_encoder).cpu()
        self.mask_decoder = copy.deepcopy(model.sam_mask_decoder).cpu()
        self.image_size = float(model.image_size)

    def forward(
        self,
        image_embed: torch.Tensor,  # 1 x 256 x 64 x 64
        high_res_feats_0: torch.Tensor,  # 1 x 32 x 256 x 256
        high_res_feats_1: torch.Tensor,  # 1 x 64 x 128 x 128
        point_coords: torch.Tensor,  # 1 x N x 2, pixels of the original image
        point_labels: torch.Tensor,  # 1 x N (float): 1, 0, 2/3 (box corners), -1 (padding)
        mask_input: torch.Tensor,  # 1 x 1 x 256 x 256 logits to refine
        has_mask_input: torch.Tensor,  # 1: mask_input is used; 0: it is not
        orig_im_size: torch.Tensor,  # [height, width]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        encoder = self.prompt_encoder
        scale = self.image_size / orig_im_size.flip(0).to(point_coords.dtype)
        sparse = encoder._embed_points(point_coords * scale, point_labels, pad=False)
        size = encoder.image_embedding_size
        no_mask = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, *size)
        dense = has_mask_input * encoder._embed_masks(mask_input) + (1 - has_mask_input) * no_mask
        decoder = self.mask_decoder
        masks, scores, _, _ = decoder.predict_masks(
            image_embeddings=image_embed,
            image_pe=encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            repeat_image=False,
            high_res_features=[high_res_feats_0, high_res_feats_1],
        )
        if decoder.dynamic_multimask_via_stability:
            single, single_score = decoder._dynamic_multimask_via_stability(masks, scores)
        else:
            single, single_score = masks[:, 0:1], scores[:, 0:1]
        return masks[:, 1:], scores[:, 1:], single, single_score


def example_inputs(model: SAM2Base, points: int = 2) -> tuple[torch.Tensor, ...]:
    """Inputs of the right shapes (the export traces with them; `point_coords` varies)."""
    side = model.image_size // 16
    return (
        torch.zeros(1, 256, side, side),
        torch.zeros(1, 32, side * 4, side * 4),
        torch.zeros(1, 64, side * 2, side * 2),
        torch.zeros(1, points, 2),
        torch.ones(1, points),
        torch.zeros(1, 1, side * 4, side * 4),
        torch.zeros(1),
        torch.tensor([side * 16, side * 16], dtype=torch.float32),
    )


def export_decoder(model: SAM2Base) -> bytes:
    """The ONNX model of `DecoderOnnx` for `model`: float32, on the CPU, 1 to `MAX_POINTS`
    points (torch.export-based exporter, onnxscript)."""
    module = DecoderOnnx(model).eval()
    points = torch.export.Dim("points", min=1, max=MAX_POINTS)
    shapes: dict[str, Any] = dict.fromkeys(INPUT_NAMES)
    shapes["point_coords"] = shapes["point_labels"] = {1: points}
    with torch.no_grad(), warnings.catch_warnings():
        # The exporter says that the two inputs' axis name is one: they are one dimension.
        warnings.filterwarnings("ignore", message="# The axis name", category=UserWarning)
        program = torch.onnx.export(
            module,
            example_inputs(model),
            dynamo=True,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes=shapes,
            opset_version=OPSET,
            verbose=False,
        )
    assert program is not None
    return bytes(program.model_proto.SerializeToString())
