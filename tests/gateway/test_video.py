"""The video API through the gateway: scope `video`, sessions that stay with their key, the
propagation stream passed on line by line, problems passed on with their codes, metering
(frames x objects, GPU time). In front of a real inference service holding the video model."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sam2.sam2_video_predictor import SAM2VideoPredictor
from sam2_gateway.core.store import KeyStore
from sam2_inference import InferenceSettings, Sam2Engine, create_app
from sam2_inference.api.serving import BackgroundServer
from sam2_inference.video.service import VideoService
from support import bearer, encode, free_port, fresh_engine, scene

MakeClient = Callable[..., TestClient]
FRAMES = [encode(scene(72, 96, seed=80 + k), "JPEG", quality=90) for k in range(2)]


@pytest.fixture
def video_inference(
    settings: InferenceSettings,
    loaded_engine: Sam2Engine,
    video_model: SAM2VideoPredictor,
    tmp_path: Path,
) -> Iterator[str]:
    video_settings = settings.model_copy(update={"video_dir": tmp_path / "videos"})
    videos = VideoService(video_settings, predictor=video_model)
    app = create_app(video_settings, engine=fresh_engine(loaded_engine), videos=videos)
    port = free_port()
    server = BackgroundServer(app, "127.0.0.1", port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def gateway_to_video(make_client: MakeClient, video_inference: str) -> TestClient:
    return make_client(inference_url=video_inference, max_body_bytes=1 << 20)


def _files() -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("frames", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(FRAMES)]


@pytest.mark.slow
def test_a_session_through_the_gateway_tracks_streams_and_is_metered(
    gateway_to_video: TestClient, new_key: Callable[..., str], store: KeyStore
) -> None:
    client = gateway_to_video
    key, other = new_key("video"), new_key("video")
    headers = bearer(key)
    no_scope = client.post("/v1/videos", files=_files(), headers=bearer(new_key("segment")))
    assert (no_scope.status_code, no_scope.json()["code"]) == (403, "insufficient_scope")

    video = client.post("/v1/videos", files=_files(), headers=headers)
    assert video.status_code == 200, video.text
    assert video.json()["num_frames"] == 2
    video_id = video.json()["video_id"]
    assert client.get(f"/v1/videos/{video_id}", headers=headers).json() == video.json()
    shown = client.get(f"/v1/videos/{video_id}/frames/1", headers=headers)
    assert (shown.content, shown.headers["content-type"]) == (FRAMES[1], "image/jpeg")
    past = client.get(f"/v1/videos/{video_id}/frames/2", headers=headers)
    assert (past.status_code, past.json()["code"]) == (422, "invalid_parameter")
    assert client.get(f"/v1/videos/{video_id}/frames/0", headers=bearer(other)).status_code == 404
    session = client.post(f"/v1/videos/{video_id}/sessions", headers=headers).json()
    sid = session["session_id"]
    assert session["object_ids"] == []

    theirs = client.get(f"/v1/sessions/{sid}", headers=bearer(other))
    assert (theirs.status_code, theirs.json()["code"]) == (404, "session_not_found")
    bogus = client.get("/v1/sessions/ses_nothing", headers=headers)
    assert (bogus.status_code, bogus.json()["code"]) == (404, "session_not_found")
    bad = client.post(f"/v1/sessions/{sid}/prompts", json={"frame_index": 0}, headers=headers)
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")

    click = {"frame_index": 0, "object_id": 7, "point_coords": [[40, 30]]}
    frame = client.post(f"/v1/sessions/{sid}/prompts", json=click, headers=headers).json()
    assert [o["object_id"] for o in frame["objects"]] == [7]
    assert frame["objects"][0]["visible"] is True
    stream = client.post(f"/v1/sessions/{sid}/propagate", json={}, headers=headers)
    assert stream.headers["content-type"].startswith("application/x-ndjson")
    *lines, summary = [json.loads(line) for line in stream.text.splitlines()]
    # forward from the prompted frame; backward from frame 0 has nothing to track (as in sam2)
    assert [line["frame_index"] for line in lines] == [0, 1]
    assert summary["done"] is True
    assert summary["frames"] == 2
    assert summary["object_ids"] == [7]

    assert client.delete(f"/v1/sessions/{sid}", headers=headers).status_code == 204
    gone = client.get(f"/v1/sessions/{sid}", headers=headers).json()
    assert gone["code"] == "session_not_found"
    client.portal.call(client.app.state.gateway.meter.flush)  # type: ignore[attr-defined]
    [row] = store.usage(key.split("_")[1])
    assert row.images == 1  # the clip
    assert row.masks == 1 + 2  # the prompt's object, then one object on each of 2 frames
    assert row.gpu_ms >= summary["model_ms"] > 0


def test_video_uploads_are_bounded_and_problems_pass_through(
    make_client: MakeClient, video_inference: str, new_key: Callable[..., str]
) -> None:
    client = make_client(inference_url=video_inference, video_max_bytes=16 * 1024)
    headers = bearer(new_key("video"))
    json_body = client.post("/v1/videos", json={"frames": []}, headers=headers)
    assert (json_body.status_code, json_body.json()["code"]) == (415, "unsupported_media_type")
    odd = [("frames", ("a.gif", encode(scene(20, 20), "GIF"), "image/gif"))]
    refused = client.post("/v1/videos", files=odd, headers=headers)
    assert (refused.status_code, refused.json()["code"]) == (422, "invalid_video")
    assert "JPEG or PNG" in refused.json()["detail"]
    missing = client.post(f"/v1/videos/vid_{'0' * 32}/sessions", headers=headers).json()
    assert missing["code"] == "video_not_found"
    free = bearer(new_key("video", tier="free"))  # a free key holds one session at a time
    video_id = client.post("/v1/videos", files=_files(), headers=free).json()["video_id"]
    assert client.post(f"/v1/videos/{video_id}/sessions", headers=free).status_code == 200
    second = client.post(f"/v1/videos/{video_id}/sessions", headers=free)
    assert (second.status_code, second.json()["code"]) == (429, "too_many_sessions")
    big = [("frames", (f"{i}.jpg", FRAMES[0], "image/jpeg")) for i in range(8)]
    too_big = client.post("/v1/videos", files=big, headers=headers)
    assert (too_big.status_code, too_big.json()["code"]) == (413, "body_too_large")


@pytest.mark.slow
def test_a_key_holds_the_sessions_usage_says_and_every_video_call_is_rate_limited(
    make_client: MakeClient, video_inference: str, new_key: Callable[..., str]
) -> None:
    """A dev key is told `video_sessions: 4` and holds four (inference's own cap, 2, is only
    for calls that name no tier); the fifth is 429. Reading a clip, a frame or a session
    counts against the key's rate like any call, and says so in its RateLimit headers."""
    client = make_client(inference_url=video_inference, rate_tiers={"dev": "60/minute"})
    headers = bearer(new_key("video", tier="dev"))
    allowed = client.get("/v1/usage", headers=headers).json()["limits"]["video_sessions"]
    assert allowed == 4
    video_id = client.post("/v1/videos", files=_files(), headers=headers).json()["video_id"]
    sessions = [client.post(f"/v1/videos/{video_id}/sessions", headers=headers) for _ in range(4)]
    assert [answer.status_code for answer in sessions] == [200] * allowed
    over = client.post(f"/v1/videos/{video_id}/sessions", headers=headers)
    assert (over.status_code, over.json()["code"]) == (429, "too_many_sessions")

    session_id = sessions[0].json()["session_id"]
    reads = [
        f"/v1/videos/{video_id}",
        f"/v1/videos/{video_id}/frames/0",
        f"/v1/sessions/{session_id}",
    ]
    remaining = []
    for path in reads:
        answer = client.get(path, headers=headers)
        assert answer.status_code == 200, path
        assert answer.headers["ratelimit-limit"] == "60", path
        remaining.append(int(answer.headers["ratelimit-remaining"]))
    assert remaining == sorted(remaining, reverse=True)
    assert len(set(remaining)) == 3
