"""Turning raw request bodies into models, with one stable error code per problem."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from sam2_contract.errors import ErrorCode, InvalidRequestError
from sam2_contract.models import MAX_BATCH_ITEMS, BatchImage, FieldError, SegmentRequest

M = TypeVar("M", bound=BaseModel)

_CODES = {code.value for code in ErrorCode}
_FIELD_CODES: dict[str, ErrorCode] = {
    "mode": ErrorCode.INVALID_MODE,
    "mask_format": ErrorCode.INVALID_MASK_FORMAT,
    "model": ErrorCode.UNKNOWN_MODEL,
    "point_coords": ErrorCode.INVALID_COORDINATES,
    "point_labels": ErrorCode.INVALID_POINT_LABEL,
    "box_coords": ErrorCode.INVALID_BOX,
    "image_id": ErrorCode.INVALID_IMAGE_ID,
    "image_url": ErrorCode.INVALID_IMAGE_URL,
    "refine": ErrorCode.INVALID_MASK_ID,
    "objects": ErrorCode.INVALID_REQUEST,
    "image": ErrorCode.MISSING_IMAGE,
    "requests": ErrorCode.INVALID_BATCH,
}
_KNOBS = set(SegmentRequest.model_fields) - set(_FIELD_CODES)
_VALUE_ERRORS = {
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "int_parsing",
    "int_parsing_size",  # more digits than Python parses (4300): a bad number all the same
    "finite_number",
    "int_type",
    "int_from_float",
    "float_parsing",
    "float_type",
    "bool_parsing",
    "bool_type",
}


def parse_json(body: bytes) -> Any:
    """Decode a JSON body, or raise `invalid_json` saying where it broke. Nesting past
    Python's recursion limit and integers of thousands of digits are invalid JSON here too."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequestError(
            f"the body is not valid JSON: {exc}", code=ErrorCode.INVALID_JSON
        ) from None
    except RecursionError:
        raise InvalidRequestError(
            "the body's JSON is nested too deeply", code=ErrorCode.INVALID_JSON
        ) from None
    except ValueError:  # int() refuses more than sys.get_int_max_str_digits() digits
        raise InvalidRequestError(
            "the body's JSON has a number with too many digits", code=ErrorCode.INVALID_JSON
        ) from None


def invalid_request(
    exc: ValidationError, *, prefix: tuple[str | int, ...] = ()
) -> InvalidRequestError:
    """The client-facing error for a Pydantic validation failure; the first error sets `code`."""
    return invalid_fields(exc.errors(include_url=False, include_input=False), prefix=prefix)


def invalid_fields(
    found: Sequence[Mapping[str, Any]], *, prefix: tuple[str | int, ...] = ()
) -> InvalidRequestError:
    """The client-facing error for validation errors in Pydantic's shape (a body's, or
    FastAPI's for query parameters); the first error sets `code`."""
    errors = [
        FieldError(loc=[*prefix, *err["loc"]], msg=err["msg"], code=_code_for(err).value)
        for err in found
    ]
    first = errors[0]
    where = ".".join(str(part) for part in first.loc) or "body"
    return InvalidRequestError(f"{where}: {first.msg}", code=ErrorCode(first.code), errors=errors)


def parse_segment_request(raw: Any) -> SegmentRequest:
    """Validate one decoded JSON object as a SegmentRequest."""
    try:
        return SegmentRequest.model_validate(raw)
    except ValidationError as exc:
        raise invalid_request(exc) from None


def parse_model(model: type[M], raw: Any) -> M:
    """Validate one decoded JSON object as `model`, with the same problem details."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise invalid_request(exc) from None


class BatchEnvelope(BatchImage):
    """A batch body with its items still raw, so that each item can fail on its own."""

    requests: list[Any] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)

    def items(self) -> list[Any]:
        """The raw items, those without an image of their own pointed at the shared one."""
        sources = {"image": self.image, "image_url": self.image_url, "image_id": self.image_id}
        shared = {name: value for name, value in sources.items() if value is not None}
        if not shared:
            return list(self.requests)
        return [
            shared | item if isinstance(item, dict) and not set(item) & set(sources) else item
            for item in self.requests
        ]


def parse_batch(raw: Any) -> BatchEnvelope:
    """Validate a batch body's envelope; its items are validated one by one later."""
    if not isinstance(raw, dict):
        raise InvalidRequestError(
            "a batch body is a JSON object with `requests`", code=ErrorCode.INVALID_BATCH
        )
    try:
        return BatchEnvelope.model_validate(raw)
    except ValidationError as exc:
        raise invalid_request(exc) from None


def _code_for(err: Any) -> ErrorCode:
    kind = err["type"]
    if kind in _CODES:
        return ErrorCode(kind)
    if kind == "extra_forbidden":
        return ErrorCode.UNKNOWN_FIELD
    fields = [part for part in err["loc"] if isinstance(part, str)]
    for field in reversed(fields):
        if field in _FIELD_CODES:
            return _FIELD_CODES[field]
        if field in _KNOBS:
            return ErrorCode.INVALID_PARAMETER
    if kind in _VALUE_ERRORS:
        return ErrorCode.INVALID_PARAMETER
    return ErrorCode.INVALID_REQUEST
