"""What the service reports about itself: health, models, cache, tokens and usage."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from sam2_contract.models.fields import (
    ModelName,
)
from sam2_contract.models.responses import (
    ModelInfo,
)


class CacheStats(BaseModel):
    """The image-embedding cache, as the inference service reports it."""

    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int
    evictions: int


class ModelEntry(BaseModel):
    name: ModelName
    model_id: str
    loaded: bool


class ModelsResponse(BaseModel):
    models: list[ModelEntry]
    serving: ModelInfo | None = Field(description="The loaded model, None while loading.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    state: Literal["loading", "ready", "failed"]
    model: ModelInfo | None = None
    random_weights: bool = False
    warnings: list[str] = Field(default_factory=list)
    cache: CacheStats | None = None


class TokenResponse(BaseModel):
    token: str = Field(description="Send as `Authorization: Bearer <token>`.")
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (a scheme name, not a secret)
    expires_in: int = Field(description="Seconds until it expires.")
    expires_at: int = Field(description="Unix time at which it expires.")
    scope: str = Field(description="Space-separated scopes it carries.")


class UsageCounts(BaseModel):
    """What a key used, as metered by the gateway."""

    requests: int = Field(description="Calls that ran the model (segmentation, video).")
    images: int = Field(
        description="Images and clips uploaded or fetched (each one's first call; the ones "
        "that ran the image encoder)."
    )
    masks: int = Field(description="Masks returned (video: objects on each frame sent).")
    gpu_ms: float = Field(
        description="Model time in milliseconds, stopped and failed calls' included."
    )


class UsageDay(UsageCounts):
    day: date = Field(description="The UTC day.")


class UsageLimits(BaseModel):
    """The limits of the key's rate tier."""

    requests: int = Field(description="Requests allowed per window.")
    window_s: int = Field(description="The rate window, in seconds (a moving window).")
    concurrent: int = Field(description="Requests that may run at once.")
    video_sessions: int = Field(description="Video sessions one inference container holds.")
    job_items: int | None = Field(
        default=None, description="Items one batch job may have (null: no `jobs` scope)."
    )
    jobs: int | None = Field(
        default=None, description="Batch jobs queued or running at once (null: no `jobs` scope)."
    )
    job_running: int | None = Field(
        default=None,
        description="Batch-job items of this key the workers run at once (null: no `jobs` scope).",
    )
    job_retention_days: float | None = Field(
        default=None,
        description="Days a finished batch job is kept, then deleted (null: no `jobs` scope).",
    )


class UsageResponse(BaseModel):
    """A key's own usage, per UTC day, with its tier's limits."""

    key_id: str
    rate_tier: str
    limits: UsageLimits
    since: date = Field(description="The first day reported (UTC).")
    days: list[UsageDay] = Field(description="Days with usage, oldest first.")
    total: UsageCounts = Field(description="The sum of `days`.")
