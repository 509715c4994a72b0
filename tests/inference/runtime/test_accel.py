"""Speed on CUDA (accel.py): bfloat16 weights where the issue allows them, CUDA graphs that give
what the eager model gives, and automatic mode's one large batch in the fast pipeline.

The CUDA tests run where a GPU is (bench/gpu.sh runs this file there); the rest run anywhere.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from sam2.modeling.sam2_base import SAM2Base
from sam2.sam2_image_predictor import SAM2ImagePredictor
from sam2_contract import SegmentRequest, decode_mask
from sam2_contract.images import DecodedImage, image_id_for
from sam2_inference import EmbeddingCache, Sam2Engine
from sam2_inference.runtime.accel import Graphed, accelerate, cast_weights, release
from sam2_inference.runtime.device import inference_context
from support import IMAGES, fresh_engine

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _dtypes(module: torch.nn.Module) -> set[torch.dtype]:
    tensors = [*module.parameters(), *module.buffers()]
    return {tensor.dtype for tensor in tensors if tensor.is_floating_point()}


def test_bfloat16_weights_leave_the_prompt_encoder_and_memory_in_float32(
    loaded_engine: Sam2Engine,
) -> None:
    model: SAM2Base = copy.deepcopy(loaded_engine.model)
    cast_weights(model)
    assert _dtypes(model.image_encoder) == {torch.bfloat16}
    assert _dtypes(model.sam_mask_decoder) == {torch.bfloat16}
    assert _dtypes(model.sam_prompt_encoder) == {torch.float32}
    gaussian = model.sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
    assert gaussian.dtype == torch.float32
    assert _dtypes(model.memory_encoder) == {torch.float32}
    assert model.no_mem_embed.dtype == torch.float32


def test_off_cuda_the_fast_pipeline_keeps_sam2s_float32_eager_model(
    loaded_engine: Sam2Engine,
) -> None:
    fast = fresh_engine(loaded_engine, pipeline="fast")
    assert fast.acceleration is None
    assert _dtypes(fast.model.image_encoder) == {torch.float32}
    assert "forward" not in fast.model.image_encoder.__dict__


def _decoder_batches(engine: Sam2Engine, **fields: Any) -> list[int]:
    pixels = IMAGES["portrait"]
    decoded = DecodedImage(pixels=pixels, format="raw", image_id=image_id_for(pixels))
    request = SegmentRequest(image_id=decoded.image_id, mode="auto", mask_format="rle", **fields)
    batches: list[int] = []

    def count(_: Any, args: Any, kwargs: dict[str, Any]) -> None:
        batches.append(kwargs["sparse_prompt_embeddings"].shape[0])

    handle = engine.model.sam_mask_decoder.register_forward_pre_hook(count, with_kwargs=True)
    try:
        engine.segment(request, image=decoded)
    finally:
        handle.remove()
    return batches


def test_fast_auto_mode_runs_the_grid_in_one_batch_unless_a_batch_is_asked_for(
    loaded_engine: Sam2Engine,
) -> None:
    fast = fresh_engine(loaded_engine, pipeline="fast", auto_slice=0)
    exact = fresh_engine(loaded_engine, pipeline="exact", auto_slice=0)
    assert _decoder_batches(fast, points_per_side=9) == [81]
    assert _decoder_batches(fast, points_per_side=9, points_per_batch=64) == [64, 17]
    assert _decoder_batches(exact, points_per_side=9) == [64, 17]  # sam2's default, as published


# --- on a CUDA device -------------------------------------------------------------------------


@pytest.fixture
def cuda_model(loaded_engine: Sam2Engine) -> SAM2Base:
    return copy.deepcopy(loaded_engine.model).to("cuda")


@cuda
def test_graphed_encoder_and_decoder_give_what_the_eager_model_gives(
    cuda_model: SAM2Base,
) -> None:
    eager = SAM2ImagePredictor(cuda_model)
    graphed_model = copy.deepcopy(cuda_model)
    accelerate(graphed_model, bf16=False, graphs=True)
    graphed = SAM2ImagePredictor(graphed_model)
    clicks = {"point_coords": np.array([[40.0, 30.0], [90.0, 60.0]]), "point_labels": [1, 0]}
    first: list[np.ndarray] = []
    with inference_context(torch.device("cuda")):
        for name in ("landscape", "portrait", "landscape"):
            eager.set_image(IMAGES[name])
            graphed.set_image(IMAGES[name])
            for key in ("image_embed", "high_res_feats"):
                ours, theirs = graphed._features[key], eager._features[key]
                for mine, sams in zip(
                    ours if isinstance(ours, list) else [ours],
                    theirs if isinstance(theirs, list) else [theirs],
                    strict=True,
                ):
                    assert torch.equal(mine, sams)
            masks, scores, _ = graphed.predict(**clicks)
            sam_masks, sam_scores, _ = eager.predict(**clicks)
            assert np.array_equal(masks, sam_masks)
            assert np.array_equal(scores, sam_scores)
            first.append(masks)
    # the first image's answer was not overwritten by the later replays
    assert np.array_equal(first[0], first[2])
    encoder_graphs = graphed_model.image_encoder.forward
    assert isinstance(encoder_graphs, Graphed)
    assert encoder_graphs.graphs == 1
    release(graphed_model)
    assert "forward" not in graphed_model.image_encoder.__dict__


@cuda
def test_a_forward_that_cannot_be_captured_runs_eagerly_instead_of_failing() -> None:
    def synchronising(x: torch.Tensor) -> torch.Tensor:
        scale = float((x.abs().max() + 1).item())  # a host sync: illegal while capturing
        return x * 2 / scale

    graphed = Graphed(synchronising, name="test module")
    x = torch.arange(6.0, device="cuda").reshape(2, 3)
    with torch.no_grad():
        first = graphed(x)
        second = graphed(x + 1)  # same signature: not captured again
    assert torch.equal(first, synchronising(x))
    assert torch.equal(second, synchronising(x + 1))
    assert (graphed.graphs, graphed.uncapturable) == (0, 1)
    assert torch.equal(torch.ones(3, device="cuda") + 1, torch.full((3,), 2.0, device="cuda"))


def _on_cuda(loaded: Sam2Engine, pipeline: str) -> Sam2Engine:
    engine = Sam2Engine(
        copy.deepcopy(loaded.model),
        loaded.info,
        EmbeddingCache(1 << 30),
        max_pixels=loaded.max_pixels,
        pipeline=pipeline,  # type: ignore[arg-type]
    )
    engine.to(torch.device("cuda"))
    return engine


@cuda
def test_an_accelerated_engine_answers_within_bfloat16_of_the_exact_one(
    loaded_engine: Sam2Engine,
) -> None:
    exact, fast = _on_cuda(loaded_engine, "exact"), _on_cuda(loaded_engine, "fast")
    assert exact.acceleration is None
    assert fast.acceleration is not None
    assert fast.acceleration.graphs
    assert _dtypes(fast.model.image_encoder) == {torch.bfloat16}
    pixels = IMAGES["landscape"]
    decoded = DecodedImage(pixels=pixels, format="raw", image_id=image_id_for(pixels))
    request = SegmentRequest(image_id=decoded.image_id, point_coords=[[40, 30]], mask_format="rle")
    for _ in range(2):  # the second answer comes from the cached embedding
        ours = fast.segment(request, image=decoded).model_dump()
        theirs = exact.segment(request, image=decoded).model_dump()
        mine, sams = decode_mask(ours["mask"]), decode_mask(theirs["mask"])
        iou = (mine & sams).sum() / max(1, (mine | sams).sum())
        assert iou > 0.9
        assert ours["score"] == pytest.approx(theirs["score"], abs=0.05)
