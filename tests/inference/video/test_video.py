"""Video sessions give exactly what SAM2VideoPredictor gives when called directly on the same
frames (a folder of the same JPEG files), prompt for prompt and frame for frame.

A random checkpoint predicts "no object" on every frame (logits -1024), which would make any
two answers equal: the checkpoint here has the object-score head's output bias raised to +20,
so masks are non-empty and the comparison means something (asserted below)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sam2.sam2_video_predictor import SAM2VideoPredictor
from sam2_inference.video.tracker import (
    FrameMasks,
    VideoSession,
    decode_frames,
    video_context,
)
from support import encode, scene

FRAMES = [encode(scene(72, 96, seed=40 + k), "JPEG", quality=92) for k in range(4)]
MASK = np.zeros((72, 96), dtype=bool)
MASK[40:64, 50:90] = True


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clip as sam2's demo takes it: 00000.jpg, 00001.jpg, ..."""
    path = tmp_path_factory.mktemp("frames")
    for index, data in enumerate(FRAMES):
        (path / f"{index:05d}.jpg").write_bytes(data)
    return path


def _theirs(frame: int, ids: Any, logits: torch.Tensor) -> FrameMasks:
    masks = (logits > 0.0).cpu().numpy()
    return FrameMasks(frame, {int(i): masks[k, 0] for k, i in enumerate(ids)})


def _same(ours: FrameMasks, theirs: FrameMasks) -> None:
    assert ours.frame_index == theirs.frame_index
    assert ours.masks.keys() == theirs.masks.keys()
    for object_id, mask in theirs.masks.items():
        assert np.array_equal(ours.masks[object_id], mask), (ours.frame_index, object_id)


def test_a_session_answers_as_sam2s_video_predictor(
    video_model: SAM2VideoPredictor, folder: Path
) -> None:
    session = VideoSession(video_model, decode_frames(FRAMES))
    cpu = torch.device("cpu")
    with video_context(cpu):
        state = video_model.init_state(str(folder))
    assert torch.equal(session.state["images"], state["images"])  # the same model input

    def direct(call: Any, **kwargs: Any) -> FrameMasks:
        with video_context(cpu):
            return _theirs(*call(state, **kwargs))

    _same(
        session.add_prompt(0, 1, points=[[40, 30]], labels=[1]),
        direct(
            video_model.add_new_points_or_box,
            frame_idx=0,
            obj_id=1,
            points=np.array([[40, 30]], dtype=np.float32),
            labels=np.array([1], np.int32),
        ),
    )
    _same(
        session.add_prompt(1, 2, box=[10, 10, 60, 50]),
        direct(
            video_model.add_new_points_or_box,
            frame_idx=1,
            obj_id=2,
            box=np.array([10, 10, 60, 50], dtype=np.float32),
        ),
    )
    _same(
        session.add_mask(2, 3, MASK),
        direct(video_model.add_new_mask, frame_idx=2, obj_id=3, mask=MASK),
    )

    def tracked(passes: list[tuple[int, bool]]) -> Iterator[FrameMasks]:
        for start, reverse in passes:
            with video_context(cpu):
                answers = list(
                    video_model.propagate_in_video(state, start_frame_idx=start, reverse=reverse)
                )
            yield from (_theirs(*answer) for answer in answers)

    assert session.prompted_frames == [0, 1, 2]
    ours = list(session.propagate(direction="both"))  # forward from 0, backward from 2
    theirs = list(tracked([(0, False), (2, True)]))
    assert [f.frame_index for f in ours] == [0, 1, 2, 3, 2, 1, 0]
    # The frames the backward pass tracks again are not final the first time: once each.
    assert [f.final for f in ours] == [False, False, False, True, True, True, True]
    assert sorted(f.frame_index for f in ours if f.final) == [0, 1, 2, 3]
    assert len(ours) == len(theirs)
    for mine, expected in zip(ours, theirs, strict=True):
        _same(mine, expected)
    assert sum(int(m.sum()) for f in ours for m in f.masks.values()) > 0  # not all empty
    window = session.propagate(direction="both", start_frame_index=1, max_frames=1)
    assert [(f.frame_index, f.final) for f in window] == [
        (1, False),
        (2, True),
        (1, True),
        (0, True),
    ]
    from_zero = session.propagate(direction="both", start_frame_index=0, max_frames=1)
    assert [(f.frame_index, f.final) for f in from_zero] == [(0, True), (1, True)]  # no way back

    session.remove_object(2)
    with video_context(cpu):
        video_model.remove_object(state, 2, need_output=False)
    assert session.object_ids == [1, 3]
    for mine, expected in zip(session.propagate(), tracked([(0, False)]), strict=True):
        _same(mine, expected)


@pytest.mark.slow
def test_offloading_to_host_memory_keeps_the_masks(video_model: SAM2VideoPredictor) -> None:
    """`SAM2_VIDEO_OFFLOAD=both` (sam2's offload_video_to_cpu and offload_state_to_cpu) keeps
    the frames and the object memories in host memory: on a GPU that is the memory it saves
    (bench/video.py --offload, measured only where a GPU is lent); the masks are the same."""
    plain = VideoSession(video_model, decode_frames(FRAMES))
    offloaded = VideoSession(video_model, decode_frames(FRAMES), offload="both")
    assert offloaded.state["offload_video_to_cpu"]
    assert offloaded.state["offload_state_to_cpu"]
    assert offloaded.state["images"].device.type == "cpu"
    for session in (plain, offloaded):
        session.add_prompt(0, 1, points=[[40, 30]], labels=[1])
    ours = list(offloaded.propagate(direction="forward"))
    for mine, expected in zip(ours, plain.propagate(direction="forward"), strict=True):
        _same(mine, expected)
    assert sum(int(m.sum()) for f in ours for m in f.masks.values()) > 0
