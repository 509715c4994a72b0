"""`multipart/form-data` bodies: an `image` file part and a `request` part with the JSON fields.

The body has already been read under the byte limit; this parses it with Starlette's parser
(python-multipart), allowing exactly these two parts, so that a browser's `FormData` or
`curl -F image=@photo.jpg -F 'request={...}'` sends the file as it is, without base64.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from sam2_contract.errors import ErrorCode, InvalidRequestError
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

MULTIPART = "multipart/form-data"
PARTS = ("image", "request")


def is_multipart(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == MULTIPART


async def read_multipart(headers: Headers, body: bytes, limit: int) -> tuple[bytes, bytes]:
    """The `request` part's bytes (JSON) and the `image` file's bytes."""

    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(
        headers, stream(), max_files=len(PARTS), max_fields=len(PARTS), max_part_size=limit
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise _invalid(f"the multipart body is malformed: {exc.message}") from None
    try:
        names = [name for name, _ in form.multi_items()]
        unexpected = sorted(set(names) - set(PARTS))
        if unexpected:
            raise _invalid(
                f"unexpected part(s) {', '.join(unexpected)}; the parts are `image` (the file) "
                "and `request` (the JSON fields)"
            )
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
    finally:
        await form.close()


def _invalid(detail: str) -> InvalidRequestError:
    return InvalidRequestError(detail, code=ErrorCode.INVALID_REQUEST)
