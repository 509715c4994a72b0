"""`sam2 segment-dir` (issue 30) as a user runs it, in a subprocess against the real gateway
and inference: a folder (with a subfolder and a corrupt file) becomes one COCO file whose
masks are the automatic-mode answers of the same images alone; an interrupted run started
again makes no job twice; and mistakes say what to do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sam2_sdk import Sam2Client
from support import IMAGES, GatewayServer, RunningServer, encode, running_gateway

# Random weights score low: the thresholds at 0 keep their masks, so there is something to check.
KEEP_ALL = '{"pred_iou_thresh": 0, "stability_score_thresh": 0}'
AUTO = ["--auto", "--points-per-side", "2", "--request", KEEP_ALL]


def _folder(root: Path, prefix: str = "") -> Path:
    """Four images (two in a subfolder), a corrupt one and a text file; `prefix` names the
    files apart from another test's (a job is made once per key, request and files)."""
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    (images / f"{prefix}a.png").write_bytes(encode(IMAGES["landscape"]))
    (images / f"{prefix}b.jpg").write_bytes(encode(IMAGES["portrait"], "JPEG", quality=95))
    (images / "sub" / f"{prefix}c.png").write_bytes(encode(IMAGES["portrait"]))
    webp = encode(IMAGES["landscape"], "WEBP", lossless=True)
    (images / "sub" / f"{prefix}d.webp").write_bytes(webp)
    (images / f"{prefix}broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    (images / "notes.txt").write_text("not an image: skipped")
    return images


def _sam2(gateway: GatewayServer, *args: str | Path) -> subprocess.Popen[str]:
    env = os.environ | {"SAM2_API_KEY": gateway.key, "SAM2_BASE_URL": gateway.url}
    command = [sys.executable, "-m", "sam2_sdk._cli", *map(str, args)]
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=600)
    return process.returncode, stderr


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools
def test_a_folder_becomes_one_coco_file(gateway_server: GatewayServer, tmp_path: Path) -> None:
    coco_api = pytest.importorskip("pycocotools.coco")
    images = _folder(tmp_path)
    out = tmp_path / "annotations.json"
    args = ["segment-dir", images, *AUTO, "--out", out, "--chunk-items", "2", "--poll", "0.2"]
    code, stderr = _finish(_sam2(gateway_server, *args))
    assert code == 2, stderr  # written, with a failure
    assert "4 images segmented, 1 failed (3 jobs)" in stderr
    assert "broken.png: " in stderr
    coco = coco_api.COCO(str(out))
    names = {image["file_name"]: image["id"] for image in coco.dataset["images"]}
    assert sorted(names) == ["a.png", "b.jpg", "sub/c.png", "sub/d.webp"]
    [failed] = coco.dataset["info"]["sam2_failed"]
    assert failed["name"] == "broken.png"
    assert failed["code"]
    assert not Path(f"{out}.state.json").exists()  # a finished run leaves no state behind
    with Sam2Client(api_key=gateway_server.key, base_url=gateway_server.url) as client:
        for name, image_id in names.items():
            alone = client.segment_auto(
                (images / name).read_bytes(),
                points_per_side=2,
                pred_iou_thresh=0,
                stability_score_thresh=0,
            )
            masks = [coco.annToMask(a).astype(bool) for a in coco.imgToAnns[image_id]]
            assert len(masks) == len(alone.masks) > 0
            for mask, expected in zip(masks, alone.masks, strict=True):
                assert np.array_equal(mask, expected.mask)
    assert len({a["id"] for a in coco.dataset["annotations"]}) == len(coco.dataset["annotations"])


def test_an_interrupted_run_resumes_its_jobs(gateway_server: GatewayServer, tmp_path: Path) -> None:
    images = _folder(tmp_path, "resumed-")
    (images / "resumed-broken.png").unlink()
    out = tmp_path / "annotations.json"
    state = Path(f"{out}.state.json")
    args = ["segment-dir", images, *AUTO, "--out", out, "--chunk-items", "1", "--poll", "0.2"]
    with Sam2Client(api_key=gateway_server.key, base_url=gateway_server.url) as client:
        before = {job.job_id for job in client.jobs.list()}
        first = _sam2(gateway_server, *args, "--quiet")
        deadline = time.monotonic() + 120
        while not state.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        first.send_signal(signal.SIGINT)
        code, stderr = _finish(first)
        assert code == 130, stderr
        assert "run the same command again to resume" in stderr
        assert not out.exists()
        made = len(json.loads(state.read_text())["jobs"])
        assert made >= 1
        code, stderr = _finish(_sam2(gateway_server, *args))
        assert code == 0, stderr
        assert f"resuming: {made} jobs already made" in stderr
        after = {job.job_id for job in client.jobs.list()} - before
    assert len(after) == 4  # one job per image, none made twice
    assert len(json.loads(out.read_text())["images"]) == 4


def test_mistakes_say_what_to_do(gateway_server: GatewayServer, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out.json"
    cases = [
        (["segment-dir", empty, "--auto", "--out", out], "no images under"),
        (["segment-dir", tmp_path / "nowhere", "--auto", "--out", out], "is not a folder"),
        (["segment-dir", empty, "--request", "{oops", "--out", out], "--request is not JSON"),
        (["segment-dir", empty, "--out", out], "say what to segment"),
        (["segment-dir", empty, "--auto", "--out", tmp_path / "no" / "x.json"], "cannot write"),
    ]
    for args, message in cases:
        code, stderr = _finish(_sam2(gateway_server, *args))
        assert (code, message in stderr) == (1, True), stderr
        assert "Traceback" not in stderr
    images = _folder(tmp_path)
    env_without_key = os.environ | {"SAM2_BASE_URL": gateway_server.url}
    env_without_key.pop("SAM2_API_KEY", None)
    command = [sys.executable, "-m", "sam2_sdk._cli", "segment-dir", str(images), "--auto"]
    done = subprocess.run(
        [*command, "--out", str(out)], env=env_without_key, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "no API key" in done.stderr
    wrong = _sam2(gateway_server, "segment-dir", images, "--auto", "--out", out, "--api-key", "x")
    code, stderr = _finish(wrong)
    assert code == 1
    assert "401" in stderr
    assert "hint:" in stderr


def test_chunks_the_service_refuses_are_sent_in_halves(
    inference_server: RunningServer, tmp_path: Path
) -> None:
    """A gateway that takes 2 items and 300 kB a job: the CLI's chunk of 5 goes in halves
    until each fits, and a file too large alone is one failure, not a stopped run."""
    images = _folder(tmp_path, "split-")
    (images / "split-broken.png").unlink()
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    (images / "split-huge.png").write_bytes(encode(noise))
    assert (images / "split-huge.png").stat().st_size > 300_000
    out = tmp_path / "annotations.json"
    database = f"sqlite:///{tmp_path / 'gw.db'}"
    limits = {"job_max_items": 2, "job_max_upload_bytes": 300_000}
    with running_gateway(database, inference_server.url, **limits) as gateway:
        args = ["segment-dir", images, *AUTO, "--out", out, "--chunk-items", "5", "--poll", "0.2"]
        code, stderr = _finish(_sam2(gateway, *args))
    assert code == 2, stderr
    assert "4 images segmented, 1 failed (2 jobs)" in stderr
    assert "split-huge.png: " in stderr
    written = json.loads(out.read_text())
    assert sorted(image["file_name"] for image in written["images"]) == [
        "split-a.png",
        "split-b.jpg",
        "sub/split-c.png",
        "sub/split-d.webp",
    ]
    [failed] = written["info"]["sam2_failed"]
    assert failed["code"] == "body_too_large"
