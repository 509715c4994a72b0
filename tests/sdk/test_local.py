"""The Python SDK's local decoder (issue 29) against the real gateway: 32 random clicks, boxes,
points with a box and refinements decoded in this process equal the server's answers (float32
to IoU 0.999 and scores to 1e-4; float16 and int8 to a mean IoU of 0.99, 1st percentile 0.97);
the decoder is downloaded once (ETag); a damaged download is an error, never a mask."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sam2_sdk import AsyncSam2Client, LocalDecodeError, LocalSession, Sam2Client
from sam2_sdk._local import upsample
from support import IMAGES, GatewayServer, answer_prompts, mask_iou, random_prompts

pytest.importorskip("onnxruntime")

BOUNDS = {"float32": (0.999, 0.999), "float16": (0.99, 0.97), "int8": (0.99, 0.97)}


def test_upsampling_is_torchs_bilinear() -> None:
    import torch
    import torch.nn.functional as F  # noqa: N812

    low = np.random.default_rng(1).standard_normal((256, 256)).astype(np.float32)
    theirs = F.interpolate(torch.from_numpy(low)[None, None], (120, 200), mode="bilinear")
    assert np.abs(upsample(low, 120, 200) - theirs[0, 0].numpy()).max() < 1e-4


@pytest.fixture(scope="module")
def served(gateway_server: GatewayServer) -> dict[str, Any]:
    """The server's answers to 32 random prompts on each test image."""
    answers = {}
    with Sam2Client(api_key=gateway_server.key, base_url=gateway_server.url) as client:
        for image in ("landscape", "portrait"):
            height, width = IMAGES[image].shape[:2]
            prompts = random_prompts(7, width, height)
            pixels = IMAGES[image]
            answers[image] = (
                prompts,
                answer_prompts(lambda **p: client.segment(pixels, **p), prompts),  # noqa: B023
            )
    return answers


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_local_clicks_equal_the_servers(
    gateway_server: GatewayServer, tmp_path: Path, served: dict[str, Any], dtype: str
) -> None:
    mean_bound, worst_bound = BOUNDS[dtype]
    ious = []
    with Sam2Client(api_key=gateway_server.key, base_url=gateway_server.url) as client:
        for image, (prompts, theirs) in served.items():
            local = client.local(IMAGES[image], dtype=dtype, cache_dir=tmp_path)  # type: ignore[arg-type]
            assert local.image_shape == IMAGES[image].shape[:2]
            mine = answer_prompts(local.segment, prompts)
            for ours, server in zip(mine, theirs, strict=True):
                ious.append(mask_iou(ours.mask, server.mask))
                assert ours.mask.shape == server.mask.shape
                assert len(ours.all_scores) == len(server.all_scores)
                if dtype == "float32":
                    assert abs(ours.score - server.score) < 1e-4
                    assert np.abs(np.subtract(ours.all_scores, server.all_scores)).max() < 1e-4
    assert len(ious) == 64
    assert np.mean(ious) >= mean_bound
    assert np.percentile(ious, 1) >= worst_bound
    if dtype == "float32":
        assert min(ious) >= 0.999


def test_the_decoder_is_downloaded_once(gateway_server: GatewayServer, tmp_path: Path) -> None:
    """The second session sends the kept ETag, the gateway answers 304, the file on disk is
    used as it is; the async client does the same."""
    pixels = IMAGES["landscape"]
    with Sam2Client(api_key=gateway_server.key, base_url=gateway_server.url) as client:
        first = client.local(pixels, cache_dir=tmp_path).segment(points=[[60, 40]])
        kept = (tmp_path / "tiny.onnx").stat().st_mtime_ns
        again = client.local(pixels, cache_dir=tmp_path)
    assert (tmp_path / "tiny.onnx").stat().st_mtime_ns == kept
    assert again.segment(points=[[60, 40]]).score == pytest.approx(first.score)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.etag", "tiny.onnx"]

    async def main() -> LocalSession:
        async with AsyncSam2Client(api_key=gateway_server.key, base_url=gateway_server.url) as c:
            return await c.local(pixels, cache_dir=tmp_path)

    session = asyncio.run(main())
    assert (tmp_path / "tiny.onnx").stat().st_mtime_ns == kept
    assert session.segment(points=[[60, 40]]).score == pytest.approx(first.score)


def test_a_damaged_download_is_an_error_never_a_mask(
    gateway_server: GatewayServer, tmp_path: Path
) -> None:
    pixels = IMAGES["landscape"]
    with Sam2Client(api_key=gateway_server.key, base_url=gateway_server.url) as client:
        session = client.local(pixels, dtype="int8", cache_dir=tmp_path)
        image_id = session.image_id
        embedding = client.download(f"/v1/images/{image_id}/embedding?dtype=int8")
    decoder = (tmp_path / "tiny.onnx").read_bytes()
    for damaged in (embedding[: len(embedding) // 3], embedding[:-64] + bytes(64)):
        with pytest.raises(LocalDecodeError, match=r"damaged.*local\(\) again"):
            LocalSession(damaged, decoder, session.model)
    with pytest.raises(LocalDecodeError, match="not a model onnxruntime can load"):
        LocalSession(embedding, decoder[: len(decoder) // 2], session.model)
    other = session.model.model_copy(update={"name": "small"})
    with pytest.raises(LocalDecodeError, match="'tiny''s, the decoder 'small''s"):
        LocalSession(embedding, decoder, other)
