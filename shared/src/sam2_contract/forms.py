"""`multipart/form-data` bodies, for both services: parsed once the body has been read under
its byte limit, with only the named parts allowed.

Imports Starlette (python-multipart), as problems.py does: the services' HTTP edge.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import asynccontextmanager

from starlette.datastructures import FormData, Headers
from starlette.formparsers import MultiPartException, MultiPartParser

from sam2_contract.errors import ErrorCode, InvalidRequestError

MULTIPART = "multipart/form-data"


def is_multipart(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == MULTIPART


@asynccontextmanager
async def multipart_form(
    headers: Headers,
    body: bytes,
    *,
    parts: Iterable[str],
    max_files: int,
    max_fields: int,
    malformed: ErrorCode,
    unknown: ErrorCode,
    hint: str,
) -> AsyncIterator[FormData]:
    """The parsed form, closed on leaving. A malformed body raises `malformed`; a part not in
    `parts` raises `unknown`, naming the parts and `hint` (what to send instead)."""

    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    allowed = tuple(parts)
    parser = MultiPartParser(
        headers,
        stream(),
        max_files=max_files,
        max_fields=max_fields,
        max_part_size=len(body) + 1,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidRequestError(
            f"the multipart body is malformed: {exc.message}", code=malformed
        ) from None
    try:
        given = sorted({name for name, _ in form.multi_items()} - set(allowed))
        if given:
            raise InvalidRequestError(
                f"unexpected part(s) {', '.join(given)}; {hint}", code=unknown
            )
        yield form
    finally:
        await form.close()
