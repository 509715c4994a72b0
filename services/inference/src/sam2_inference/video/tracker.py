"""Video tracking with `SAM2VideoPredictor` (issue 14, first slice: the engine, no routes yet).

A clip is a list of frames (JPEG or PNG files, in order) decoded once and kept as uint8; a
session turns them into the model's input exactly as sam2's own frame loader does for a folder
of JPEGs (PIL resize to the model's square, /255, ImageNet mean and std), so a session answers
what `SAM2VideoPredictor.init_state(<folder of the same files>)` would
(tests/inference/video/test_video.py). Prompts and propagation are sam2's own calls; masks come back
as boolean arrays at the clip's size, per object id.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image, UnidentifiedImageError
from sam2.build_sam import build_sam2_video_predictor
from sam2.sam2_video_predictor import SAM2VideoPredictor
from sam2_contract.errors import ErrorCode, InvalidImageError, InvalidRequestError
from sam2_contract.models import ModelName

from sam2_inference.runtime.weights import Checkpoint, config_name

Direction = Literal["forward", "backward", "both"]
VideoOffload = Literal["none", "video", "state", "both"]
Frame = npt.NDArray[np.uint8]
BoolMask = npt.NDArray[np.bool_]
IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)


def load_video_model(
    model: ModelName, checkpoint: Checkpoint, device: torch.device
) -> SAM2VideoPredictor:
    """sam2's video predictor on the same checkpoint as the image model (its own copy of the
    weights: the video model is built with sam2's video-specific settings)."""
    predictor: SAM2VideoPredictor = build_sam2_video_predictor(
        config_name(model),
        str(checkpoint.path),
        device=str(device),
    )
    predictor.memory_attention.register_forward_pre_hook(_memory_in_float32, with_kwargs=True)
    return predictor


def _memory_in_float32(
    module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """sam2 stores the memory features as bfloat16 (it expects bfloat16 autocast, as on CUDA);
    without autocast (the CPU, where bfloat16 is six times slower here) memory attention's
    float32 layers would refuse them, so they are read as float32 there."""
    if torch.is_autocast_enabled(kwargs["curr"][0].device.type):
        return None
    cast = {
        name: value.float()
        for name in ("memory", "memory_pos")
        if isinstance(value := kwargs.get(name), torch.Tensor) and value.dtype != torch.float32
    }
    return (args, kwargs | cast) if cast else None


def decode_frames(files: Sequence[bytes]) -> list[Frame]:
    """Frames from image files (JPEG, PNG, ...), in order, as RGB uint8; all of one size."""
    if not files:
        raise InvalidRequestError("a clip needs at least one frame", code=ErrorCode.INVALID_REQUEST)
    frames = []
    for index, data in enumerate(files):
        try:
            with Image.open(io.BytesIO(data)) as image:
                frames.append(np.asarray(image.convert("RGB")))
        except (UnidentifiedImageError, OSError) as exc:
            raise InvalidImageError(
                f"frame {index} is not a readable image: {exc}", code=ErrorCode.UNSUPPORTED_IMAGE
            ) from None
        if frames[-1].shape != frames[0].shape:
            raise InvalidRequestError(
                f"frame {index} is {frames[-1].shape[1]}x{frames[-1].shape[0]}, frame 0 is "
                f"{frames[0].shape[1]}x{frames[0].shape[0]}: a clip's frames share one size",
                code=ErrorCode.INVALID_REQUEST,
            )
    return frames


def frames_tensor(frames: Sequence[Frame], image_size: int) -> torch.Tensor:
    """The model's input, N x 3 x S x S float32, computed as sam2's JPEG-folder loader does:
    PIL's default resize of the RGB frame, then /255 in float64, stored as float32, then
    normalised in place."""
    images = torch.zeros(len(frames), 3, image_size, image_size, dtype=torch.float32)
    for index, frame in enumerate(frames):
        resized = np.array(Image.fromarray(frame).resize((image_size, image_size))) / 255.0
        images[index] = torch.from_numpy(resized).permute(2, 0, 1)
    images -= torch.tensor(IMG_MEAN, dtype=torch.float32)[:, None, None]
    images /= torch.tensor(IMG_STD, dtype=torch.float32)[:, None, None]
    return images


@contextmanager
def video_context(device: torch.device) -> Iterator[None]:
    """What sam2's video code runs under: no autograd, and on CUDA bfloat16 autocast as in
    sam2's demo (on the CPU, float32: see `_memory_in_float32`)."""
    with (
        torch.inference_mode(),
        torch.autocast(
            device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"
        ),
    ):
        yield


@dataclass(frozen=True)
class FrameMasks:
    """Every object's mask on one frame."""

    frame_index: int
    masks: dict[int, BoolMask]
    final: bool = True  # False: a later pass of the same propagation tracks this frame again


class VideoSession:
    """One interactive tracking session over one clip (sam2's inference state)."""

    def __init__(
        self,
        predictor: SAM2VideoPredictor,
        frames: Sequence[Frame],
        *,
        offload: VideoOffload = "none",
    ) -> None:
        """`offload`: sam2's own `offload_video_to_cpu` ("video": the frames stay in host
        memory, each moved to the GPU when used) and `offload_state_to_cpu` ("state": the
        per-object memories kept in host memory); "both"; the masks are the same either way."""
        self.predictor = predictor
        height, width = frames[0].shape[:2]
        images = frames_tensor(frames, predictor.image_size)
        if offload not in ("video", "both"):
            images = images.to(predictor.device)
        with video_context(predictor.device):
            self.state = _init_state(predictor, images, height, width, offload)
        self.num_frames = len(frames)

    def add_prompt(
        self,
        frame_index: int,
        object_id: int,
        *,
        points: Sequence[Sequence[float]] | None = None,
        labels: Sequence[int] | None = None,
        box: Sequence[float] | None = None,
    ) -> FrameMasks:
        """Points and/or a box for one object on one frame, replacing that object's earlier
        points and box there (SAM2's default); answers every object's mask on that frame."""
        self._check_frame(frame_index)
        with video_context(self.predictor.device):
            frame, ids, logits = self.predictor.add_new_points_or_box(
                self.state,
                frame_idx=frame_index,
                obj_id=object_id,
                points=None if points is None else np.asarray(points, dtype=np.float32),
                labels=None if labels is None else np.asarray(labels, dtype=np.int32),
                box=None if box is None else np.asarray(box, dtype=np.float32),
            )
        return _frame_masks(frame, ids, logits)

    def add_mask(self, frame_index: int, object_id: int, mask: BoolMask) -> FrameMasks:
        """A whole mask as one object's prompt on one frame."""
        self._check_frame(frame_index)
        with video_context(self.predictor.device):
            frame, ids, logits = self.predictor.add_new_mask(
                self.state, frame_idx=frame_index, obj_id=object_id, mask=np.asarray(mask, bool)
            )
        return _frame_masks(frame, ids, logits)

    def propagate(
        self,
        start_frame_index: int | None = None,
        direction: Direction = "forward",
        max_frames: int | None = None,
    ) -> Generator[FrameMasks, None, None]:
        """Track every object through the clip, frame by frame: forward from
        `start_frame_index` (default: the first prompted frame), backward from it (default: the
        last prompted frame), or `both`, forward then backward, so that by default the whole
        clip is covered. With `both`, the frames between the two starts come twice: the forward
        pass's masks marked not final, as the backward pass tracks them again (sam2 keeps that
        pass's masks). The model's context is entered for each frame only, never held across a
        `yield`."""
        if start_frame_index is not None:
            self._check_frame(start_frame_index)
        prompted = self.prompted_frames
        if not prompted:
            raise InvalidRequestError(
                "nothing to track: add points, a box or a mask on a frame first",
                code=ErrorCode.INVALID_REQUEST,
            )
        passes = {"forward": [False], "backward": [True], "both": [False, True]}[direction]
        back_from = prompted[-1] if start_frame_index is None else start_frame_index
        back_to = 0 if max_frames is None else max(0, back_from - max_frames)
        for reverse in passes:
            # Frames the backward pass tracks too (none from frame 0: sam2 skips that pass).
            again = direction == "both" and not reverse and back_from > 0
            default = prompted[-1] if reverse else prompted[0]
            frames = self.predictor.propagate_in_video(
                self.state,
                start_frame_idx=default if start_frame_index is None else start_frame_index,
                max_frame_num_to_track=max_frames,
                reverse=reverse,
            )
            while True:
                with video_context(self.predictor.device):
                    step = next(frames, None)
                if step is None:
                    break
                masks = _frame_masks(*step)
                yield replace(
                    masks, final=not (again and back_to <= masks.frame_index <= back_from)
                )

    def clear_prompts(self, frame_index: int, object_id: int) -> FrameMasks:
        """One object's points, box and mask on one frame removed; every object's mask there."""
        self._check_frame(frame_index)
        if object_id not in self.state["obj_id_to_idx"]:
            raise InvalidRequestError(
                f"object {object_id} has no prompts in this session",
                code=ErrorCode.INVALID_PARAMETER,
            )
        with video_context(self.predictor.device):
            frame, ids, logits = self.predictor.clear_all_prompts_in_frame(
                self.state, frame_index, object_id
            )
        return _frame_masks(frame, ids, logits)

    def remove_object(self, object_id: int) -> None:
        with video_context(self.predictor.device):
            self.predictor.remove_object(self.state, object_id, need_output=False)

    def reset(self) -> None:
        with video_context(self.predictor.device):
            self.predictor.reset_state(self.state)

    @property
    def object_ids(self) -> list[int]:
        return list(self.state["obj_ids"])

    @property
    def prompted_frames(self) -> list[int]:
        """The frames that hold points, boxes or masks of any object, in order."""
        inputs = [*self.state["point_inputs_per_obj"].values()]
        inputs += self.state["mask_inputs_per_obj"].values()
        return sorted({frame for per_frame in inputs for frame in per_frame})

    def _check_frame(self, frame_index: int) -> None:
        if not 0 <= frame_index < self.num_frames:
            raise InvalidRequestError(
                f"frame_index {frame_index} is outside the clip's {self.num_frames} frames",
                code=ErrorCode.INVALID_PARAMETER,
            )


def _frame_masks(frame: int, ids: Sequence[int], logits: torch.Tensor) -> FrameMasks:
    """Every object's mask (logits above 0) at the clip's size."""
    masks = (logits > 0.0).cpu().numpy()
    return FrameMasks(frame, {int(i): masks[k, 0] for k, i in enumerate(ids)})


def _init_state(
    predictor: SAM2VideoPredictor,
    images: torch.Tensor,
    height: int,
    width: int,
    offload: VideoOffload = "none",
) -> dict[str, Any]:
    """`SAM2VideoPredictor.init_state` (sam2 1.1.0) with our frames instead of its loader's."""
    device = predictor.device
    state_on_cpu = offload in ("state", "both")
    state: dict[str, Any] = {
        "images": images,
        "num_frames": len(images),
        "offload_video_to_cpu": offload in ("video", "both"),
        "offload_state_to_cpu": state_on_cpu,
        "video_height": height,
        "video_width": width,
        "device": device,
        "storage_device": torch.device("cpu") if state_on_cpu else device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }
    predictor._get_image_feature(state, frame_idx=0, batch_size=1)
    return state
