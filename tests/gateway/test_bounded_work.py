"""Bounded work through the gateway: a client that goes away stops its work at inference, and
the model time that work used is metered like a finished request's."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import pytest
from sam2_gateway import KeyStore
from support import PEPPER, RunningServer, bearer, image_b64, running_gateway

LONG_AUTO = {
    "mode": "auto",
    "points_per_side": 8,
    "points_per_batch": 4,
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.0,
    "mask_format": "rle",
}


def _wait_for(condition: object, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)


def test_a_client_that_goes_away_stops_its_work_and_what_it_used_is_metered(
    tmp_path: Path, inference_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    database = f"sqlite:///{tmp_path / 'keys.db'}"
    with running_gateway(database, inference_server.url) as gateway:
        body = {"image": image_b64("portrait")} | LONG_AUTO
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{gateway.url}/v1/segment", json=body, headers=bearer(gateway.key), timeout=1.5
            )
        _wait_for(lambda: "cancelled by the gateway" in caplog.text)
        assert "cancelled by the gateway" in caplog.text  # inference stopped the work
        store = KeyStore(database, PEPPER)
        try:
            _wait_for(lambda: store.usage())  # the meter writes every second
            [usage] = store.usage()
        finally:
            store.dispose()
        assert (usage.requests, usage.masks) == (1, 0)
        assert usage.gpu_ms > 0  # the encoder pass and any decoder batches it ran
        click = {"image": image_b64("portrait"), "point_coords": [[9, 9]], "mask_format": "rle"}
        answer = httpx.post(
            f"{gateway.url}/v1/segment", json=click, headers=bearer(gateway.key), timeout=60
        )
        assert answer.status_code == 200
