"""The inference service's video routes: clips in, sessions, prompts and the NDJSON propagation
stream, answering exactly what SAM2VideoPredictor answers on the same frames; sessions that
expire, stay with their key, are capped, and refuse changes while they propagate.

The clock of session expiry is a test double (its boundary); the model is the real one (the
tiny test checkpoint with the object-score bias raised, so masks are not empty)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from sam2.sam2_video_predictor import SAM2VideoPredictor
from sam2_contract import decode_mask
from sam2_contract.errors import NotFoundError
from sam2_contract.masks import encode_png, encode_rle
from sam2_contract.wire import NAMESPACE_HEADER
from sam2_inference import InferenceSettings, Sam2Engine, create_app
from sam2_inference.api.serving import BackgroundServer
from sam2_inference.video.service import VideoService
from sam2_inference.video.store import VideoStore
from sam2_inference.video.tracker import video_context
from support import encode, free_port, fresh_engine, scene

FRAMES = [encode(scene(72, 96, seed=60 + k), "JPEG", quality=92) for k in range(3)]
MASK = np.zeros((72, 96), dtype=bool)
MASK[30:60, 20:70] = True
ALICE = {NAMESPACE_HEADER: "alice"}
BOB = {NAMESPACE_HEADER: "bob"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def video_settings(settings: InferenceSettings, tmp_path: Path) -> InferenceSettings:
    return settings.model_copy(
        update={
            "video_dir": tmp_path / "videos",
            "video_max_frames": 6,
            "video_max_objects": 2,
            "video_sessions_per_tenant": 2,
            "video_session_idle_s": 60.0,
            "video_session_lifetime_s": 600.0,
        }
    )


@pytest.fixture
def app_parts(
    video_settings: InferenceSettings,
    loaded_engine: Sam2Engine,
    video_model: SAM2VideoPredictor,
    clock: Clock,
) -> tuple[Any, VideoService]:
    videos = VideoService(video_settings, predictor=video_model, clock=clock)
    return create_app(video_settings, engine=fresh_engine(loaded_engine), videos=videos), videos


@pytest.fixture
def client(app_parts: tuple[Any, VideoService]) -> Iterator[TestClient]:
    with TestClient(app_parts[0]) as test_client:
        yield test_client


def _upload(client: Any, files: list[bytes], headers: dict[str, str] = ALICE, **fields: Any) -> Any:
    parts = [("frames", (f"{i:05d}.jpg", data, "image/jpeg")) for i, data in enumerate(files)]
    return client.post(
        "/v1/videos", files=parts, data={k: str(v) for k, v in fields.items()}, headers=headers
    )


def _session(client: Any, headers: dict[str, str] = ALICE) -> dict[str, Any]:
    video = _upload(client, FRAMES, headers).json()
    response = client.post(f"/v1/videos/{video['video_id']}/sessions", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _masks(frame: dict[str, Any]) -> dict[int, np.ndarray]:
    return {o["object_id"]: decode_mask(o["mask"]) for o in frame["objects"]}


def _theirs(answer: tuple[int, Any, torch.Tensor]) -> tuple[int, dict[int, np.ndarray]]:
    frame, ids, logits = answer
    masks = (logits > 0.0).cpu().numpy()
    return frame, {int(i): masks[k, 0] for k, i in enumerate(ids)}


def _same(ours: dict[str, Any], theirs: tuple[int, dict[int, np.ndarray]]) -> None:
    assert ours["frame_index"] == theirs[0]
    mine = _masks(ours)
    assert mine.keys() == theirs[1].keys()
    for object_id, mask in theirs[1].items():
        assert np.array_equal(mine[object_id], mask), (theirs[0], object_id)
    for tracked in ours["objects"]:
        assert tracked["area"] == int(mine[tracked["object_id"]].sum())
        assert tracked["visible"] == bool(tracked["area"])


@pytest.mark.slow
def test_prompts_and_propagation_answer_what_sam2s_video_predictor_answers(
    client: TestClient, video_model: SAM2VideoPredictor, tmp_path: Path
) -> None:
    session = _session(client)
    sid = session["session_id"]
    assert session["num_frames"] == 3
    for index, data in enumerate(FRAMES):
        (tmp_path / f"{index:05d}.jpg").write_bytes(data)
    cpu = torch.device("cpu")
    with video_context(cpu):
        state = video_model.init_state(str(tmp_path))

    def direct(call: Any, **kwargs: Any) -> tuple[int, dict[int, np.ndarray]]:
        with video_context(cpu):
            return _theirs(call(state, **kwargs))

    def prompt(**body: Any) -> dict[str, Any]:
        response = client.post(f"/v1/sessions/{sid}/prompts", json=body, headers=ALICE)
        assert response.status_code == 200, response.text
        return dict(response.json())

    _same(
        prompt(frame_index=0, object_id=1, point_coords=[[40, 30]], point_labels=[1]),
        direct(
            video_model.add_new_points_or_box,
            frame_idx=0,
            obj_id=1,
            points=np.array([[40, 30]], np.float32),
            labels=np.array([1], np.int32),
        ),
    )
    _same(
        prompt(frame_index=1, object_id=2, box_coords=[10, 10, 60, 50], mask_format="png"),
        direct(
            video_model.add_new_points_or_box,
            frame_idx=1,
            obj_id=2,
            box=np.array([10, 10, 60, 50], np.float32),
        ),
    )
    rle = encode_rle(MASK).model_dump()
    _same(
        prompt(frame_index=2, object_id=2, mask=rle),
        direct(video_model.add_new_mask, frame_idx=2, obj_id=2, mask=MASK),
    )
    response = client.post(f"/v1/sessions/{sid}/propagate", json={}, headers=ALICE)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    with video_context(cpu):  # both ways: forward from the first prompted frame, then back
        theirs = [_theirs(a) for a in video_model.propagate_in_video(state, start_frame_idx=0)]
        theirs += [
            _theirs(a)
            for a in video_model.propagate_in_video(state, start_frame_idx=2, reverse=True)
        ]
    *frames, summary = lines
    assert [f["frame_index"] for f in frames] == [0, 1, 2, 2, 1, 0]
    assert [f["final"] for f in frames] == [False, False, False, True, True, True]
    for mine, expected in zip(frames, theirs, strict=True):
        _same(mine, expected)
    assert sum(o["area"] for f in frames for o in f["objects"]) > 0  # not all empty
    assert summary["done"] is True
    assert summary["frames"] == 6
    assert summary["object_ids"] == [1, 2]
    assert summary["model_ms"] > 0

    removed = client.delete(f"/v1/sessions/{sid}/objects/2", headers=ALICE)
    assert removed.json()["object_ids"] == [1]
    with video_context(cpu):
        video_model.remove_object(state, 2, need_output=False)
        theirs = [_theirs(a) for a in video_model.propagate_in_video(state, start_frame_idx=0)]
    again = client.post(
        f"/v1/sessions/{sid}/propagate", json={"direction": "forward"}, headers=ALICE
    )
    for mine, expected in zip(again.text.splitlines()[:-1], theirs, strict=True):
        _same(json.loads(mine), expected)


def test_sessions_belong_to_their_key_expire_and_are_capped(
    client: TestClient, clock: Clock
) -> None:
    first = _session(client)["session_id"]
    assert client.get(f"/v1/sessions/{first}", headers=ALICE).status_code == 200
    other = client.get(f"/v1/sessions/{first}", headers=BOB)
    assert (other.status_code, other.json()["code"]) == (404, "session_not_found")
    video_id = _upload(client, FRAMES).json()["video_id"]
    assert client.get(f"/v1/videos/{video_id}", headers=BOB).json()["code"] == "video_not_found"

    clock.now += 59  # used within the idle time: moved on
    info = client.get(f"/v1/sessions/{first}", headers=ALICE).json()
    assert info["propagating"] is False
    second = client.post(f"/v1/videos/{video_id}/sessions", headers=ALICE).json()["session_id"]
    third = client.post(f"/v1/videos/{video_id}/sessions", headers=ALICE)
    assert (third.status_code, third.json()["code"]) == (429, "too_many_sessions")
    assert third.headers["retry-after"]
    assert client.post(f"/v1/videos/{video_id}/sessions", headers=BOB).status_code == 404
    assert client.delete(f"/v1/sessions/{second}", headers=ALICE).status_code == 204
    assert client.get(f"/v1/sessions/{second}", headers=ALICE).status_code == 404

    clock.now += 61  # idle too long
    gone = client.get(f"/v1/sessions/{first}", headers=ALICE).json()
    assert gone["code"] == "session_not_found"
    assert "create a new session" in gone["hint"]


def test_bad_prompts_are_refused_with_their_codes(client: TestClient) -> None:
    sid = _session(client)["session_id"]

    def code(body: dict[str, Any]) -> tuple[int, str]:
        response = client.post(f"/v1/sessions/{sid}/prompts", json=body, headers=ALICE)
        return response.status_code, response.json()["code"]

    rle = encode_rle(MASK).model_dump()
    assert code({"frame_index": 0, "object_id": 1}) == (422, "missing_prompt")
    assert code({"frame_index": 0, "object_id": 1, "box_coords": [1, 1, 5, 5], "mask": rle})[1] == (
        "invalid_request"
    )
    assert code({"frame_index": 3, "object_id": 1, "point_coords": [[1, 1]]}) == (
        422,
        "invalid_parameter",
    )
    small = encode_rle(np.ones((10, 10), bool)).model_dump()
    assert code({"frame_index": 0, "object_id": 1, "mask": small}) == (422, "invalid_parameter")
    # a few bytes claiming ten billion pixels are refused before anything is decoded
    bomb = {"size": [100_000, 100_000], "counts": "0"}
    assert code({"frame_index": 0, "object_id": 1, "mask": bomb}) == (422, "invalid_parameter")
    png = encode_png(np.ones((10, 10), bool))
    assert code({"frame_index": 0, "object_id": 1, "mask": png}) == (422, "invalid_parameter")
    assert code({"frame_index": 0, "object_id": -1, "point_coords": [[1, 1]]})[0] == 422
    assert code({"frame_index": 0, "object_id": 1, "point_coords": [[1, 1]], "x": 1}) == (
        422,
        "unknown_field",
    )
    for object_id in (1, 2):
        ok = {"frame_index": 0, "object_id": object_id, "point_coords": [[10, 10]]}
        assert client.post(f"/v1/sessions/{sid}/prompts", json=ok, headers=ALICE).is_success
    assert code({"frame_index": 0, "object_id": 3, "point_coords": [[1, 1]]}) == (
        422,
        "too_many_objects",
    )
    nothing = client.post(f"/v1/sessions/{sid}/reset", headers=ALICE).json()
    assert nothing["object_ids"] == []
    empty = client.post(f"/v1/sessions/{sid}/propagate", json={}, headers=ALICE)
    assert (empty.status_code, empty.json()["code"]) == (422, "invalid_request")


def _mp4(frames: int, fps: int = 10) -> bytes:
    return _clip(frames, "mp4", "mpeg4", fps)


def _clip(frames: int, container_format: str, codec: str, fps: int = 10) -> bytes:
    out = io.BytesIO()
    with av.open(out, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(scene(48, 64, seed=index), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def test_clips_and_frames_are_checked_cut_and_stored_by_content(client: TestClient) -> None:
    clip = _mp4(10)
    cut = client.post(
        "/v1/videos",
        files={"video": ("clip.mp4", clip, "video/mp4")},
        data={"start": "0.2", "duration": "0.5", "fps": "5"},
        headers=ALICE,
    )
    assert cut.status_code == 200, cut.text
    assert {k: cut.json()[k] for k in ("num_frames", "width", "height", "fps")} == {
        "num_frames": 3,  # 0.2 s, 0.4 s, 0.6 s
        "width": 64,
        "height": 48,
        "fps": 5.0,
    }
    webm = client.post(
        "/v1/videos", files={"video": ("c.webm", _clip(4, "webm", "libvpx"))}, headers=ALICE
    )
    assert (webm.status_code, webm.json()["num_frames"]) == (200, 4)
    short = _mp4(5)
    whole = client.post("/v1/videos", files={"video": ("c.mp4", short)}, headers=ALICE).json()
    assert whole["num_frames"] == 5
    assert whole["fps"] == 10.0
    assert _upload(client, FRAMES).json()["video_id"] == _upload(client, FRAMES).json()["video_id"]

    def refused(**kwargs: Any) -> tuple[int, str]:
        response = client.post("/v1/videos", headers=ALICE, **kwargs)
        return response.status_code, response.json()["code"]

    assert refused(files={"video": ("c.mp4", _mp4(8))}) == (422, "video_too_large")  # over 6
    frames = [("frames", ("f.jpg", data)) for data in FRAMES * 3]
    assert refused(files=frames) == (422, "video_too_large")
    odd = [("frames", ("a.jpg", FRAMES[0])), ("frames", ("b.png", encode(scene(40, 40))))]
    assert refused(files=odd) == (422, "invalid_video")
    gif = [("frames", ("a.gif", encode(scene(72, 96), "GIF")))]
    assert refused(files=gif) == (422, "invalid_video")
    both = [("video", ("c.mp4", clip)), ("frames", ("a.jpg", FRAMES[0]))]
    assert refused(files=both) == (422, "invalid_video")
    assert refused(files={"video": ("c.mp4", b"not a video at all")}) == (422, "invalid_video")
    assert refused(files={"clip": ("c.mp4", clip)}) == (422, "unknown_field")
    assert refused(files={"video": ("c.mp4", clip)}, data={"fps": "0"}) == (
        422,
        "invalid_parameter",
    )
    assert refused(json={"video": "x"}) == (415, "unsupported_media_type")
    late = {"start": "5"}
    assert refused(files={"video": ("c.mp4", clip)}, data=late) == (422, "invalid_video")


@pytest.mark.slow
def test_a_propagation_refuses_changes_and_closing_its_stream_stops_it(
    app_parts: tuple[Any, VideoService],
) -> None:
    app, _ = app_parts
    port = free_port()
    server = BackgroundServer(app, "127.0.0.1", port)
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=ALICE, timeout=120) as http:
            sid = _session(http)["session_id"]
            click = {"frame_index": 0, "object_id": 1, "point_coords": [[40, 30]]}
            assert http.post(f"/v1/sessions/{sid}/prompts", json=click).is_success
            with http.stream("POST", f"/v1/sessions/{sid}/propagate", json={}) as stream:
                lines = stream.iter_lines()
                assert json.loads(next(lines))["frame_index"] == 0
                busy = http.post(f"/v1/sessions/{sid}/prompts", json=click)
                assert (busy.status_code, busy.json()["code"]) == (409, "session_busy")
                assert http.get(f"/v1/sessions/{sid}").json()["propagating"] is True
            # the stream is closed: the propagation stops after the frame in flight
            deadline = time.monotonic() + 60
            while http.get(f"/v1/sessions/{sid}").json()["propagating"]:
                assert time.monotonic() < deadline, "the propagation went on after the close"
                time.sleep(0.2)
            assert http.post(f"/v1/sessions/{sid}/prompts", json=click).is_success
            # An attacker's client: asks for a propagation and hangs up before any answer. The
            # stream never starts; the session must still be freed, not held until it expires.
            request = (
                f"POST /v1/sessions/{sid}/propagate HTTP/1.1\r\nHost: x\r\n"
                f"{NAMESPACE_HEADER}: alice\r\ncontent-type: application/json\r\n"
                "content-length: 2\r\n\r\n{}"
            )
            with socket.create_connection(("127.0.0.1", port)) as raw:
                raw.sendall(request.encode())
            time.sleep(0.5)
            deadline = time.monotonic() + 60
            while http.get(f"/v1/sessions/{sid}").json()["propagating"]:
                assert time.monotonic() < deadline, "a hung-up propagation kept the session"
                time.sleep(0.2)
            assert http.post(f"/v1/sessions/{sid}/prompts", json=click).is_success
    finally:
        server.stop()


def test_a_clip_stored_by_another_container_is_found_after_a_reload(tmp_path: Path) -> None:
    """On Modal the clip store is a Volume: the container that stores a clip commits it, and a
    container that does not see a clip reloads the Volume before calling it missing. Here the
    'Volume' is a folder and the reload copies it into the reader's view."""
    volume, view = tmp_path / "volume", tmp_path / "view"
    commits: list[int] = []
    writer = VideoStore(volume, on_stored=lambda: commits.append(1))
    reader = VideoStore(view, on_missing=lambda: shutil.copytree(volume, view, dirs_exist_ok=True))
    info = writer.put("alice", FRAMES, 12.0)
    assert commits == [1]
    assert writer.put("alice", FRAMES, 12.0) == info  # stored once; nothing to commit again
    assert commits == [1]
    found, files = reader.get("alice", info.video_id)
    assert (found, files) == (info, FRAMES)
    with pytest.raises(NotFoundError):
        reader.get("bob", info.video_id)  # another key's clip stays another key's


class StrictVolume:
    """A stand-in for a Modal Volume's commit and reload (the Modal boundary), as strict as
    Modal: either fails while any file under the mount is open in this process."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.syncs = 0
        self.refused = 0

    def _sync(self) -> None:
        for fd in Path("/proc/self/fd").iterdir():
            with contextlib.suppress(OSError):
                if Path(os.readlink(fd)).is_relative_to(self.root):
                    self.refused += 1
                    raise RuntimeError("there are open files preventing the operation")
        self.syncs += 1

    commit = reload = _sync


def test_clips_are_stored_and_read_at_once_without_a_volume_sync_meeting_an_open_file(
    tmp_path: Path,
) -> None:
    """Two threads store clips (a commit each) while two read frames of a stored clip and two
    look up clips not there yet (a reload each): no call fails, and no commit or reload ever
    ran with a file of the Volume open."""
    root = tmp_path / "clips"
    volume = StrictVolume(root.parent)
    store = VideoStore(root, on_stored=volume.commit, on_missing=volume.reload)
    big = [encode(scene(240, 320, seed=k), "PNG") for k in range(6)]
    known = store.put("alice", big, None)
    failures: list[BaseException] = []
    stop = threading.Event()

    def forever(step: Callable[[int], object]) -> None:
        count = 0
        while not stop.is_set():
            try:
                step(count)
            except NotFoundError:
                pass
            except BaseException as failure:  # what a request would have answered as a 500
                failures.append(failure)
            count += 1

    def store_clips(k: int) -> object:
        return store.put("alice", [*big[:2], encode(scene(240, 320, seed=1000 + k), "PNG")], None)

    steps = [
        store_clips,
        store_clips,
        lambda k: store.frame("alice", known.video_id, k % 6),
        lambda k: store.get("alice", known.video_id),
        lambda k: store.frame("alice", "vid_" + f"{k:032x}", 0),  # missing: a reload
        lambda k: store.frame("alice", "vid_" + f"{k + 7:032x}", 0),
    ]
    threads = [threading.Thread(target=forever, args=(step,)) for step in steps]
    for thread in threads:
        thread.start()
    time.sleep(3.0)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    assert volume.refused == 0
    assert volume.syncs > 20  # commits and reloads really ran alongside the reads
