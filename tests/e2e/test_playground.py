"""The web playground in a real browser (Debian's Chromium via playwright-core) against the
real local stack in development mode, on a desktop and a 390 px touch phone, light and dark:
every flow a user meets (upload, clicks, taps, long press, box drag, automatic mode with its
knobs, cancel, exports, errors in words), axe-core's accessibility scan, and screenshots, which
land in test-artifacts/playground/ with the report the assertions read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from PIL import Image
from pydantic import SecretStr
from sam2.sam2_video_predictor import SAM2VideoPredictor
from sam2_contract import decode_mask
from sam2_gateway import GatewaySettings, KeyStore, create_app
from sam2_gateway.main import PLAYGROUND
from sam2_inference import InferenceSettings, Sam2Engine
from sam2_inference import create_app as create_inference_app
from sam2_inference.api.serving import BackgroundServer
from sam2_inference.video.service import VideoService
from support import PEPPER, RunningServer, encode, free_port, fresh_engine, scene

ROOT = Path(__file__).parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "playground"


@contextmanager
def _dev_gateway(
    tmp_path: Path, inference_url: str, signing_key: str, **overrides: object
) -> Iterator[str]:
    """The gateway as the local stack runs it: development mode, a dev key, the built page."""
    database = f"sqlite:///{tmp_path / f'gw-{free_port()}.db'}"
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
        **overrides,
    )
    port = free_port()
    server = BackgroundServer(create_app(settings), "127.0.0.1", port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
    store.dispose()


# The page's limit flow uploads a picture over this many pixels; its other pictures are under.
MAX_PIXELS = 200_000


@pytest.fixture
def dev_stack(tmp_path: Path, inference_server: RunningServer, signing_key: str) -> Iterator[str]:
    with _dev_gateway(tmp_path, inference_server.url, signing_key, max_pixels=MAX_PIXELS) as url:
        yield url


@pytest.fixture
def down_stack(tmp_path: Path, signing_key: str) -> Iterator[str]:
    """A gateway whose inference service is not running (nothing listens on its port)."""
    with _dev_gateway(tmp_path, f"http://127.0.0.1:{free_port()}", signing_key) as url:
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


def test_playground_in_chromium(dev_stack: str, down_stack: str, tmp_path: Path) -> None:
    """What a user sees, on a desktop (light and dark) and a 390 px touch phone: every flow of
    the page against the real local stack, axe-core's accessibility scan, and screenshots."""
    _browser()
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(scene(300, 400, seed=21)))
    too_large = tmp_path / "poster.png"
    too_large.write_bytes(encode(scene(500, 600, seed=22)))
    assert 300 * 400 < MAX_PIXELS < 500 * 600
    report = _browser_report(
        "e2e.mjs", ARTIFACTS, dev_stack, down_stack, str(photo), str(too_large)
    )
    _assert_badge_and_errors(report)
    _assert_prompts(report)
    _assert_downloads(report)
    _assert_auto(report)
    _assert_layout_and_access(report)


def _browser_report(script: str, artifacts: Path, *args: str) -> dict[str, Any]:
    """Run one of the playground's browser scripts (its arguments, then the artifacts folder);
    the JSON report it prints last, also kept beside its screenshots."""
    artifacts.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["node", str(ROOT / "sdk-js" / "playground" / script), *args, str(artifacts)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    (artifacts / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _assert_badge_and_errors(report: dict[str, object]) -> None:
    # The badge names the model, the device and that the weights are random.
    assert "hiera-tiny" in str(report["badge"])
    assert "cpu" in str(report["badge"])
    assert "random weights" in str(report["badge"])
    assert "embedding computed" in str(report["badgeAfter"])
    assert "three candidate masks" in str(report["masksHelp"])  # what mask 1/2/3 are
    assert "predicted IoU" in str(report["masksHelp"])
    assert cast(int, report["desktopKeyBadges"]) > 0
    # Failures in words, each saying what to do; a corrupt file is never sent.
    assert "not an image this browser can open" in str(report["corrupt"])
    assert report["corruptRequests"] == 0
    assert "API key or token was not accepted" in str(report["badKey"])
    assert "development token" in str(report["devToken"])
    assert "Too large for this service" in str(report["limit"])
    assert str(MAX_PIXELS) in str(report["limit"]).replace(",", "").replace("_", "")
    assert "model service is unavailable" in str(report["outage"])
    for said in ("corrupt", "badKey", "limit", "outage"):
        assert "Traceback" not in str(report[said])


def _assert_prompts(report: dict[str, object]) -> None:
    assert "ms total" in str(report["first"])
    assert cast(int, report["maskPixels"]) > 0
    assert cast(int, report["foregroundPixels"]) > 0  # the marker is drawn, not 5 px lost
    assert "embedding cached" in str(report["second"])
    # the second click corrects the first click's mask (refine), not starting over
    refine, first_mask = cast(list[str], report["refine"])
    assert first_mask.startswith("msk_")
    assert refine == first_mask
    assert cast(int, report["backgroundPixels"]) > 0
    # The box is drawn while dragging, before anything is sent, and asked for on release.
    assert cast(int, report["dragPixels"]) > 0
    assert report["sentWhileDragging"] == 2
    box = cast(list[int], report["boxSent"])
    assert 60 <= box[2] - box[0] <= 260
    assert 60 <= box[3] - box[1] <= 200
    assert report["boxAnswered"] is True
    # Keyboard only: the picture is in the Tab order, its cursor drawn, a point and a box placed
    # with the keys (the 400x300 picture: the cursor starts at 200,150; an arrow moves it 2% of
    # the shorter side, 6 px, Shift+arrow 30 px), the box drawn before it is asked for.
    assert report["stageTabIndex"] == "0"
    assert cast(int, report["cursorPixels"]) > 0
    assert report["keyboardPoint"] == [[[218, 162]], [1]]
    assert cast(int, report["keyboardDraftPixels"]) > 0
    assert report["sentAfterKeyboardBox"] == cast(int, report["sentWhileKeyboardBox"]) + 1
    assert report["keyboardBox"] == [188, 132, 218, 162]
    # Several objects: N keeps the shown mask and starts the next object; the next click is sent
    # alone (its own point, no box, no refine); the kept one can be removed.
    assert report["keptListed"] == 1
    assert "Object 1 kept" in str(report["keptNotice"])
    after = cast(dict[str, object], report["nextObjectSent"])
    ((x, y),) = cast(list[list[int]], after["point_coords"])
    assert abs(x - 320) <= 2
    assert abs(y - 240) <= 2
    assert after["point_labels"] == [1]
    assert "box_coords" not in after
    assert "refine" not in after
    assert report["keyboardCursorAfterClick"] == 0  # a click shows no keyboard cursor
    assert report["keptAfterRemove"] == 0
    # The image goes up once, as a file (multipart); every later prompt names it by id.
    assert cast(list[bool], report["multipart"])[:3] == [True, False, False]
    assert not any(cast(list[bool], report["multipart"])[1:])
    # On the phone: a tap is foreground, a long press and the Background tool are background
    # (the first tap went up with the image, so its label shows in the prompts after it).
    assert cast(list[object], report["phoneLabels"])[1:] == [[1, 0], [1, 0, 0]]
    # A tap shows no keyboard cursor or keyboard hint, and a touch screen no key badges.
    assert report["phoneCursorPixels"] == 0
    assert "Arrows move the cursor" not in str(report["phoneHint"])
    assert (report["phoneKeyBadges"], report["phoneKeyRows"]) == (0, 0)


def _assert_downloads(report: dict[str, object]) -> None:
    names = cast(dict[str, str], report["downloads"])
    with Image.open(ARTIFACTS / names["png"]) as png:
        assert (png.format, png.size) == ("PNG", (400, 300))
        mask = np.asarray(png.convert("L")) > 127
    # COCO: the shown mask as one annotation, with its bbox and area, the same as the PNG.
    coco = json.loads((ARTIFACTS / names["coco"]).read_text())
    assert len(coco["annotations"]) == 1
    (only,) = coco["annotations"]
    assert np.array_equal(decode_mask(only["segmentation"]), mask)
    assert only["area"] == int(mask.sum())
    ys, xs = np.nonzero(mask)
    assert only["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    # Two objects (one kept, one being made): one annotation each, different masks.
    objects = json.loads((ARTIFACTS / names["objectsCoco"]).read_text())["annotations"]
    assert [a["id"] for a in objects] == [1, 2]
    kept, current = (decode_mask(a["segmentation"]) for a in objects)
    assert kept.any()
    assert current.any()
    assert not np.array_equal(kept, current)
    polygons = json.loads((ARTIFACTS / names["polygons"]).read_text())
    assert len(polygons["masks"]) == 1
    assert polygons["masks"][0]["size"] == [300, 400]
    assert decode_mask(polygons["masks"][0]).any()
    with Image.open(ARTIFACTS / names["overlay"]) as overlay:
        assert (overlay.format, overlay.size) == ("PNG", (400, 300))


def _assert_auto(report: dict[str, object]) -> None:
    # Cancel shows how long it ran and keeps the last answer; a click stops it and is answered.
    assert "everything…" in str(report["elapsed"])
    assert " s" in str(report["elapsed"])
    assert str(report["cancelled"]).startswith("Cancelled after")
    assert "score" in str(report["afterCancel"])
    assert "stopped so that this prompt is answered now" in str(report["clickNotice"])
    assert report["clickAnswered"] == ["click"]
    # Random weights: nothing passes the default thresholds, and the page says why.
    empty = str(report["empty"])
    assert "No mask survived the thresholds" in empty
    assert "4\u00d74 = 16" in empty
    assert "random weights" in empty
    sent = cast(dict[str, object], report["autoSent"])
    assert (sent["points_per_side"], sent["pred_iou_thresh"]) == (4, 0)
    masks = cast(int, report["autoMasks"])
    assert masks > 0
    coco = json.loads(
        (ARTIFACTS / cast(dict[str, str], report["downloads"])["autoCoco"]).read_text()
    )
    assert len(coco["annotations"]) == masks  # one annotation per object
    assert all(a["area"] == decode_mask(a["segmentation"]).sum() for a in coco["annotations"])


def _assert_layout_and_access(report: dict[str, object]) -> None:
    # The stage stays put as answers, warnings and errors come and go.
    stage = cast(list[list[int]], report["stage"])
    assert stage[0] == stage[1] == stage[2]
    assert len(set(cast(list[int], report["phoneStageY"]))) == 1  # on the phone too
    assert report["phoneOverflow"] == 0  # nothing wider than the phone
    assert cast(list[int], report["phoneStage"])[0] <= 390
    assert report["darkBackground"] != "rgb(246, 247, 249)"
    for scan in ("axeEmpty", "axeResults", "axeDark", "axePhone"):
        assert report[scan] == [], scan
    assert {p.name for p in ARTIFACTS.glob("*.png")} >= {
        "1-desktop-empty.png",
        "2-desktop-click.png",
        "3-desktop-box-drag.png",
        "4-desktop-auto-running.png",
        "5-desktop-auto.png",
        "6-desktop-dark.png",
        "9-phone.png",
        "10-phone-dark.png",
    }


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
    assert "Track objects through a clip" in report["intro"]
    assert "frame 1 / 12" in report["sample"]  # the sample clip, made in the page, loads
    assert "objects 1" in report["clicked"]
    assert report["firstPixels"] > 0  # object 1's mask drawn over the first frame
    assert report["progress"] == [2, 2]
    assert "frame 2 / 2" in report["last"]
    assert report["lastPixels"] > 0  # and tracked onto the last one
    coco = json.loads((ARTIFACTS / report["export"]).read_text())
    assert [image["frame_index"] for image in coco["images"]] == [0, 1]
    assert {a["track_id"] for a in coco["annotations"]} == {1}
    assert all(decode_mask(a["segmentation"]).shape == (120, 160) for a in coco["annotations"])
    assert all(a["bbox"][2] > 0 for a in coco["annotations"])
    assert report["alerts"] == 0
    assert report["axe"] == []  # no serious or critical accessibility violation


def test_playground_decodes_clicks_in_the_browser(dev_stack: str, tmp_path: Path) -> None:
    """Issue 29 in Chromium against the real stack: "this browser" is the default; the page
    shows the downloads' progress, then decodes each click with onnxruntime-web's WASM, sending
    no /v1/segment request, painting a mask and saying where and how fast; the server's
    answers to the same clicks paint the same masks; a decoder that cannot be fetched is said,
    and the server answers instead. Screenshots in test-artifacts/playground-local/."""
    _browser()
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(scene(300, 400, seed=21)))
    artifacts = ROOT / "test-artifacts" / "playground-local"
    report = _browser_report("e2e-local.mjs", artifacts, dev_stack, str(photo))
    assert "This browser" in report["choice"]
    assert "Server" in report["choice"]
    assert report["choicePressed"] == "true"
    assert report["isolated"] is True  # COOP/COEP: onnxruntime-web may use WASM threads
    # The downloads were shown as they came, then the decoder was ready.
    assert any("downloading the embedding N%" in s for s in report["decoderStates"])
    assert any("downloading the decoder N%" in s for s in report["decoderStates"])
    assert "Clicks are decoded in this browser (wasm)" in report["ready"]
    start = report["startCalls"]
    assert start[:1] == ["/v1/models"] or "/v1/segment" in start
    assert any(path.endswith("/embedding") for path in start)
    assert "/v1/models/tiny/decoder.onnx" in start
    # Every click: answered here, nothing sent, a mask painted, its time said.
    assert report["callsDuringClicks"] == []
    for click in report["clicks"]:
        assert click["where"].startswith("Decoded in this browser (wasm) in ")
        assert sum(click["painted"]) > 0
    # Polygons of a locally refined mask: the chain asked of the server, a file with a mask.
    polygons = json.loads(Path(report["polygons"]).read_text())
    assert len(polygons["masks"]) == 1
    assert polygons["masks"][0]["polygons"]
    assert set(report["polygonCalls"]) == {"/v1/segment"}
    # The server's answers to the same clicks paint the same masks (pixel counts within 2%).
    assert "decoded on the server" in report["serverChoice"]
    for local, server in zip(report["clicks"], report["server"], strict=True):
        assert server["where"].startswith("Answered by the server in ")
        assert abs(sum(local["painted"]) - sum(server["painted"])) <= 0.02 * sum(server["painted"])
    # The fallback, with its reason; the click still answered.
    assert "Server fallback: the local decoder failed" in report["fallback"]
    assert report["fallbackClick"]["where"].startswith("Answered by the server in ")
    for name in ("2-local-click", "3-local-refined", "4-server-click", "5-local-fallback"):
        assert (artifacts / f"{name}.png").stat().st_size > 10_000
