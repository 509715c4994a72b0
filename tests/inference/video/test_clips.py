"""Clips are bounded by what they decode to, not by what their header says (issue 34):

- an MPEG-TS (or any container but MP4 and WebM) is refused before a frame is decoded;
- a clip whose header says 64x64 but whose frames decode bigger (the TS bypass, remuxed into an
  MP4) is refused at the first such frame;
- `start` far into a clip seeks to the keyframe before it: a long clip with keyframes costs the
  frames after that keyframe, and one with no keyframe after its first is refused past
  `SAM2_VIDEO_MAX_DECODED_FRAMES`, not decoded to the end;
- decoding stops at the request's deadline, when its client goes, and past its CPU seconds,
  and waits while a click runs.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from fastapi.testclient import TestClient
from sam2_contract.wire import DEADLINE_HEADER, NAMESPACE_HEADER
from sam2_inference import InferenceSettings, Sam2Engine, create_app
from sam2_inference.scheduling.lock import Work, WorkStopped
from sam2_inference.video.clips import Cut, VideoLimits, decode_clip
from sam2_inference.video.service import VideoService
from support import bypass_ts, encoded, fresh_engine, remuxed

ALICE = {NAMESPACE_HEADER: "alice"}
LIMITS = VideoLimits(
    max_frames=20,
    max_frame_pixels=64 * 64,
    max_decoded_frames=60,
    decode_cpu_s=60,
    max_objects=2,
    sessions_per_tenant=2,
    idle_s=60,
    lifetime_s=600,
)


@pytest.fixture
def client(
    settings: InferenceSettings, loaded_engine: Sam2Engine, video_model: Any, tmp_path: Path
) -> Iterator[TestClient]:
    clip_settings = settings.model_copy(
        update={
            "video_dir": tmp_path / "videos",
            "video_max_frames": LIMITS.max_frames,
            "video_max_frame_pixels": LIMITS.max_frame_pixels,
            "video_max_decoded_frames": LIMITS.max_decoded_frames,
        }
    )
    videos = VideoService(clip_settings, predictor=video_model)
    app = create_app(clip_settings, engine=fresh_engine(loaded_engine), videos=videos)
    with TestClient(app) as test_client:
        yield test_client


def _post(client: TestClient, clip: bytes, name: str = "c.mp4", **fields: Any) -> Any:
    headers = ALICE | fields.pop("headers", {})
    return client.post(
        "/v1/videos",
        files={"video": (name, clip)},
        data={key: str(value) for key, value in fields.items()},
        headers=headers,
    )


def test_the_ts_bypass_is_refused_as_a_ts_and_as_an_mp4(client: TestClient) -> None:
    ts = _post(client, bypass_ts(), "s.ts", start=0.1)
    assert (ts.status_code, ts.json()["code"]) == (422, "invalid_video")
    assert "mpegts" in ts.json()["detail"]
    assert "MP4 or WebM" in ts.json()["detail"]

    mp4 = remuxed(bypass_ts(), "mp4")
    with av.open(io.BytesIO(mp4)) as opened:  # what a header-only check would have seen
        assert (opened.streams.video[0].width, opened.streams.video[0].height) == (64, 64)
    hidden = _post(client, mp4, start=0.1)
    assert (hidden.status_code, hidden.json()["code"]) == (422, "video_too_large")
    assert "decodes to 640x640" in hidden.json()["detail"]
    both_small = encoded("mpegts", 64, 64, 3) + encoded("mpegts", 64, 64, 3)
    small = _post(client, remuxed(both_small, "mp4"))  # remuxing itself is not what is refused
    assert (small.status_code, small.json()["num_frames"]) == (200, 6)


def test_a_far_start_seeks_and_a_clip_that_cannot_seek_there_is_refused(
    client: TestClient,
) -> None:
    """400 frames (40 s). With a keyframe every 12 frames, start=39.0 decodes about a dozen
    frames and keeps the last ten; with one keyframe, reaching 39.0 s would take 390 decoded
    frames, over the 60 allowed: refused, saying why and what to do."""
    seekable = _post(client, encoded("mp4", 64, 48, 400, gop=12), start=39.0)
    assert seekable.status_code == 200, seekable.text
    assert seekable.json()["num_frames"] == 10
    one_keyframe = _post(client, encoded("mp4", 64, 48, 400, gop=None), start=39.0)
    assert (one_keyframe.status_code, one_keyframe.json()["code"]) == (422, "video_too_large")
    assert "60 decoded frames" in one_keyframe.json()["detail"]
    assert "keyframe" in one_keyframe.json()["detail"]


def test_decoding_stops_at_the_deadline(client: TestClient) -> None:
    late = _post(client, encoded("mp4", 64, 48, 40), headers={DEADLINE_HEADER: "0"})
    assert late.status_code in (503, 504)
    assert late.json()["code"] == "inference_timeout"


def test_decoding_stops_when_its_client_goes_past_its_cpu_and_waits_for_clicks() -> None:
    clip = encoded("mp4", 64, 48, 40)
    gone = Work()
    gone.cancelled.set()
    with pytest.raises(WorkStopped, match="went away"):
        decode_clip(clip, Cut(), LIMITS, gone)

    no_cpu = VideoLimits(**{**_fields(LIMITS), "decode_cpu_s": 1e-9})
    with pytest.raises(Exception, match="of CPU") as refused:
        decode_clip(clip, Cut(), no_cpu)
    assert getattr(refused.value, "code", None) == "video_too_large"

    paused: list[int] = []
    frames, _ = decode_clip(clip, Cut(duration=1.0), LIMITS, pause=lambda: paused.append(1))
    assert len(frames) == 10
    assert len(paused) >= len(frames)  # before every frame decoded


def test_a_decoding_clip_waits_while_a_click_holds_the_model(loaded_engine: Sam2Engine) -> None:
    """`let_clicks_pass` (what an upload passes as `pause`) returns only once no click waits
    for or runs on the model."""
    engine = fresh_engine(loaded_engine)
    lock = engine._lock  # the model's lock: a click holding it, as a running click does
    passed = threading.Event()
    with lock.hold(interactive=True):
        waiter = threading.Thread(target=lambda: (engine.let_clicks_pass(), passed.set()))
        waiter.start()
        assert not passed.wait(0.3)  # held back while the click runs
    assert passed.wait(5)
    waiter.join()


def _fields(limits: VideoLimits) -> dict[str, Any]:
    return {name: getattr(limits, name) for name in VideoLimits.__slots__}
