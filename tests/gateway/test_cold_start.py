"""A cold start is a wait, not an error: through the stand-in for Modal's proxy with no live
replica (it answers 503 at once and starts one, live 20 s later), the first click from the
Python SDK and the first from the TypeScript SDK succeed with their default settings, and a
replica being scaled down still answers what it has while a click arriving then waits for the
next start. /readyz says "starting" at once, without waiting."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sam2_inference import InferenceSettings, Sam2Engine
from sam2_sdk import Sam2Client
from scale_out import cluster
from support import encode, scene

START_S = 20.0  # a GPU container's start (restore, move to the GPU, warm-up), simulated
DIST = Path(__file__).parents[2] / "sdk-js" / "dist" / "index.js"
NODE_CLICK = """
import { readFileSync } from "node:fs";
import { Sam2Client } from "%s";
const [baseUrl, apiKey, photo] = process.argv.slice(2);
const client = new Sam2Client({ apiKey, baseUrl });
const image = new Uint8Array(readFileSync(photo));
const click = await client.segment(image, { points: [[40, 30]], labels: [1] });
console.log(JSON.stringify({ width: click.width, height: click.height, score: click.score }));
"""


@pytest.mark.slow
def test_cold_starts_are_waited_out_and_a_scale_down_is_answered(
    loaded_engine: Sam2Engine, settings: InferenceSettings, tmp_path: Path
) -> None:
    if not DIST.exists():
        pytest.fail("sdk-js is not built: cd sdk-js && npm ci && npm run build (scripts/test does)")
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(scene(96, 128, seed=31)))
    with cluster(
        loaded_engine, settings, sticky=True, replicas=0, start_s=START_S, scopes="segment auto"
    ) as running:
        proxy = running.proxy
        # /readyz answers at once that inference is starting (and, as on Modal, asking starts it).
        asked = time.monotonic()
        ready = httpx.get(f"{running.gateway_url}/readyz", timeout=30)
        assert time.monotonic() - asked < 5
        assert (ready.status_code, ready.json()["code"]) == (503, "inference_starting")
        assert ready.headers["retry-after"] == "60"  # the gateway's start estimate
        assert len(proxy.cold_starts) == 1

        # The first click (Python SDK, defaults) waits for the start and succeeds.
        with Sam2Client(base_url=running.gateway_url, api_key=running.key) as client:
            first = client.segment(photo.read_bytes(), points=[[40, 30]])
            assert first.mask.shape == (96, 128)
            waited = [f.status for f in proxy.log]
            assert waited[-1] == 200
            assert proxy.no_replica_answers >= 3  # the gateway asked again while it started
            assert len(proxy.cold_starts) == 1  # one start, however often it asked

            # A replica scaled down while it answers an automatic-mode job: the job's answer
            # still comes; a click arriving meanwhile finds no live replica and waits for the
            # next start (TypeScript SDK, defaults).
            auto: dict[str, Any] = {}
            job = threading.Thread(
                target=lambda: auto.update(
                    answer=client.segment_auto(
                        photo.read_bytes(),
                        points_per_side=6,
                        pred_iou_thresh=0,
                        stability_score_thresh=0,
                    )
                )
            )
            job.start()
            time.sleep(1.0)  # the job holds its replica
            [replica] = proxy.replicas
            stopping = proxy.scale_down(replica, running.replicas[0].stop)
            script = tmp_path / "click.mjs"
            script.write_text(NODE_CLICK % DIST.as_uri())
            clicked = subprocess.run(
                ["node", str(script), running.gateway_url, running.key, str(photo)],
                capture_output=True,
                text=True,
                timeout=300,
            )
            job.join(timeout=120)
            stopping.join(timeout=30)
        assert clicked.returncode == 0, clicked.stderr[-2000:]
        assert json.loads(clicked.stdout.strip().splitlines()[-1])["width"] == 128
        assert auto["answer"].masks, "the draining replica finished its job"
        assert len(proxy.cold_starts) == 2
