"""The Python SDK's video sessions over the cloud path, simulated: two inference replicas behind
the stand-in for Modal's proxy (sticky by `Modal-Session-ID`), sharing the clip store as they
would share a Modal Volume, the real gateway in front. The replica holding a session stops
mid-session: the next call lands on the other one, which does not know the session; the SDK
creates a new session there, sends the prompts again and answers as if nothing had happened
(the same masks as a session given the same prompts from the start), and warns that propagation
must run again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from sam2.sam2_video_predictor import SAM2VideoPredictor
from sam2_inference import InferenceSettings, Sam2Engine
from sam2_inference.video.service import VideoService
from sam2_sdk import (
    AsyncSam2Client,
    Sam2Client,
    SessionNotFoundError,
    SessionRecreatedWarning,
    TrackedFrame,
)
from scale_out import cluster
from support import encode, scene

FRAMES = [encode(scene(72, 96, seed=90 + k), "JPEG", quality=90) for k in range(2)]


def _same(a: TrackedFrame, b: TrackedFrame) -> None:
    assert a.frame_index == b.frame_index
    assert a.objects.keys() == b.objects.keys()
    for object_id, tracked in a.objects.items():
        assert np.array_equal(tracked.mask, b.objects[object_id].mask)


@pytest.mark.slow
def test_a_session_survives_its_replica_stopping_by_replaying_its_prompts(
    loaded_engine: Sam2Engine,
    settings: InferenceSettings,
    video_model: SAM2VideoPredictor,
    tmp_path: Path,
) -> None:
    shared = settings.model_copy(update={"video_dir": tmp_path / "volume"})
    with (
        cluster(
            loaded_engine,
            settings,
            sticky=True,
            replicas=2,
            videos=lambda: VideoService(shared, predictor=video_model),
            scopes="video",
        ) as running,
        Sam2Client(base_url=running.gateway_url, api_key=running.key) as client,
    ):
        video = client.videos.upload(frames=FRAMES)
        assert video.num_frames == 2
        assert client.videos.frame(video.video_id, 1) == FRAMES[1]  # stored as uploaded
        session = client.videos.session(video)
        first = session.add_points(0, 1, [[40, 30]])
        assert first.objects[1].visible
        tracked = list(session.propagate("forward"))
        assert [f.frame_index for f in tracked] == [0, 1]
        assert session.summary is not None
        assert session.summary.frames == 2
        home = running.proxy.log[-1].replica  # the replica that holds the session
        ports = [f"http://127.0.0.1:{server.port}" for server in running.replicas]
        running.replicas[ports.index(home)].stop()

        lost = session.session_id
        with pytest.warns(SessionRecreatedWarning, match="propagate again"):
            second = session.add_box(1, 2, [10, 10, 60, 50])
        assert session.recreated == 1
        assert session.session_id != lost
        assert session.refresh().object_ids == [1, 2]  # the replayed prompt and the new one
        again = list(session.propagate("forward"))

        fresh = client.videos.session(video)  # the same prompts from the start
        fresh.add_points(0, 1, [[40, 30]])
        _same(second, fresh.add_box(1, 2, [10, 10, 60, 50]))
        for mine, expected in zip(again, fresh.propagate("forward"), strict=True):
            _same(mine, expected)
        session.delete()
        with pytest.raises(SessionNotFoundError):
            client.request("GET", f"/v1/sessions/{session.session_id}")


@pytest.mark.slow
def test_the_async_client_tracks_and_streams_too(
    loaded_engine: Sam2Engine,
    settings: InferenceSettings,
    video_model: SAM2VideoPredictor,
    tmp_path: Path,
) -> None:
    shared = settings.model_copy(update={"video_dir": tmp_path / "volume"})
    with cluster(
        loaded_engine,
        settings,
        sticky=True,
        replicas=1,
        videos=lambda: VideoService(shared, predictor=video_model),
        scopes="video",
    ) as running:

        async def run() -> list[list[tuple[int, bool]]]:
            async with AsyncSam2Client(base_url=running.gateway_url, api_key=running.key) as client:
                video = await client.videos.upload(frames=FRAMES)
                session = await client.videos.session(video.video_id)
                await session.add_mask(1, 4, np.ones((72, 96), bool))
                runs = [
                    [(f.frame_index, f.final) async for f in session.propagate(**options)]
                    for options in ({"direction": "forward"}, {}, {"final_only": True})
                ]
                await session.delete()
                return runs

        forward, both, once = asyncio.run(run())
        assert forward == [(1, True)]
        # Both ways from frame 1: frame 1 comes again from the backward pass, which is kept.
        assert both == [(1, False), (1, True), (0, True)]
        assert once == [(1, True), (0, True)]
