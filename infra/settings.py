"""Deployment settings: one class, `SAM2_DEPLOY_*` environment variables read when a user runs
`modal deploy`. Nothing here is an edited constant."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sam2_contract.models import ModelName

GpuType = Literal["H200", "H100", "A100-80GB", "A100", "L40S", "L4"]
CompileMode = Literal["off", "default", "max-autotune-no-cudagraphs", "aot", "aot-max-autotune"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WORKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")


JOB_WORKER_CPU = 1.0
JOB_WORKER_MEMORY_MIB = 1024
"""A job-worker container only forwards items (no torch): one core and 1 GiB
(bench/cost.py bills them)."""


class DeploySettings(BaseSettings):
    """What `modal deploy` builds: the apps, the GPU, the model, scaling and keep-warm."""

    model_config = SettingsConfigDict(env_prefix="SAM2_DEPLOY_", extra="ignore")

    inference_app: str = Field(
        default="sam2-inference",
        description=("The Modal app name of the inference Server."),
    )
    gateway_app: str = Field(
        default="sam2-gateway",
        description=("The Modal app name of the gateway."),
    )
    inference_class: str = Field(
        default="Inference",
        description=("The inference Server's class name, which the gateway looks up by name."),
    )

    gpu: GpuType = Field(
        default="H200",
        description=("`H200`, `H100`, `A100-80GB`, `A100`, `L40S` or `L4`."),
    )
    model: ModelName = Field(
        default="large",
        description=("The containers' SAM 2.1 model: `tiny`, `small`, `base-plus` or `large`."),
    )
    weights: str = Field(
        default="huggingface",
        description=(
            "The containers' `SAM2_WEIGHTS`: `huggingface` (downloaded once into the weights "
            "Volume) or a checkpoint path inside it."
        ),
    )
    hf_volume: str = Field(
        default="sam2-hf-cache",
        description=("The Volume that caches hub weights (and compiled encoders)."),
    )
    clips_volume: str = Field(
        default="sam2-clips",
        description=("The Volume that holds uploaded video clips, mounted by every container."),
    )
    require_gpu: bool = Field(
        default=True,
        description=(
            "A container that finds no GPU after the restore refuses to start (never serves on "
            "the CPU)."
        ),
    )
    scaledown_window_s: int = Field(
        default=300,
        ge=2,
        le=3600,
        description=("Idle seconds before a GPU container stops."),
    )
    max_containers: int = Field(
        default=10,
        ge=1,
        description=("GPU containers at most."),
    )
    startup_timeout_s: int = Field(
        default=600,
        ge=30,
        description=(
            "A cold start: weights from the Volume (or the hub the first time), the restore, the "
            "move to the GPU and the warm-up click."
        ),
    )
    cold_start_estimate_s: int = Field(
        default=60,
        ge=1,
        description=(
            "What clients are told a cold start takes (`/readyz`'s `Retry-After`, the "
            "playground); not measured on Modal."
        ),
    )
    call_timeout_s: int = Field(
        default=60,
        ge=5,
        description=(
            "The gateway's wait for one inference answer (then `504`), a cold start's wait "
            "included."
        ),
    )
    target_concurrency: int = Field(
        default=2,
        ge=1,
        description=(
            "Requests per GPU container before Modal adds one: the model runs one request at a "
            "time, a second overlaps its decode and mask encoding."
        ),
    )
    max_concurrency: int = Field(
        default=8,
        ge=1,
        description=(
            "Requests per GPU container at most: Modal answers 429 beyond (the gateway says `503` "
            "with `Retry-After`)."
        ),
    )
    routing_region: str = Field(
        default="us-east",
        description=("Where requests enter Modal."),
    )
    gpu_snapshot: bool = Field(
        default=False,
        description=(
            "Also snapshot GPU memory (Modal alpha): the move to the GPU, the warm-up and its "
            "CUDA graphs then happen before the snapshot, once, and a restore only starts "
            "serving."
        ),
    )
    cache_max_bytes: int = Field(
        default=16 << 30,
        description=("The embedding cache of each container."),
    )
    compile: CompileMode = Field(
        default="off",
        description=(
            "The containers' `SAM2_COMPILE`: `aot` compiles the image encoder with AOTInductor in "
            "the first container that starts on a new torch, GPU, model or checkpoint (minutes, "
            "inside `startup_timeout_s`), keeps it in the weights Volume (`/cache/hf/sam2-aot`, "
            "committed after the compile) and every later container loads it; `aot-max-autotune` "
            "does the same with Inductor's kernel autotuning (a longer first compile: raise "
            "`startup_timeout_s` for it); off until its gain is measured on a GPU."
        ),
    )

    gateway_max_inputs: int = Field(
        default=100,
        ge=1,
        description=("Concurrent requests per gateway container."),
    )
    job_items_per_container: int = Field(
        default=16,
        ge=1,
        description=(
            "Batch-job items one job-worker container (`drain_jobs`) sends to the inference "
            "Server at once; Modal adds GPU containers (up to `max_containers`) as they queue. "
            "Keep this x `job_worker_containers` within `max_containers` x `max_concurrency`, "
            "or items wait on Modal's 429s (the worker retries them)."
        ),
    )
    job_worker_containers: int = Field(
        default=2,
        ge=1,
        description=("`max_containers` of the job-worker Function (`drain_jobs`)."),
    )
    job_worker_idle_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "A job-worker container stops once no item has been queued or running this long "
            "(the next job's create, or the minute's schedule, starts one again)."
        ),
    )
    job_files_volume: str = Field(
        default="sam2-job-files",
        description=(
            "The modal.Volume where files uploaded with jobs are kept until their items run "
            "(shared by the gateway and the job workers; made on first deploy)."
        ),
    )
    gateway_secret: str = Field(
        default="sam2-gateway",
        description=(
            "The modal.Secret with `SAM2_GATEWAY_KEY_PEPPER`, `SAM2_GATEWAY_JWT_PRIVATE_KEY`, "
            "`DATABASE_URL` and optionally `SAM2_GATEWAY_RATE_LIMIT_STORAGE` (Redis)."
        ),
    )

    warm_days: list[Weekday] = Field(
        default_factory=lambda: list(WORKDAYS),
        description=('Keep-warm days (JSON list, e.g. `["mon","tue"]`).'),
    )
    warm_start_hour: int = Field(
        default=8,
        ge=0,
        le=23,
        description=("Keep-warm window start (hour, in `warm_timezone`)."),
    )
    warm_end_hour: int = Field(
        default=20,
        ge=1,
        le=24,
        description=("Keep-warm window end (hour, exclusive)."),
    )
    warm_timezone: str = Field(
        default="UTC",
        description=("The keep-warm window's time zone (IANA name, e.g. `Europe/Berlin`)."),
    )
    warm_containers: int = Field(
        default=1,
        ge=0,
        description=("`min_containers` inside the keep-warm window (0 outside it)."),
    )
    warm_check_cron: str = Field(
        default="*/10 * * * *",
        description=("How often keep-warm re-applies the window (cron)."),
    )

    def as_env(self) -> dict[str, str]:
        """These settings as the environment variables that reproduce them, for the images:
        a container then reads what the deploying user set, not the defaults."""
        dumped = self.model_dump(mode="json")
        return {
            f"SAM2_DEPLOY_{name.upper()}": value if isinstance(value, str) else json.dumps(value)
            for name, value in dumped.items()
        }
