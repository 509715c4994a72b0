"""The TypeScript SDK (built) against the real local gateway: the same masks as the Python SDK
and the inference service (a click and a refining click), and no image bytes on a repeat."""

from __future__ import annotations

import json
from pathlib import Path

from sam2_contract.overlay import decode_overlay
from sam2_sdk import Sam2Client
from support import IMAGES, GatewayServer, encode, run_node_against

SDK_JS = Path(__file__).parents[2] / "sdk-js"


def test_typescript_sdk_gives_the_python_sdks_masks(
    gateway_server: GatewayServer, tmp_path: Path
) -> None:
    assert (SDK_JS / "dist" / "index.js").exists(), (
        "build it first: (cd sdk-js && npm ci && npm run build)"
    )
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(IMAGES["landscape"]))
    js = json.loads(run_node_against(gateway_server, SDK_JS / "test" / "contract.mjs", str(photo)))
    with Sam2Client(api_key=gateway_server.key, base_url=gateway_server.url) as client:
        python = client.segment(photo, points=[[100, 50]], labels=[1])
        refined = client.segment(
            photo, points=[[100, 50], [30, 30]], labels=[1, 0], refine=python.mask_id
        )
        objects = client.segment(
            photo, objects=[{"points": [[100, 50]]}, {"box": [10, 10, 90, 90]}]
        )
    assert (js["height"], js["width"]) == python.image_shape
    assert js["mask"] == "".join("1" if v else "0" for v in python.mask.ravel())
    assert js["refined"] == "".join("1" if v else "0" for v in refined.mask.ravel())
    assert js["maskIds"][0] != js["maskIds"][1]
    assert js["objects"] == ["".join("1" if v else "0" for v in m.ravel()) for m in objects.masks]
    assert len(set(js["objectMaskIds"])) == 2
    assert decode_overlay(js["overlay"]).shape == (*python.image_shape, 3)
    assert js["cached"][1] is True
    assert js["sent"][0] > photo.stat().st_size
    assert js["sent"][1] < 400  # the image_id and the prompt, no image bytes
    usage = js["usage"]  # read after its three calls, by the same key as Python's below
    assert usage["total"]["requests"] >= 3
    with Sam2Client(api_key=gateway_server.key, base_url=gateway_server.url) as client:
        assert usage["limits"] == client.usage(days=1).limits.model_dump()
