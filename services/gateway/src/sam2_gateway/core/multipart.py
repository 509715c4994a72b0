"""`multipart/form-data` segment bodies: an `image` file part and a `request` part with the
JSON fields.

The body has already been read under the byte limit; this parses it with the contract's form
parser, allowing exactly these two parts, so that a browser's `FormData` or
`curl -F image=@photo.jpg -F 'request={...}'` sends the file as it is, without base64.
"""

from __future__ import annotations

from sam2_contract.errors import ErrorCode, InvalidRequestError
from sam2_contract.forms import MULTIPART, is_multipart, multipart_form
from starlette.datastructures import Headers, UploadFile

PARTS = ("image", "request")

__all__ = ["MULTIPART", "is_multipart", "read_multipart"]


async def read_multipart(headers: Headers, body: bytes) -> tuple[bytes, bytes]:
    """The `request` part's bytes (JSON) and the `image` file's bytes."""
    form_parts = multipart_form(
        headers,
        body,
        parts=PARTS,
        max_files=len(PARTS),
        max_fields=len(PARTS),
        malformed=ErrorCode.INVALID_REQUEST,
        unknown=ErrorCode.INVALID_REQUEST,
        hint="the parts are `image` (the file) and `request` (the JSON fields)",
    )
    async with form_parts as form:
        names = [name for name, _ in form.multi_items()]
        if any(names.count(name) > 1 for name in PARTS):
            raise _invalid("each of `image` and `request` may appear once")
        if "request" not in names:
            raise _invalid("the multipart body has no `request` part (the JSON fields)")
        image = form.get("image")
        if not isinstance(image, UploadFile):
            raise InvalidRequestError(
                "the multipart body has no `image` file part", code=ErrorCode.MISSING_IMAGE
            )
        request = form["request"]
        fields = await request.read() if isinstance(request, UploadFile) else request.encode()
        return fields, await image.read()


def _invalid(detail: str) -> InvalidRequestError:
    return InvalidRequestError(detail, code=ErrorCode.INVALID_REQUEST)
