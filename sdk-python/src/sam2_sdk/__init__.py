"""Python client for the SAM2 segmentation API."""

from sam2_contract.webhooks import WebhookVerificationError
from sam2_contract.webhooks import verify as _verify

from sam2_sdk._client import AsyncSam2Client, Sam2Client
from sam2_sdk._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ImageNotCachedError,
    InternalServerError,
    LocalDecodeError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    Sam2Error,
    SessionNotFoundError,
    UnprocessableEntityError,
    VideoNotFoundError,
)
from sam2_sdk._helpers import segment_image
from sam2_sdk._jobs import AsyncJobs, JobItemPending, JobResult, Jobs
from sam2_sdk._local import LocalSession
from sam2_sdk._types import (
    AutoMaskResult,
    AutoOptions,
    AutoSegmentation,
    BatchItemError,
    BatchResult,
    BoxPrediction,
    ImageInput,
    Segmentation,
    SegmentObject,
)
from sam2_sdk._video_log import SessionRecreatedWarning, TrackedFrame, TrackedObject
from sam2_sdk._videos import AsyncVideos, AsyncVideoSession, Videos, VideoSession


def verify_webhook(
    body: bytes | str, headers: dict[str, str], secret: str, *, now: float | None = None
) -> None:
    """Check a webhook delivery from the service in one call (Standard Webhooks: its
    `webhook-id`, `webhook-timestamp` and `webhook-signature` headers, under your key's
    `whsec_` secret); raises WebhookVerificationError saying why it is not the service's."""
    _verify(secret, body, headers, now=now)


__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncJobs",
    "AsyncSam2Client",
    "AsyncVideoSession",
    "AsyncVideos",
    "AuthenticationError",
    "AutoMaskResult",
    "AutoOptions",
    "AutoSegmentation",
    "BadRequestError",
    "BatchItemError",
    "BatchResult",
    "BoxPrediction",
    "ConflictError",
    "ImageInput",
    "ImageNotCachedError",
    "InternalServerError",
    "JobItemPending",
    "JobResult",
    "Jobs",
    "LocalDecodeError",
    "LocalSession",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "Sam2Client",
    "Sam2Error",
    "SegmentObject",
    "Segmentation",
    "SessionNotFoundError",
    "SessionRecreatedWarning",
    "TrackedFrame",
    "TrackedObject",
    "UnprocessableEntityError",
    "VideoNotFoundError",
    "VideoSession",
    "Videos",
    "WebhookVerificationError",
    "segment_image",
    "verify_webhook",
]
