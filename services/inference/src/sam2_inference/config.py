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

    model: ModelName = Field(
        default="tiny",
        description=(
            "Which SAM 2.1 model to serve: `tiny`, `small`, `base-plus` or `large` "
            "(`facebook/sam2.1-hiera-*` on the Hugging Face hub)."
        ),
    )
    weights: str = Field(
        default="huggingface",
        description=(
            "`huggingface` (the hub, cached in `hf_cache_dir`), `random` (a seeded random-weight "
            "checkpoint built from the official config: offline, masks meaningless, said in every "
            "answer), `auto` (the hub, falling back to random weights when it is unreachable; "
            "what `scripts/dev` uses), or a checkpoint path."
        ),
    )
    device: DevicePreference = Field(
        default="auto",
        description=("`auto` (CUDA, then Apple MPS, then the CPU), `cuda`, `mps` or `cpu`."),
    )
    pipeline: PipelinePreference = Field(
        default="auto",
        description=(
            "`exact` runs SAM2's predictor code as published; `fast` does the work after the "
            "model on the device: a click's best mask is chosen from the low-resolution logits "
            "and only it is upsampled, thresholding and RLE run there, the image is resized "
            "there, and automatic mode upsamples only candidates above `pred_iou_thresh` "
            "(runtime/fastpath.py; on the CPU both give the same masks, bit for bit). `auto`: "
            "`fast` on CUDA, `exact` elsewhere. Health and every answer's `model.pipeline` say "
            "which runs."
        ),
    )
    precision: PrecisionPreference = Field(
        default="auto",
        description=(
            "Weights of the image encoder and mask decoder in the `fast` pipeline on CUDA: "
            "`auto`/`bfloat16`, or `float32` (the prompt encoder, positional encodings and the "
            "`exact` pipeline always keep float32; runtime/accel.py)."
        ),
    )
    cuda_graphs: GraphsPreference = Field(
        default="auto",
        description=(
            "`fast` pipeline on CUDA: the image encoder and the mask decoder (batches of up to 16 "
            "prompts) replay CUDA graphs captured at warm-up or on a new input shape; `off`: "
            "eager; `auto`: on there."
        ),
    )
    compile: CompileMode = Field(
        default="off",
        description=(
            "`default` or `max-autotune-no-cudagraphs`: `torch.compile` the image encoder at "
            "start-up (`fast` pipeline on CUDA; costs start-up time; not measured yet). `aot`: "
            "AOTInductor compiles the encoder once (`fast` pipeline, any device) into a `.pt2` "
            "package in `aot_dir`, one per torch version, device, model, checkpoint and dtype, "
            "which later starts load instead of compiling; a damaged package is compiled again "
            "(runtime/aot.py; on the CPU about 70 s for tiny, answers within 1e-4 of eager; GPU "
            "gain not measured). `aot-max-autotune`: the same package with Inductor's kernel "
            'autotuning, as `torch.compile(mode="max-autotune")` does (a longer compile, about 3 '
            "minutes for tiny on the CPU, paid once; its own file, `-autotuned.pt2`)."
        ),
    )
    aot_dir: Path = Field(
        default=Path.home() / ".cache" / "sam2-service" / "aot",
        description=(
            "Where `compile=aot` (or `aot-max-autotune`) keeps its packages, one file per torch "
            "version, device, model, checkpoint, dtype and autotuning: native code the service "
            "loads, so writable by it alone (on Modal: the weights Volume)."
        ),
    )
    image_decoder: DecoderPreference = Field(
        default="auto",
        description=(
            "What decodes uploads: `pillow`, or `torchvision` (a JPEG is decoded on the model's "
            "device, by nvjpeg on CUDA, and its pixels stay there for the encoder; other formats "
            "and EXIF-rotated, CMYK or damaged JPEGs still go to Pillow, so errors keep their "
            "codes; image/decoding.py). `auto`: `torchvision` in the `fast` pipeline on CUDA, "
            "`pillow` elsewhere."
        ),
    )
    random_seed: int = Field(
        default=0,
        description=(
            "The seed of random-weight checkpoints: the same seed builds the same weights, so "
            "answers are reproducible across machines."
        ),
    )
    random_dir: Path = Field(
        default=Path.home() / ".cache" / "sam2-service",
        description=(
            "Where random-weight checkpoints are built and kept (one file per model and seed)."
        ),
    )
    hf_cache_dir: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("SAM2_HF_CACHE_DIR", "HF_HUB_CACHE"),
        description=(
            "The Hugging Face cache that `weights=huggingface` downloads to and reads from; "
            "unset: the hub's own default (`~/.cache/huggingface/hub`)."
        ),
    )
    hf_offline: bool = Field(
        default=False,
        validation_alias=AliasChoices("SAM2_HF_OFFLINE", "HF_HUB_OFFLINE"),
        description=(
            "Never ask the hub: use only what `hf_cache_dir` already holds (weights that are not "
            "there fail to load, or fall back to random ones with `weights=auto`)."
        ),
    )
    cache_max_bytes: int = Field(
        default=1 << 30,
        ge=0,
        description=(
            "Byte budget of the image-embedding cache, least recently used first out (about 16 MB "
            "of float32 features per image, plus its pixels)."
        ),
    )
    max_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS,
        ge=1,
        description=(
            "Larger images get `413 image_too_large`, checked from the file's header before "
            "decoding."
        ),
    )
    max_request_bytes: int = Field(
        default=0,
        ge=0,
        description=(
            "Memory one request's model work may use: automatic mode's `points_per_batch` is "
            "lowered to fit (said in `warnings`), what cannot fit gets `422 over_budget`; 0: half "
            "the device's memory."
        ),
    )
    auto_slice_prompts: AutoSlice = Field(
        default="auto",
        description=(
            "The most prompts automatic mode runs through the mask decoder at once, so a waiting "
            "click waits for at most one such batch (less: the decoder steps aside between its "
            "stages). `auto`: 1 on a CPU (one prompt there takes about a click's time), 128 on a "
            "GPU (where a batch's fixed cost of kernel launches would make small batches slow). A "
            "fixed number, never sized from measured times: sam2's decoder rounds a prompt's last "
            "float32 bits by its batch's size, so a size read off a clock would make the same "
            "request give other masks under other loads; here the same request always gets the "
            "same masks, equal to sam2's `SAM2AutomaticMaskGenerator` with `points_per_batch` at "
            "that size (the answer's `warnings` say when it was lowered). `0`: `points_per_batch` "
            "as asked (in the `fast` pipeline a request that names no `points_per_batch` asks for "
            "1024)."
        ),
    )
    max_body_bytes: int = Field(
        default=32 << 20,
        ge=1024,
        description=("Larger bodies get `413 body_too_large`, enforced while reading."),
    )
    max_queued_per_tenant: int = Field(
        default=32,
        ge=1,
        description=(
            "Requests of one tenant queued or running at inference at once; more get `429 "
            "too_many_concurrent`. The gateway's per-key limits bind first; this one holds at "
            "each inference container whatever the gateways share."
        ),
    )
    video_dir: Path = Field(
        default=Path.home() / ".cache" / "sam2-service" / "videos",
        description=(
            "Uploaded clips, by content hash, in a folder per API key (on Modal: the clips Volume)."
        ),
    )
    video_max_bytes: int = Field(
        default=256 << 20,
        ge=1024,
        description=(
            "The largest clip (or set of frames) one upload may send (`413 body_too_large`)."
        ),
    )
    video_max_frames: int = Field(
        default=300,
        ge=1,
        description=("Frames one clip may keep (`422 video_too_large`)."),
    )
    video_max_frame_pixels: int = Field(
        default=1920 * 1088,
        ge=1,
        description=(
            "Pixels one frame may have (1080p by default), checked on every decoded frame, not "
            "the header (`422 video_too_large`)."
        ),
    )
    video_max_decoded_frames: int = Field(
        default=3000,
        ge=1,
        description=(
            "Frames decoding one clip upload may decode, skipped ones included, after seeking to "
            "the keyframe before `start` (`422 video_too_large` beyond). Decoding also stops at "
            "the request's deadline and when its client goes, and waits while a click runs."
        ),
    )
    video_decode_cpu_s: float = Field(
        default=60,
        gt=0,
        description=(
            "CPU seconds decoding one clip upload may spend (`422 video_too_large` beyond)."
        ),
    )
    video_max_objects: int = Field(
        default=8,
        ge=1,
        description=("Objects one session may track (`422 too_many_objects`)."),
    )
    video_offload: Literal["none", "video", "state", "both"] = Field(
        default="none",
        description=(
            "sam2's `offload_video_to_cpu` (`video`: a session's frames in host memory, each "
            "moved to the GPU when used), `offload_state_to_cpu` (`state`: its object memories in "
            "host memory), or `both`: the same masks with less GPU memory (what it saves on a "
            "GPU: not measured; no effect on a CPU). The memory budget counts a session's bytes "
            "wherever they are held."
        ),
    )
    video_memory_bytes: int | None = Field(
        default=None,
        ge=1 << 20,
        description=(
            "What all video sessions of one inference process hold together, every key's: a "
            "session takes frames x 12 MiB (the model's 1024x1024 float input) + 0.75 MiB per "
            "object per frame + 104 MiB before it is made; one that does not fit is `503 "
            "video_busy` (Retry-After), one larger than the whole is `422 video_too_large`. "
            "Unset: half the GPU's memory, or a quarter of the host's on a CPU."
        ),
    )
    video_sessions_per_tenant: int = Field(
        default=2,
        ge=1,
        description=(
            "Sessions one key holds in one inference process when the call names no tier (through "
            "the gateway, the key's tier decides: `SAM2_GATEWAY_SESSION_TIERS`, what `/v1/usage` "
            "reports); `429 too_many_sessions` beyond."
        ),
    )
    video_session_idle_s: float = Field(
        default=600,
        gt=0,
        description=("A session unused this long ends."),
    )
    video_session_lifetime_s: float = Field(
        default=3600,
        gt=0,
        description=("A session ends this long after it began, used or not."),
    )
    host: str = Field(
        default="127.0.0.1",
        description=(
            "The address `sam2-inference serve` listens on (`0.0.0.0` for every interface)."
        ),
    )
    port: int = Field(
        default=8081,
        description=("The port `sam2-inference serve` listens on."),
    )
