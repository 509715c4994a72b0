"""The TypeScript SDK's local decoder (@sam2/sdk/local, onnxruntime-web's WASM in Node) against
the real gateway: the server's masks for 32 random prompts on each image, within issue 29's
bounds per dtype, with no request while clicking; a damaged embedding is a LocalDecodeError."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sam2_sdk import Sam2Client
from support import (
    IMAGES,
    GatewayServer,
    answer_prompts,
    encode,
    mask_iou,
    random_prompts,
    run_node_against,
)

SDK_JS = Path(__file__).parents[2] / "sdk-js"
BOUNDS = {"float32": (0.999, 0.999), "float16": (0.99, 0.97), "int8": (0.99, 0.97)}


def _node(gateway: GatewayServer, tmp_path: Path, image: str, dtype: str) -> dict[str, Any]:
    assert (SDK_JS / "dist" / "local" / "index.js").exists(), (
        "build it first: (cd sdk-js && npm ci && npm run build)"
    )
    assert (SDK_JS / "node_modules" / "onnxruntime-web").exists(), "cd sdk-js && npm ci"
    height, width = IMAGES[image].shape[:2]
    photo, prompts = tmp_path / f"{image}.png", tmp_path / f"{image}.json"
    photo.write_bytes(encode(IMAGES[image]))
    prompts.write_text(json.dumps(random_prompts(11, width, height)))
    script = SDK_JS / "test" / "local.mjs"
    return json.loads(run_node_against(gateway, script, str(photo), str(prompts), dtype))  # type: ignore[no-any-return]


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_node_decodes_the_servers_masks(
    gateway_server: GatewayServer, tmp_path: Path, dtype: str
) -> None:
    mean_bound, worst_bound = BOUNDS[dtype]
    ious = []
    with Sam2Client(api_key=gateway_server.key, base_url=gateway_server.url) as client:
        for image in ("landscape", "portrait"):
            js = _node(gateway_server, tmp_path, image, dtype)
            height, width = IMAGES[image].shape[:2]
            served = answer_prompts(
                lambda **p: client.segment(IMAGES[image], **p),  # noqa: B023
                random_prompts(11, width, height),
            )
            assert js["shape"] == [height, width] == js["againShape"]
            assert js["backend"] == "wasm"
            for ours, theirs in zip(js["answers"], served, strict=True):
                mask = np.frombuffer(ours["mask"].encode(), np.uint8).reshape(height, width)
                ious.append(mask_iou(mask == ord("1"), theirs.mask))
                assert ours["warnings"] == ["decoded locally"]
                if dtype == "float32":
                    assert abs(ours["score"] - theirs.score) < 1e-4
                    assert np.abs(np.subtract(ours["allScores"], theirs.all_scores)).max() < 1e-4
            # Clicking sent nothing; starting sent a click (the upload), the embedding and
            # the decoder; a second session on the same client revalidated the decoder (304).
            assert js["requestsDuringClicks"] == 0
            assert js["firstSession"][0] == "/v1/segment"
            assert js["firstSession"][1].endswith("/embedding")
            assert js["firstSession"][2] == "/v1/models/tiny/decoder.onnx"
            assert js["decoderAgain"] == 1
            assert js["progress"]["embedding"]["loaded"] == js["progress"]["embedding"]["total"]
            assert js["progress"]["decoder"]["loaded"] > 1 << 20
            for error in js["errors"]:
                assert error["name"] == "LocalDecodeError"
                assert "damaged" in error["message"]
    assert len(ious) == 64
    assert np.mean(ious) >= mean_bound
    assert np.percentile(ious, 1) >= worst_bound
    if dtype == "float32":
        assert min(ious) >= 0.999
