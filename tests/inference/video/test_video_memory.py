"""Video sessions share one memory budget across every key (issue 34): a session takes its
share (from its frames and objects) before it is made, one that does not fit is `503
video_busy` with Retry-After and nothing allocated, and clicks go on meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from sam2.sam2_video_predictor import SAM2VideoPredictor
from sam2_contract.wire import NAMESPACE_HEADER
from sam2_inference import InferenceSettings, Sam2Engine, create_app
from sam2_inference.video.service import VideoService
from sam2_inference.video.sessions import FEATURE_BYTES, object_frame_bytes, session_bytes
from sam2_inference.video.tracker import VideoSession, decode_frames
from support import encode, fresh_engine, image_b64, post_segment, scene

FRAMES = [encode(scene(72, 96, seed=90 + k), "JPEG", quality=92) for k in range(4)]
KEYS = [{NAMESPACE_HEADER: name} for name in ("alice", "bob", "carol")]
CLICK = {"point_coords": [[30, 30]], "point_labels": [1], "mask_format": "rle"}


def held_bytes(state: Any) -> int:
    """Bytes of every tensor a session's state holds (each storage counted once)."""
    seen: dict[int, int] = {}

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(state)
    return sum(seen.values())


@pytest.mark.slow
def test_the_estimate_bounds_what_a_tracked_session_holds(
    video_model: SAM2VideoPredictor,
) -> None:
    """4 frames, 2 objects tracked both ways through all of them: the tensors sam2's state
    holds are within the estimate, and the estimate is not far above them."""
    session = VideoSession(video_model, decode_frames(FRAMES))
    for object_id, point in ((1, [30, 30]), (2, [70, 50])):
        session.add_prompt(1, object_id, points=[point], labels=[1])
    tracked = list(session.propagate(direction="both"))
    assert {frame.frame_index for frame in tracked} == {0, 1, 2, 3}
    held = held_bytes(session.state)
    estimate = session_bytes(len(FRAMES), 2, video_model.image_size)
    assert held <= estimate
    assert held >= 0.8 * (estimate - FEATURE_BYTES), (held, estimate)


@pytest.fixture
def budget() -> int:
    """Room for two sessions of the 4-frame clip (one object each) and one more object."""
    one = session_bytes(len(FRAMES), 1, 1024)
    making = len(FRAMES) * 96 * 72 * 3
    return 2 * one + object_frame_bytes(1024) * len(FRAMES) + making


@pytest.fixture
def client(
    settings: InferenceSettings,
    loaded_engine: Sam2Engine,
    video_model: SAM2VideoPredictor,
    tmp_path: Path,
    budget: int,
) -> Iterator[TestClient]:
    video_settings = settings.model_copy(
        update={"video_dir": tmp_path / "videos", "video_memory_bytes": budget}
    )
    videos = VideoService(video_settings, predictor=video_model)
    app = create_app(video_settings, engine=fresh_engine(loaded_engine), videos=videos)
    with TestClient(app) as test_client:
        yield test_client


@pytest.mark.slow
def test_three_keys_two_sessions_each_never_pass_the_budget_and_clicks_go_on(
    client: TestClient, budget: int
) -> None:
    videos: VideoService = client.app.state.videos  # type: ignore[attr-defined]
    image = image_b64("landscape")
    outcomes = []
    video_ids = {key[NAMESPACE_HEADER]: _video_of(client, key) for key in KEYS}
    for key in KEYS * 2:  # alice, bob, carol, then each a second one
        video_id = video_ids[key[NAMESPACE_HEADER]]
        made = client.post(f"/v1/videos/{video_id}/sessions", headers=key)
        outcomes.append((made.status_code, made.json().get("code"), made.json()))
        if made.status_code == 503:
            assert made.headers["retry-after"] == "30"
            assert "video memory" in made.json()["hint"]
        held = sum(held_bytes(s.tracker.state) for s in videos.sessions._sessions.values())
        assert videos.sessions.memory.used <= budget
        assert held <= budget  # what the sessions really hold, never past the budget
        click = post_segment(client, {"image": image} | CLICK, headers=key)
        assert click.status_code == 200  # clicks are answered throughout
    assert [(status, code) for status, code, _ in outcomes] == [
        (200, None),
        (200, None),
        (503, "video_busy"),
        (503, "video_busy"),
        (503, "video_busy"),
        (503, "video_busy"),
    ]

    first = outcomes[0][2]["session_id"]
    second = outcomes[1][2]["session_id"]
    one_object = {"frame_index": 0, "object_id": 1, "point_coords": [[30, 30]]}
    assert client.post(f"/v1/sessions/{first}/prompts", json=one_object, headers=KEYS[0]).is_success
    other = one_object | {"object_id": 2}  # the budget's one spare object
    assert client.post(f"/v1/sessions/{first}/prompts", json=other, headers=KEYS[0]).is_success
    third = one_object | {"object_id": 3}
    full = client.post(f"/v1/sessions/{first}/prompts", json=third, headers=KEYS[0])
    assert (full.status_code, full.json()["code"]) == (503, "video_busy")

    assert client.delete(f"/v1/sessions/{second}", headers=KEYS[1]).status_code == 204
    again = client.post(f"/v1/videos/{video_ids['carol']}/sessions", headers=KEYS[2])
    assert again.status_code == 200, again.text  # the memory given back is taken again


def test_a_session_larger_than_the_whole_budget_is_refused_as_too_large(
    client: TestClient, budget: int
) -> None:
    long_clip = [("frames", (f"{i}.jpg", FRAMES[i % 4], "image/jpeg")) for i in range(40)]
    key = KEYS[0]
    video_id = client.post("/v1/videos", files=long_clip, headers=key).json()["video_id"]
    refused = client.post(f"/v1/videos/{video_id}/sessions", headers=key)
    assert (refused.status_code, refused.json()["code"]) == (422, "video_too_large")
    assert "cut the clip shorter" in refused.json()["detail"]


def _video_of(client: TestClient, key: dict[str, str]) -> str:
    files = [("frames", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(FRAMES)]
    video_id: str = client.post("/v1/videos", files=files, headers=key).json()["video_id"]
    return video_id
