"""Durable batch jobs (issue 30): a request template and its items, one image each, run by the
gateway's workers; the job's state and its items' counts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, Field, model_validator

from sam2_contract.models.fields import MAX_URL_LENGTH, _check_image_id, _fail, _Model

MAX_JOB_ITEMS = 10_000
"""The most items one job takes (a deployment may set a lower bound)."""
JobState = Literal["queued", "running", "done", "cancelled"]


class JobItem(_Model):
    """One image of a job: an https URL the gateway fetches, or an earlier upload's image_id."""

    image_url: str | None = Field(
        default=None,
        max_length=MAX_URL_LENGTH,
        description="An https URL of the image, fetched by the gateway when the item runs "
        "(public addresses only, as `image_url` of /v1/segment).",
    )
    image_id: Annotated[str | None, BeforeValidator(_check_image_id)] = Field(
        default=None,
        description="The `image_id` of an image this key uploaded; it must still be cached "
        "when the item runs, else the item fails with `image_not_cached`.",
    )

    @model_validator(mode="after")
    def _one_image(self) -> Self:
        if (self.image_url is None) == (self.image_id is None):
            raise _fail("missing_image", "each item is one `image_url` or one `image_id`")
        return self


def _check_items(value: Any) -> Any:
    if isinstance(value, list) and len(value) > MAX_JOB_ITEMS:
        raise _fail("too_many_job_items", f"at most {MAX_JOB_ITEMS} items per job")
    return value


class JobRequest(_Model):
    """A job: every item is segmented with `request`, as one /v1/segment call each."""

    request: dict[str, Any] = Field(
        description="The /v1/segment fields every item is answered with (mode, prompts, "
        "automatic-mode knobs, mask_format), without `image`, `image_url` or `image_id`.",
        examples=[{"mode": "auto", "points_per_side": 16}],
    )
    items: Annotated[list[JobItem], BeforeValidator(_check_items)] = Field(
        default_factory=list,
        description=f"The images by URL or image_id, in order (at most {MAX_JOB_ITEMS}, with the "
        "uploaded ones); a multipart body's `image` files and `archive` entries follow them. "
        "Results come in this order.",
    )
    webhook_url: str | None = Field(
        default=None,
        max_length=MAX_URL_LENGTH,
        description="An https URL the service POSTs to when the job ends (done or cancelled), "
        "signed in the Standard Webhooks format with this key's secret "
        "(GET /v1/webhooks/secret); retried with backoff until it answers 2xx.",
    )


class JobCounts(BaseModel):
    queued: int
    running: int
    done: int
    failed: int
    cancelled: int


class JobWebhook(BaseModel):
    """The job's webhook: `pending` (the job ended; being delivered, or waiting to be sent
    again), `sent` (answered 2xx) or `failed` (every attempt failed; `error` says the last)."""

    state: Literal["pending", "sent", "failed"]
    attempts: int
    error: str | None


class JobInfo(BaseModel):
    """A job's state, its items' counts and timings."""

    job_id: str
    state: JobState = Field(
        description="`queued` (no item started), `running`, `done` (every item done or "
        "failed) or `cancelled`."
    )
    total: int = Field(description="The job's items.")
    counts: JobCounts
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    eta_s: float | None = Field(
        description="Seconds until the last item is expected to finish, from the mean time of "
        "the items finished so far and the workers' concurrency; null before the first."
    )
    webhook: JobWebhook | None = Field(
        default=None, description="Null without `webhook_url`, and until the job ends."
    )


class JobList(BaseModel):
    """This key's jobs, newest first."""

    jobs: list[JobInfo]


class WebhookSecretResponse(BaseModel):
    """A key's webhook signing secret, and the rotated-out one while it still signs."""

    secret: str = Field(description="`whsec_` and the base64 of the key: verify with it.")
    previous: list[str] = Field(
        description="The secret before the last rotation, for 24 hours after it (deliveries "
        "carry a signature by each)."
    )
