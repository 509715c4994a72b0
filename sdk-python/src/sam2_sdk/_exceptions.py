"""The SDK's errors, named as in the TypeScript SDK (and openai-python's):

Sam2Error
└── APIError
    ├── APIConnectionError
    │   └── APITimeoutError
    ├── APIResponseValidationError    (a 2xx answer that does not match the API contract)
    └── APIStatusError                (any 4xx/5xx answer; `code`, `hint`, `request_id`)
        ├── BadRequestError           400
        ├── AuthenticationError       401
        ├── PermissionDeniedError     403
        ├── NotFoundError             404 (ImageNotCachedError for `image_not_cached`)
        ├── ConflictError             409
        ├── PayloadTooLargeError      413
        ├── UnprocessableEntityError  422
        ├── RateLimitError            429
        └── InternalServerError       5xx
"""

from __future__ import annotations

from typing import Any

import httpx


class Sam2Error(Exception):
    """Base of every error this SDK raises."""


class LocalDecodeError(Sam2Error):
    """A download for local decoding (an embedding, the decoder) is damaged or not what was
    asked for: nothing is decoded from it. Calling `client.local()` again downloads it anew."""


class APIError(Sam2Error):
    def __init__(self, message: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class APIConnectionError(APIError):
    """The service could not be reached."""


class APITimeoutError(APIConnectionError):
    """The service did not answer in time."""


class APIResponseValidationError(APIError):
    """The service answered, but not with what the API contract says (a proxy's page, a
    server of another version): nothing is returned half-read."""


class APIStatusError(APIError):
    """The service answered with an error; `code` is stable, `hint` says what to do."""

    def __init__(self, response: httpx.Response, problem: dict[str, Any]) -> None:
        detail = problem.get("detail") or response.reason_phrase
        super().__init__(
            f"{response.status_code} {problem.get('code', 'error')}: {detail}",
            request=response.request,
        )
        self.response = response
        self.status_code = response.status_code
        self.problem = problem
        self.code: str = str(problem.get("code", ""))
        self.hint: str | None = problem.get("hint")
        self.request_id: str | None = problem.get("request_id") or response.headers.get(
            "x-request-id"
        )


class BadRequestError(APIStatusError):
    pass


class AuthenticationError(APIStatusError):
    pass


class PermissionDeniedError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


class ImageNotCachedError(NotFoundError):
    """The `image_id` left the server's cache; the client resends the image by itself."""


class SessionNotFoundError(NotFoundError):
    """The video session expired, was deleted, or its server restarted; a VideoSession
    recreates it and replays its prompts by itself."""


class VideoNotFoundError(NotFoundError):
    """The clip is not stored (any more) for this key; a VideoSession uploads it again."""


class ConflictError(APIStatusError):
    pass


class PayloadTooLargeError(APIStatusError):
    pass


class UnprocessableEntityError(APIStatusError):
    pass


class RateLimitError(APIStatusError):
    pass


class InternalServerError(APIStatusError):
    pass


_BY_CODE: dict[str, type[APIStatusError]] = {
    "image_not_cached": ImageNotCachedError,
    "session_not_found": SessionNotFoundError,
    "video_not_found": VideoNotFoundError,
}
_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def error_for(response: httpx.Response) -> APIStatusError:
    """The typed error for an error response (problem+json, or whatever came back)."""
    try:
        problem = response.json()
        if not isinstance(problem, dict):
            problem = {}
    except ValueError:
        problem = {}
    by_code = _BY_CODE.get(str(problem.get("code")))
    if by_code is not None:
        return by_code(response, problem)
    if response.status_code >= 500:
        return InternalServerError(response, problem)
    return _BY_STATUS.get(response.status_code, APIStatusError)(response, problem)
