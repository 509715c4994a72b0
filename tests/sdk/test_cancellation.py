"""Cancelling a call in either SDK reaches the server: the connection closes, the gateway sees
its client go away and asks inference to stop the request's work."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from sam2_sdk import AsyncSam2Client
from support import IMAGES, GatewayServer, encode, run_node_against

SDK_JS = Path(__file__).parents[2] / "sdk-js"
LONG_AUTO = {
    "points_per_side": 8,
    "points_per_batch": 4,
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.0,
}


def _stopped_at_inference(caplog: pytest.LogCaptureFixture, already: int) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if caplog.text.count("cancelled by the gateway") > already:
            return True
        time.sleep(0.05)
    return False


def test_cancelling_an_async_python_call_stops_its_work(
    gateway_server: GatewayServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    already = caplog.text.count("cancelled by the gateway")
    image = IMAGES["portrait"][:, ::-1].copy()  # an image no other test has cached

    async def call() -> None:
        async with AsyncSam2Client(api_key=gateway_server.key, base_url=gateway_server.url) as c:
            await asyncio.wait_for(c.segment_auto(image, **LONG_AUTO), timeout=1.0)

    with pytest.raises(TimeoutError):
        asyncio.run(call())
    assert _stopped_at_inference(caplog, already)


def test_aborting_a_typescript_call_stops_its_work(
    gateway_server: GatewayServer, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO)
    already = caplog.text.count("cancelled by the gateway")
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(IMAGES["landscape"][::-1].copy()))
    outcome = run_node_against(gateway_server, SDK_JS / "test" / "abort.mjs", str(photo))
    assert outcome.strip() == "APIUserAbortError"
    assert _stopped_at_inference(caplog, already)
