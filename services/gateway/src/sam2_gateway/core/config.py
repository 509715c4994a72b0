"""Gateway settings: one class, `SAM2_GATEWAY_*` environment variables, failing fast on
placeholder secrets outside development."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sam2_contract.images import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)

_PLACEHOLDERS = {"", "change-me", "changeme", "secret", "placeholder", "xxx"}
MAX_TOKEN_TTL_S = 15 * 60


class GatewaySettings(BaseSettings):
    """Everything the gateway can be told."""

    model_config = SettingsConfigDict(
        env_prefix="SAM2_GATEWAY_", extra="ignore", populate_by_name=True
    )

    environment: Literal["development", "production"] = "production"
    inference_url: str = Field(
        default="http://127.0.0.1:8081",
        description="The inference service: the local one, or the deployed Modal Server's URL.",
    )
    inference_proxy_key: SecretStr = Field(
        default=SecretStr(""),
        description="Modal proxy token id (wk-...) sent as Modal-Key; empty: none sent.",
    )
    inference_proxy_secret: SecretStr = Field(
        default=SecretStr(""), description="Modal proxy token secret (ws-...), as Modal-Secret."
    )
    inference_timeout_s: float = Field(default=120.0, gt=0)
    inference_connect_timeout_s: float = Field(default=1.0, gt=0)
    inference_startup_wait_s: float = Field(
        default=600.0,
        ge=0,
        description="How long a request waits for inference to start when its proxy says no "
        "container is live (Modal's 503 with no problem body), asking again with backoff; the "
        "request's own inference_timeout_s bounds it too. 0: answer 503 inference_starting at "
        "once.",
    )
    inference_start_estimate_s: int = Field(
        default=60,
        ge=1,
        description="How long a cold start of inference takes, as told to clients while one "
        "runs (/readyz's Retry-After, the playground's 'starting the GPU (about N s)').",
    )

    redis_timeout_s: float = Field(
        default=0.25,
        gt=0,
        description="Each Redis call (the rate count, a concurrency lease, the usage journal) "
        "answers within this or the request gets 503 dependency_unavailable.",
    )
    database_timeout_s: float = Field(
        default=1.5,
        gt=0,
        description="Each key-store call (a key lookup, usage) answers within this, a statement "
        "waiting for a lock included, or the request gets 503 dependency_unavailable.",
    )
    dependency_retry_s: float = Field(
        default=2.0,
        gt=0,
        description="After a dependency failed or ran out of time, calls to it fail at once "
        "(503) for this long; then one call tries it again (a circuit breaker).",
    )
    readyz_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="/readyz asks the key store, the rate limiter and inference at once and "
        "answers within this, naming what did not answer.",
    )
    max_answer_bytes: int = Field(
        default=256 * 2**20,
        gt=0,
        description="The largest answer the gateway builds (masks x height x width in the "
        "mask_format asked; bool2d is 6 bytes a pixel): larger gets 422 answer_too_large, "
        "with a hint to ask for rle or png.",
    )
    answer_memory_bytes: int = Field(
        default=512 * 2**20,
        gt=0,
        description="All answers being built or sent at once hold at most this; one that does "
        "not fit waits up to 10 s for others to be sent, then gets 503 gateway_busy.",
    )
    database_url: str = Field(
        default="sqlite:///./sam2-gateway.db",
        validation_alias=AliasChoices("SAM2_GATEWAY_DATABASE_URL", "DATABASE_URL"),
        description="SQLAlchemy URL: SQLite by default, postgresql+psycopg://... for PostgreSQL.",
    )
    usage_journal: Path | None = Field(
        default=None,
        description="A file each request's usage is appended to before its answer leaves, so a "
        "crashed gateway loses none (one gateway process per file); unset: the rate limiter's "
        "Redis when it uses one, else memory (written every second).",
    )
    key_pepper: SecretStr = Field(
        default=SecretStr(""), description="HMAC key for API-key hashes; a long random string."
    )
    jwt_private_key: SecretStr = Field(
        default=SecretStr(""), description="PEM of the Ed25519 key that signs browser tokens."
    )
    jwt_key_id: str = "k1"
    jwt_previous_public_keys: dict[str, str] = Field(
        default_factory=dict,
        description="kid -> PEM of retired public keys still accepted (key rotation).",
    )
    jwt_issuer: str = "sam2-gateway"
    jwt_audience: str = "sam2-api"
    token_ttl_s: int = Field(default=600, gt=0, le=MAX_TOKEN_TTL_S)
    dev_token_key_id: str | None = Field(
        default=None,
        description="Development only: POST /v1/auth/dev-token hands out tokens of this key "
        "without credentials, so the local playground needs no pasted key.",
    )

    rate_limit_storage: str = Field(
        default="async+memory://", description="async+memory:// or async+redis://host:6379"
    )
    rate_tiers: dict[str, str] = Field(
        default_factory=lambda: {
            "free": "60/minute",
            "standard": "600/minute",
            "dev": "6000/minute",
        }
    )
    concurrency_tiers: dict[str, int] = Field(
        default_factory=lambda: {"free": 2, "standard": 8, "dev": 32}
    )
    session_tiers: dict[str, int] = Field(
        default_factory=lambda: {"free": 1, "standard": 2, "dev": 4},
        description="Video sessions one key of each tier may hold in one inference container.",
    )

    cors_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=32 << 20, ge=1024)
    video_max_bytes: int = Field(
        default=256 << 20, ge=1024, description="The largest clip (or set of frames) uploaded."
    )
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=1)
    image_url_max_bytes: int = Field(
        default=32 << 20, ge=1024, description="`image_url`: the largest file fetched."
    )
    image_url_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="`image_url`: the whole fetch, redirects included."
    )
    image_url_allow_http: bool = Field(
        default=False, description="`image_url`: also fetch plain http URLs (https only if false)."
    )
    image_url_allowed_networks: list[str] = Field(
        default_factory=list,
        description="`image_url`: non-public networks (CIDR) the gateway may fetch from, e.g. an "
        "internal image store; every other private, loopback or link-local address is refused.",
    )
    host: str = "127.0.0.1"
    port: int = 8080

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
