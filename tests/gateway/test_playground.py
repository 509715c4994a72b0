"""The web playground in a real browser (Debian's Chromium via playwright-core) against the
real local stack in development mode: upload, click, overlay drawn, timings shown, a second
click reuses the embedding, automatic mode; screenshots land in test-artifacts/playground/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image
from pydantic import SecretStr
from sam2.sam2_video_predictor import SAM2VideoPredictor
from sam2_contract import decode_mask
from sam2_gateway import GatewaySettings, KeyStore, create_app
from sam2_gateway.main import PLAYGROUND
from sam2_inference import InferenceSettings, Sam2Engine
from sam2_inference import create_app as create_inference_app
from sam2_inference.serving import BackgroundServer
from sam2_inference.video_routes import VideoService
from support import PEPPER, RunningServer, encode, free_port, fresh_engine, scene

ROOT = Path(__file__).parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "playground"


@contextmanager
def _dev_gateway(tmp_path: Path, inference_url: str, signing_key: str) -> Iterator[str]:
    """The gateway as the local stack runs it: development mode, a dev key, the built page."""
    database = f"sqlite:///{tmp_path / 'gw.db'}"
    store = KeyStore(database, PEPPER)
    store.migrate()
    scopes = frozenset({"segment", "auto", "video"})
    _, record = store.create("development", scopes, rate_tier="dev")
    settings = GatewaySettings(
        environment="development",
        database_url=database,
        key_pepper=SecretStr(PEPPER),
        jwt_private_key=SecretStr(signing_key),
        inference_url=inference_url,
        dev_token_key_id=record.key_id,
    )
    port = free_port()
    server = BackgroundServer(create_app(settings), "127.0.0.1", port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
    store.dispose()


@pytest.fixture
def dev_stack(tmp_path: Path, inference_server: RunningServer, signing_key: str) -> Iterator[str]:
    with _dev_gateway(tmp_path, inference_server.url, signing_key) as url:
        yield url


def _browser() -> None:
    assert (PLAYGROUND / "index.html").is_file(), (
        "build it: (cd sdk-js && npm run build:playground)"
    )
    if not (shutil.which("chromium") or Path("/usr/bin/chromium").exists()):
        # As for PostgreSQL and Redis: CI must have it; a fresh machine is told how to get it.
        if os.environ.get("CI"):
            pytest.fail("no Chromium: .ci/run installs it through scripts/test-services")
        pytest.skip('no Chromium for the browser test; run: eval "$(scripts/test-services)"')


def test_playground_in_chromium(dev_stack: str, tmp_path: Path) -> None:
    _browser()
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(scene(300, 400, seed=21)))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            "node",
            str(ROOT / "sdk-js" / "playground" / "e2e.mjs"),
            dev_stack,
            str(photo),
            str(ARTIFACTS),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "ms total" in report["first"]
    assert report["maskPixels"] > 0
    assert "embedding cached" in report["second"]
    # the second click corrects the first click's mask (refine), not starting over
    assert report["refine"] == [None, report["maskIds"][0]]
    # the image goes up once, as a file (multipart), and the second click names it by id
    assert report["multipart"] == [True, False]
    assert report["maskIds"][0].startswith("msk_")
    # the downloads: the shown mask as polygons, and the API's rendered overlay
    polygons = json.loads((ARTIFACTS / report["polygons"]).read_text())
    assert len(polygons["masks"]) == 1
    assert polygons["masks"][0]["size"] == [300, 400]
    assert decode_mask(polygons["masks"][0]).any()
    with Image.open(ARTIFACTS / report["overlay"]) as overlay:
        assert (overlay.format, overlay.size) == ("PNG", (400, 300))
    assert "masks" in report["auto"]
    assert report["alerts"] == 0
    assert {p.name for p in ARTIFACTS.glob("*.png")} >= {
        "1-first-click.png",
        "2-second-click.png",
        "3-auto.png",
    }


def test_dev_tokens_only_in_development(make_client: object, gateway: object) -> None:
    from fastapi.testclient import TestClient

    assert isinstance(gateway, TestClient)
    response = gateway.post("/v1/auth/dev-token")
    assert (response.status_code, response.json()["code"]) == (404, "not_found")


@pytest.mark.slow
def test_playground_video_view_in_chromium(
    tmp_path: Path,
    settings: InferenceSettings,
    loaded_engine: Sam2Engine,
    video_model: SAM2VideoPredictor,
    signing_key: str,
) -> None:
    """Load frames, click an object on the first, propagate with the progress bar, scrub to the
    last frame with its mask drawn, export every frame's masks as COCO RLE JSON."""
    _browser()
    frames = []
    for index in range(2):
        frames.append(tmp_path / f"{index:05d}.jpg")
        frames[-1].write_bytes(encode(scene(120, 160, seed=70 + index), "JPEG", quality=92))
    video_settings = settings.model_copy(update={"video_dir": tmp_path / "clips"})
    videos = VideoService(video_settings, predictor=video_model)
    app = create_inference_app(video_settings, engine=fresh_engine(loaded_engine), videos=videos)
    inference = BackgroundServer(app, "127.0.0.1", free_port())
    inference.start()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        with _dev_gateway(tmp_path, f"http://127.0.0.1:{inference.port}", signing_key) as url:
            done = subprocess.run(
                [
                    "node",
                    str(ROOT / "sdk-js" / "playground" / "e2e-video.mjs"),
                    url,
                    str(ARTIFACTS),
                    *map(str, frames),
                ],
                capture_output=True,
                text=True,
                timeout=600,
            )
    finally:
        inference.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "objects 1" in report["clicked"]
    assert report["firstPixels"] > 0  # object 1's mask drawn over the first frame
    assert report["progress"] == [2, 2]
    assert "frame 2 / 2" in report["last"]
    assert report["lastPixels"] > 0  # and tracked onto the last one
    coco = json.loads((ARTIFACTS / report["export"]).read_text())
    assert [image["frame_index"] for image in coco["images"]] == [0, 1]
    assert {a["track_id"] for a in coco["annotations"]} == {1}
    assert all(decode_mask(a["segmentation"]).shape == (120, 160) for a in coco["annotations"])
    assert report["alerts"] == 0
