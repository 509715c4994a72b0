"""Gateway settings: one class, `SAM2_GATEWAY_*` environment variables, failing fast on
placeholder secrets outside development."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sam2_contract.images import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)

_PLACEHOLDERS = {"", "change-me", "changeme", "secret", "placeholder", "xxx"}
MAX_TOKEN_TTL_S = 15 * 60


class JobTier(BaseModel):
    """A rate tier's batch-job limits."""

    max_items: int = Field(gt=0, description="Items one job may have.")
    max_jobs: int = Field(gt=0, description="Jobs one key may have queued or running at once.")
    max_running: int = Field(
        default=4,
        gt=0,
        description="Items of one key the workers run at once, across its jobs (the rest wait).",
    )
    retention_days: float = Field(
        default=30,
        gt=0,
        description="Days a finished job (its answers, its COCO file) is kept; then it is deleted.",
    )


UNLISTED_JOB_TIER = JobTier(max_items=100, max_jobs=1, max_running=1, retention_days=7)


class GatewaySettings(BaseSettings):
    """Everything the gateway can be told."""

    model_config = SettingsConfigDict(
        env_prefix="SAM2_GATEWAY_", extra="ignore", populate_by_name=True
    )

    environment: Literal["development", "production"] = Field(
        default="production",
        description=(
            "`development` makes throwaway secrets when none are set (and serves the local "
            "playground its development token); `production` refuses to start without real ones."
        ),
    )
    inference_url: str = Field(
        default="http://127.0.0.1:8081",
        description=(
            "The inference service: the local one, or the deployed Modal Server's URL (on Modal, "
            "looked up by name when unset)."
        ),
    )
    inference_proxy_key: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "Modal proxy token id (`wk-...`) sent as `Modal-Key` to the inference Server; empty: "
            "none sent."
        ),
    )
    inference_proxy_secret: SecretStr = Field(
        default=SecretStr(""),
        description=("Modal proxy token secret (`ws-...`), sent as `Modal-Secret`."),
    )
    inference_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description=(
            "Slower inference gets `504 inference_timeout`. Inference's deadline is this minus 5 "
            "s (at most a quarter of it), so its answer, and the model time to meter, still "
            "arrives; automatic mode that would not finish by then gets `422 over_time_budget` "
            "before it starts."
        ),
    )
    inference_connect_timeout_s: float = Field(
        default=1.0,
        gt=0,
        description=(
            "Inference unreachable this long gets `503 inference_unavailable` with `Retry-After: "
            "1`."
        ),
    )
    inference_startup_wait_s: float = Field(
        default=600.0,
        ge=0,
        description=(
            "A cold start (Modal's proxy answering 503 with no container live) is waited for, "
            "asking again with backoff, this long at most and within the request's own time, then "
            "`503 inference_starting` with `Retry-After: 5`; `0`: answer that at once."
        ),
    )
    inference_start_estimate_s: int = Field(
        default=60,
        ge=1,
        description=(
            "What `/readyz` (`Retry-After`) and the playground tell clients a cold start of "
            "inference takes."
        ),
    )

    redis_timeout_s: float = Field(
        default=0.25,
        gt=0,
        description=(
            "Every Redis call (rate count, concurrency lease, usage journal) answers within this, "
            "or the request gets `503 dependency_unavailable` with `Retry-After: 5` "
            "([reliability.md](reliability.md#stalled-dependencies))."
        ),
    )
    database_timeout_s: float = Field(
        default=1.5,
        gt=0,
        description=(
            "Every key-store call (key lookup, usage; connect, pool wait and PostgreSQL "
            "`statement_timeout` included) answers within this, or the request gets `503 "
            "dependency_unavailable` with `Retry-After: 5`."
        ),
    )
    dependency_retry_s: float = Field(
        default=2.0,
        gt=0,
        description=(
            "After a dependency failed or ran out of time, calls to it fail at once for this "
            "long, then one call tries it again (a circuit breaker: a stall costs one timeout per "
            "interval, not one per request)."
        ),
    )
    readyz_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description=(
            "`/readyz` asks the key store, the rate limiter and inference at once and answers "
            "within this, naming what did not answer."
        ),
    )
    max_answer_bytes: int = Field(
        default=256 * 2**20,
        gt=0,
        description=(
            "The largest answer the gateway builds (masks x height x width in the `mask_format` "
            "asked; bool2d is 6 bytes a pixel, one 16 MP mask 91 MB): larger gets `422 "
            "answer_too_large` with a hint to ask for `rle` or `png` "
            "([api.md](api.md#mask-formats))."
        ),
    )
    answer_memory_bytes: int = Field(
        default=512 * 2**20,
        gt=0,
        description=(
            "All answers being built or sent at once hold at most this; one that does not fit "
            "waits up to 10 s for others to be sent, then gets `503 gateway_busy`."
        ),
    )
    job_workers: int = Field(
        default=2,
        ge=0,
        description=(
            "Items of batch jobs (`POST /v1/jobs`) this gateway process runs at once, sent to "
            "inference over the same hop as clicks; 0 runs none (another process's workers "
            "take the items). Items are leased in the database, so any number of processes may "
            "run workers on one database."
        ),
    )
    job_lease_s: float = Field(
        default=60.0,
        gt=0,
        description=(
            "How long a worker holds an item without renewing its lease (it renews every "
            "third of it); a worker that dies loses its items this long after, and another "
            "takes them again."
        ),
    )
    job_max_items: int = Field(
        default=10_000,
        gt=0,
        le=10_000,
        description="The most items one job may have; more gets `422 too_many_job_items`.",
    )
    job_max_active_items: int = Field(
        default=50_000,
        gt=0,
        description=(
            "The most items one key may have queued or running across its jobs; a job that "
            "would pass it gets `429 job_queue_full`."
        ),
    )
    job_tiers: dict[str, JobTier] = Field(
        default_factory=lambda: {
            "free": JobTier(max_items=100, max_jobs=2, max_running=2, retention_days=7),
            "standard": JobTier(max_items=10_000, max_jobs=10, max_running=16, retention_days=30),
            "dev": JobTier(max_items=10_000, max_jobs=20, max_running=16, retention_days=30),
        },
        description=(
            "Batch-job limits per rate tier (JSON `{tier: {max_items, max_jobs, max_running, "
            "retention_days}}`): items per job (`422 too_many_job_items`, never more than "
            "`job_max_items`), jobs queued or running at once per key (`429 job_queue_full`), "
            "items of a key the workers run at once (its other items wait; other keys' items "
            "go ahead) and days a finished job is kept before it is deleted; a tier not listed "
            "gets 100 items, 1 job, 1 item at once and 7 days."
        ),
    )
    job_files_dir: Path = Field(
        default=Path.home() / ".cache" / "sam2-gateway" / "job-files",
        description=(
            "Where images uploaded with a batch job (files and archives) are kept until their "
            "items run, by their SHA-256, and the items' answers (`results/<job_id>/`); on "
            "several machines, a folder they share."
        ),
    )
    job_max_upload_bytes: int = Field(
        default=256 * 2**20,
        gt=0,
        description=(
            "The largest `multipart/form-data` job body (its image files and archive), and the "
            "most bytes an archive may unpack to; more gets `413`."
        ),
    )
    webhook_allow_http: bool = Field(
        default=False,
        description="Batch jobs' `webhook_url`: also deliver to plain http URLs (https only if "
        "false).",
    )
    webhook_allowed_networks: list[str] = Field(
        default_factory=list,
        description=(
            "Batch jobs' `webhook_url`: non-public networks (JSON list of CIDRs) webhooks may "
            "be delivered to; every other private, loopback, link-local or metadata address is "
            "refused, at creation (an IP literal) and at each delivery (what the name resolves to)."
        ),
    )
    webhook_retry_s: float = Field(
        default=5.0,
        gt=0,
        description=(
            "The first wait before a failed webhook delivery is sent again; each next wait is "
            "four times longer (5 s, 20 s, 80 s, ... by default), six attempts in all."
        ),
    )
    database_url: str = Field(
        default="sqlite:///./sam2-gateway.db",
        validation_alias=AliasChoices("SAM2_GATEWAY_DATABASE_URL", "DATABASE_URL"),
        description=(
            "The key store (SQLAlchemy URL): SQLite by default, "
            "`postgresql+psycopg://user:pass@host/db` for PostgreSQL."
        ),
    )
    usage_journal: Path | None = Field(
        default=None,
        description=(
            "A file each request's usage is appended to before its answer leaves, so a crashed "
            "gateway loses no metering (one gateway process per file; `scripts/dev` uses "
            "`.sam2-dev/usage.journal`); unset: the rate limiter's Redis when it uses one "
            "(replicas take over what a crashed one left), else memory (a crash loses up to the "
            "last second)."
        ),
    )
    key_pepper: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "Required outside development: the HMAC key under which API keys are hashed; long and "
            "random."
        ),
    )
    jwt_private_key: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "Required outside development: the Ed25519 private key (PEM) that signs browser tokens."
        ),
    )
    jwt_key_id: str = Field(
        default="k1",
        description=("The signing key's `kid`, in every token's header."),
    )
    jwt_previous_public_keys: dict[str, str] = Field(
        default_factory=dict,
        description=("Retired public keys still accepted (JSON `{kid: PEM}`), for rotation."),
    )
    jwt_issuer: str = Field(
        default="sam2-gateway",
        description=("The `iss` of browser tokens, checked on every token."),
    )
    jwt_audience: str = Field(
        default="sam2-api",
        description=("The `aud` of browser tokens, checked on every token."),
    )
    token_ttl_s: int = Field(
        default=600,
        gt=0,
        le=MAX_TOKEN_TTL_S,
        description=("Browser token lifetime in seconds, at most 900."),
    )
    dev_token_key_id: str | None = Field(
        default=None,
        description=(
            "Development only (set by `scripts/dev`): `POST /v1/auth/dev-token` hands out tokens "
            "of this key without credentials, so the local playground needs no pasted key."
        ),
    )

    rate_limit_storage: str = Field(
        default="async+memory://",
        description=(
            "`async+redis://host:6379` shares each key's request rate and requests in flight "
            "across gateway replicas (in flight: leases renewed while the request runs, so a "
            "replica that dies frees its slots within 30 s); `async+memory://`: this process "
            "only."
        ),
    )
    rate_tiers: dict[str, str] = Field(
        default_factory=lambda: {
            "free": "60/minute",
            "standard": "600/minute",
            "dev": "6000/minute",
        },
        description=(
            "Requests per key and tier (JSON `{tier: limit}`, limits in the `limits` library's "
            "notation); `429 rate_limited` beyond, with `Retry-After`."
        ),
    )
    concurrency_tiers: dict[str, int] = Field(
        default_factory=lambda: {"free": 2, "standard": 8, "dev": 32},
        description=(
            "Requests of one key in flight at once, per tier (JSON); `429 too_many_concurrent` "
            "beyond."
        ),
    )
    session_tiers: dict[str, int] = Field(
        default_factory=lambda: {"free": 1, "standard": 2, "dev": 4},
        description=(
            "Video sessions one key of each rate tier may hold in one inference container (`429 "
            "too_many_sessions`), as `/v1/usage` reports; together they are bounded by "
            "inference's video memory."
        ),
    )

    cors_origins: list[str] = Field(
        default_factory=list,
        description=(
            "Origins allowed to call from a browser (JSON list, e.g. "
            '`["https://app.example.com"]`); empty: none.'
        ),
    )
    max_body_bytes: int = Field(
        default=32 << 20,
        ge=1024,
        description=("Larger bodies get `413 body_too_large`, enforced while reading."),
    )
    video_max_bytes: int = Field(
        default=256 << 20,
        ge=1024,
        description=(
            "The largest clip (or set of frames) uploaded to `POST /v1/videos` (`413 "
            "body_too_large`)."
        ),
    )
    max_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS,
        ge=1,
        description=(
            "Larger images get `413 image_too_large`, checked from the file's header at the "
            "gateway."
        ),
    )
    image_url_max_bytes: int = Field(
        default=32 << 20,
        ge=1024,
        description=("`image_url`: the largest file fetched."),
    )
    image_url_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description=("`image_url`: the time for the whole fetch, redirects included."),
    )
    image_url_allow_http: bool = Field(
        default=False,
        description=("`image_url`: also fetch plain http URLs (https only if false)."),
    )
    image_url_allowed_networks: list[str] = Field(
        default_factory=list,
        description=(
            "`image_url`: non-public networks (JSON list of CIDRs, e.g. an internal image store) "
            "the gateway may fetch from. Every other private, loopback, link-local or metadata "
            "address is refused ([api.md](api.md#images-by-url))."
        ),
    )
    host: str = Field(
        default="127.0.0.1",
        description=("The address `sam2-gateway serve` listens on."),
    )
    port: int = Field(
        default=8080,
        description=("The port `sam2-gateway serve` listens on."),
    )

    def job_tier(self, tier: str) -> JobTier:
        """The batch-job limits of `tier`, items capped by `job_max_items`."""
        limits = self.job_tiers.get(tier, UNLISTED_JOB_TIER)
        items = min(limits.max_items, self.job_max_items)
        return limits.model_copy(update={"max_items": items})

    def job_running_limits(self) -> tuple[dict[str, int], int]:
        """Items of a key that may run at once, by rate tier, and for a tier not listed."""
        listed = {tier: limits.max_running for tier, limits in self.job_tiers.items()}
        return listed, UNLISTED_JOB_TIER.max_running

    def job_retention_days(self) -> tuple[dict[str, float], float]:
        """Days a finished job is kept, by rate tier, and for a tier not listed."""
        listed = {tier: limits.retention_days for tier, limits in self.job_tiers.items()}
        return listed, UNLISTED_JOB_TIER.retention_days

    def video_sessions(self, tier: str) -> int:
        """Video sessions a key of `tier` may hold in one inference container (1 for a tier
        not listed)."""
        return self.session_tiers.get(tier, 1)

    @property
    def inference_auth_headers(self) -> dict[str, str]:
        """Modal's proxy-auth headers for the inference Server, when a token is set."""
        key = self.inference_proxy_key.get_secret_value()
        if not key:
            return {}
        return {"Modal-Key": key, "Modal-Secret": self.inference_proxy_secret.get_secret_value()}

    @model_validator(mode="after")
    def _one_answer_fits(self) -> Self:
        if self.max_answer_bytes > self.answer_memory_bytes:
            raise ValueError(
                "SAM2_GATEWAY_MAX_ANSWER_BYTES is larger than SAM2_GATEWAY_ANSWER_MEMORY_BYTES: "
                "an answer that large could never be built"
            )
        return self

    @model_validator(mode="after")
    def _secrets_are_real(self) -> Self:
        missing = [
            name
            for name in ("key_pepper", "jwt_private_key")
            if getattr(self, name).get_secret_value().strip().lower() in _PLACEHOLDERS
        ]
        if not missing:
            return self
        if self.environment == "production":
            raise ValueError(
                f"set {', '.join('SAM2_GATEWAY_' + m.upper() for m in missing)}: "
                "placeholder secrets are refused outside development"
            )
        log.warning("development mode: generating throwaway %s", ", ".join(missing))
        if "key_pepper" in missing:
            self.key_pepper = SecretStr(secrets.token_urlsafe(32))
        if "jwt_private_key" in missing:
            from sam2_gateway.core.tokens import generate_private_key_pem

            self.jwt_private_key = SecretStr(generate_private_key_pem())
        return self
