"""Python client for the SAM2 segmentation API."""

from sam2_sdk._client import (
    AsyncSam2Client,
    AutoMaskResult,
    AutoSegmentation,
    ImageInput,
    Sam2Client,
    Segmentation,
)
from sam2_sdk._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ImageNotCachedError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    Sam2Error,
    UnprocessableEntityError,
)
from sam2_sdk._helpers import segment_image

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncSam2Client",
    "AuthenticationError",
    "AutoMaskResult",
    "AutoSegmentation",
    "BadRequestError",
    "ConflictError",
    "ImageInput",
    "ImageNotCachedError",
    "InternalServerError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "Sam2Client",
    "Sam2Error",
    "Segmentation",
    "UnprocessableEntityError",
    "segment_image",
]
