"""The service's error codes and its one exception tree.

Every failure a client can see has a stable ``ErrorCode``; each code has one HTTP status, a
title and a default fix-it hint, kept together in ``CATALOG`` (in catalog.py). Services raise
the exceptions below and one handler turns them into RFC 9457 ``application/problem+json``
(``Problem``).

    Sam2ServiceError                 (any failure, carries an ErrorCode)
    ├── InvalidRequestError          400/422: the JSON or one of its fields is wrong
    │   ├── InvalidImageError        422: the image cannot be decoded
    │   └── OverBudgetError          422: its model work would not fit the memory budget,
    │                                or (automatic mode) not finish before the deadline
    ├── PayloadTooLargeError         413: body or decoded image over its limit (431:
    │                                the request line and headers over theirs)
    ├── UnsupportedMediaTypeError    415: not application/json
    ├── ImageNotCachedError          404: `image_id` unknown or evicted; resend the image
    ├── MaskNotFoundError            404: `refine` names no mask kept for this image and key
    ├── AuthenticationError          401: no, malformed, unknown, revoked or expired credentials
    ├── PermissionDeniedError        403: the credentials lack the route's scope
    ├── RateLimitError               429: over the key's request rate or concurrency
    ├── NotFoundError                404/405: no such route or method
    ├── ModelNotLoadedError          400: the asked-for model is not served here
    ├── ServiceUnavailableError      503/504: inference starting or still loading, inference,
    │                                key store or rate limiter down, or inference too slow
    └── InternalServiceError         500: a bug; the response says nothing more
"""

from __future__ import annotations

from typing import ClassVar

from sam2_contract.catalog import CATALOG, ErrorCode, ErrorSpec
from sam2_contract.models import FieldError, Problem

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:sam2:error:"


class Sam2ServiceError(Exception):
    """Base of every error the service reports to a client."""

    default_code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR

    def __init__(
        self,
        detail: str,
        *,
        code: ErrorCode | None = None,
        hint: str | None = None,
        errors: list[FieldError] | None = None,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = code or self.default_code
        self.detail = detail
        self.hint = hint or CATALOG[self.code].hint
        self.errors = errors
        self.retry_after = retry_after
        self.headers = dict(headers or {})

    def response_headers(self) -> dict[str, str]:
        """Headers the problem response carries (Retry-After, rate-limit state)."""
        if self.retry_after is None:
            return self.headers
        return self.headers | {"Retry-After": str(self.retry_after)}

    @property
    def status(self) -> int:
        return CATALOG[self.code].status

    def to_problem(self, *, instance: str | None = None, request_id: str | None = None) -> Problem:
        """The RFC 9457 body for this error."""
        return Problem(
            type=PROBLEM_TYPE_PREFIX + self.code.value,
            title=CATALOG[self.code].title,
            status=self.status,
            detail=self.detail,
            code=self.code.value,
            hint=self.hint,
            instance=instance,
            request_id=request_id,
            errors=self.errors,
        )


class InvalidRequestError(Sam2ServiceError):
    default_code = ErrorCode.INVALID_REQUEST


class InvalidImageError(InvalidRequestError):
    default_code = ErrorCode.UNSUPPORTED_IMAGE


class PayloadTooLargeError(Sam2ServiceError):
    default_code = ErrorCode.BODY_TOO_LARGE


class UnsupportedMediaTypeError(Sam2ServiceError):
    default_code = ErrorCode.UNSUPPORTED_MEDIA_TYPE


class ImageNotCachedError(Sam2ServiceError):
    default_code = ErrorCode.IMAGE_NOT_CACHED


class MaskNotFoundError(Sam2ServiceError):
    default_code = ErrorCode.MASK_NOT_FOUND


class NotFoundError(Sam2ServiceError):
    default_code = ErrorCode.NOT_FOUND


class ConflictError(Sam2ServiceError):
    default_code = ErrorCode.SESSION_BUSY


class OverBudgetError(InvalidRequestError):
    default_code = ErrorCode.OVER_BUDGET


class ModelNotLoadedError(Sam2ServiceError):
    default_code = ErrorCode.MODEL_NOT_LOADED


class ModelNotFoundError(Sam2ServiceError):
    default_code = ErrorCode.MODEL_NOT_FOUND


class AuthenticationError(Sam2ServiceError):
    default_code = ErrorCode.MISSING_CREDENTIALS


class PermissionDeniedError(Sam2ServiceError):
    default_code = ErrorCode.INSUFFICIENT_SCOPE


class RateLimitError(Sam2ServiceError):
    default_code = ErrorCode.RATE_LIMITED


class ServiceUnavailableError(Sam2ServiceError):
    default_code = ErrorCode.NOT_READY


class InternalServiceError(Sam2ServiceError):
    default_code = ErrorCode.INTERNAL_ERROR


__all__ = [
    "CATALOG",
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_TYPE_PREFIX",
    "AuthenticationError",
    "ConflictError",
    "ErrorCode",
    "ErrorSpec",
    "ImageNotCachedError",
    "InternalServiceError",
    "InvalidImageError",
    "InvalidRequestError",
    "MaskNotFoundError",
    "ModelNotLoadedError",
    "NotFoundError",
    "OverBudgetError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "Sam2ServiceError",
    "ServiceUnavailableError",
    "UnsupportedMediaTypeError",
]
