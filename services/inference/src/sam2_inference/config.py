"""Settings of the inference service: one class, read from `SAM2_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sam2_contract.images import DEFAULT_MAX_PIXELS
from sam2_contract.models import ModelName

DevicePreference = Literal["auto", "cuda", "mps", "cpu"]
PipelinePreference = Literal["auto", "exact", "fast"]
PrecisionPreference = Literal["auto", "float32", "bfloat16"]
GraphsPreference = Literal["auto", "on", "off"]
CompileMode = Literal["off", "default", "max-autotune-no-cudagraphs", "aot", "aot-max-autotune"]
DecoderPreference = Literal["auto", "pillow", "torchvision"]
AutoSlice = Annotated[int, Field(ge=0)] | Literal["auto"]


class InferenceSettings(BaseSettings):
    """Everything the inference service can be told; CLI flags override these."""

    model_config = SettingsConfigDict(env_prefix="SAM2_", extra="ignore", populate_by_name=True)

    model: ModelName = Field(default="tiny", description="Which SAM 2.1 model to serve.")
    weights: str = Field(
        default="huggingface",
        description="`huggingface` (the hub, cached), `random` (seeded random weights, offline), "
        "`auto` (the hub, falling back to random weights when unreachable), or a checkpoint path.",
    )
    device: DevicePreference = "auto"
    pipeline: PipelinePreference = Field(
        default="auto",
        description="`exact` runs SAM2's predictor code as published; `fast` keeps the work "
        "after the model on the device (see fastpath.py); `auto`: fast on CUDA, else exact.",
    )
    precision: PrecisionPreference = Field(
        default="auto",
        description="Weights of the image encoder and mask decoder in the fast pipeline on CUDA "
        "(see accel.py); `auto`: bfloat16 there. The exact pipeline and other devices keep "
        "float32 weights.",
    )
    cuda_graphs: GraphsPreference = Field(
        default="auto",
        description="Replay the image encoder and the mask decoder from CUDA graphs in the fast "
        "pipeline on CUDA; `auto`: on there.",
    )
    compile: CompileMode = Field(
        default="off",
        description="torch.compile the image encoder (fast pipeline on CUDA) with this mode at "
        "start-up; `off` by default: it costs start-up time. `aot`: AOTInductor, compiled once "
        "into a package in `aot_dir` that later starts load (fast pipeline; see aot.py); "
        "`aot-max-autotune`: the same with Inductor's kernel autotuning (a longer compile, once).",
    )
    aot_dir: Path = Field(
        default=Path.home() / ".cache" / "sam2-service" / "aot",
        description="Where `compile=aot` keeps the compiled encoder, one file per torch "
        "version, device, model, checkpoint, dtype and autotuning. Loaded as native code: "
        "writable by this service only.",
    )
    image_decoder: DecoderPreference = Field(
        default="auto",
        description="What decodes uploaded images: `pillow`, or `torchvision` (JPEG on the model's "
        "device: nvjpeg on CUDA; other files still Pillow; see decoding.py); `auto`: torchvision "
        "in the fast pipeline on CUDA, else Pillow.",
    )
    random_seed: int = 0
    random_dir: Path = Field(
        default=Path.home() / ".cache" / "sam2-service",
        description="Where random-weight checkpoints are built and kept.",
    )
    hf_cache_dir: Path | None = Field(
        default=None, validation_alias=AliasChoices("SAM2_HF_CACHE_DIR", "HF_HUB_CACHE")
    )
    hf_offline: bool = Field(
        default=False, validation_alias=AliasChoices("SAM2_HF_OFFLINE", "HF_HUB_OFFLINE")
    )
    cache_max_bytes: int = Field(
        default=1 << 30, ge=0, description="Byte budget of the image-embedding cache (LRU)."
    )
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=1)
    max_request_bytes: int = Field(
        default=0,
        ge=0,
        description="Memory one request's model work may use (automatic mode's "
        "points_per_batch is lowered to fit); 0: half the device's total memory.",
    )
    auto_slice_prompts: AutoSlice = Field(
        default="auto",
        description="Prompts automatic mode runs through the mask decoder at once, at most: a "
        "click waiting for the model waits for at most one such batch (less: the decoder steps "
        "aside between its stages). A fixed number, never sized from measured times, so the "
        "same request gives the same masks whatever the load (a batch's size changes the "
        "decoder's last float32 bits). `auto`: 1 on a CPU (one prompt there already takes "
        "about a click's time), 128 on a GPU; 0: `points_per_batch` as asked.",
    )
    max_body_bytes: int = Field(default=32 << 20, ge=1024)
    max_queued_per_tenant: int = Field(
        default=32,
        ge=1,
        description="Requests of one tenant queued or running here at once; more get 429. "
        "The gateway's per-key limits (2, 8, 32 by tier) bind first; this one holds when "
        "several gateway processes share one inference service.",
    )
    video_dir: Path = Field(
        default=Path.home() / ".cache" / "sam2-service" / "videos",
        description="Where uploaded clips are kept, by content hash, in a folder per tenant.",
    )
    video_max_bytes: int = Field(default=256 << 20, ge=1024, description="Largest clip upload.")
    video_max_frames: int = Field(default=300, ge=1, description="Frames one clip may keep.")
    video_max_frame_pixels: int = Field(
        default=1920 * 1088, ge=1, description="Pixels one frame may have (1080p by default)."
    )
    video_max_decoded_frames: int = Field(
        default=3000,
        ge=1,
        description="Frames one clip upload may decode, skipped ones included (after seeking "
        "to `start`'s keyframe); more is 422 video_too_large.",
    )
    video_decode_cpu_s: float = Field(
        default=60, gt=0, description="CPU seconds one clip upload may spend decoding."
    )
    video_max_objects: int = Field(default=8, ge=1, description="Objects one session tracks.")
    video_offload: Literal["none", "video", "state", "both"] = Field(
        default="none",
        description="sam2's offload_video_to_cpu (`video`: frames in host memory, moved to the "
        "GPU when used) and offload_state_to_cpu (`state`: object memories in host memory), or "
        "`both`: less GPU memory for the same masks; no effect on a CPU.",
    )
    video_memory_bytes: int | None = Field(
        default=None,
        ge=1 << 20,
        description="Memory all video sessions of this process may hold together, every key's "
        "(frames x the model's 1024x1024 float input, and each object's memory on each frame); "
        "a session that does not fit is 503 video_busy. Unset: half the GPU's memory, or a "
        "quarter of the host's on a CPU.",
    )
    video_sessions_per_tenant: int = Field(
        default=2, ge=1, description="Sessions one tenant may hold here at once (429 beyond)."
    )
    video_session_idle_s: float = Field(
        default=600, gt=0, description="A session unused this long ends."
    )
    video_session_lifetime_s: float = Field(
        default=3600, gt=0, description="A session ends this long after it began, used or not."
    )
    host: str = "127.0.0.1"
    port: int = 8081
