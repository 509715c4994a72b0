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


class DeploySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SAM2_DEPLOY_", extra="ignore")

    inference_app: str = "sam2-inference"
    gateway_app: str = "sam2-gateway"
    inference_class: str = "Inference"

    gpu: GpuType = Field(default="H200", description="H200 by default; H100, A100, L4 work too.")
    model: ModelName = "large"
    weights: str = "huggingface"
    hf_volume: str = Field(default="sam2-hf-cache", description="Volume that caches hub weights.")
    clips_volume: str = Field(
        default="sam2-clips",
        description="Volume that holds uploaded video clips (every container).",
    )
    require_gpu: bool = Field(
        default=True, description="A container that finds no GPU refuses to start."
    )
    scaledown_window_s: int = Field(default=300, ge=2, le=3600)
    max_containers: int = Field(default=10, ge=1)
    startup_timeout_s: int = Field(
        default=600,
        ge=30,
        description="A cold start: weights from the Volume (or the hub the "
        "first time), the restore, the move to the GPU and the warm-up click.",
    )
    cold_start_estimate_s: int = Field(
        default=60,
        ge=1,
        description="How long a GPU container's cold start takes, as the gateway tells clients "
        "while one runs (/readyz's Retry-After, the playground); not measured on Modal yet.",
    )
    call_timeout_s: int = Field(
        default=60, ge=5, description="How long the gateway waits for one inference answer."
    )
    target_concurrency: int = Field(
        default=2,
        ge=1,
        description="Requests per GPU container before Modal adds one: the "
        "model runs one request at a time, a second overlaps its decode and mask encoding.",
    )
    max_concurrency: int = Field(
        default=8,
        ge=1,
        description="Requests per GPU container at most; Modal answers 429 "
        "beyond (the gateway says 503 with Retry-After).",
    )
    routing_region: str = Field(default="us-east", description="Where requests enter Modal.")
    gpu_snapshot: bool = Field(
        default=False, description="Also snapshot GPU memory (Modal alpha feature)."
    )
    cache_max_bytes: int = Field(default=16 << 30, description="Embedding cache per container.")
    compile: CompileMode = Field(
        default="off",
        description="SAM2_COMPILE of the inference containers: `aot` compiles the image "
        "encoder once with AOTInductor, keeps it in the weights Volume and loads it in every "
        "later container (`aot-max-autotune`: with Inductor's kernel autotuning, a longer first "
        "compile); off until its gain is measured on a GPU (bench/README.md).",
    )

    gateway_max_inputs: int = Field(
        default=100, ge=1, description="Concurrent requests per gateway."
    )
    gateway_secret: str = Field(
        default="sam2-gateway",
        description="modal.Secret with SAM2_GATEWAY_KEY_PEPPER, SAM2_GATEWAY_JWT_PRIVATE_KEY, "
        "DATABASE_URL and optionally SAM2_GATEWAY_RATE_LIMIT_STORAGE (Redis).",
    )

    warm_days: list[Weekday] = Field(default_factory=lambda: list(WORKDAYS))
    warm_start_hour: int = Field(default=8, ge=0, le=23)
    warm_end_hour: int = Field(default=20, ge=1, le=24)
    warm_timezone: str = "UTC"
    warm_containers: int = Field(default=1, ge=0)
    warm_check_cron: str = Field(
        default="*/10 * * * *", description="How often keep-warm re-applies the schedule."
    )

    def as_env(self) -> dict[str, str]:
        """These settings as the environment variables that reproduce them, for the images:
        a container then reads what the deploying user set, not the defaults."""
        dumped = self.model_dump(mode="json")
        return {
            f"SAM2_DEPLOY_{name.upper()}": value if isinstance(value, str) else json.dumps(value)
            for name, value in dumped.items()
        }
