"""Resources (`client.videos`, and those that follow) as openai-python builds them: a resource
holds its client and calls only the client's public request primitives, bound here."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Sequence
from typing import Any, Protocol

from sam2_sdk._http import FilePart


class SyncRequester(Protocol):
    """What a sync resource needs of its client: Sam2Client's request primitives."""

    def request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        files: Sequence[FilePart] | None = None,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]: ...

    def stream(self, path: str, body: dict[str, Any] | None) -> Generator[str, None, None]: ...

    def download(self, path: str) -> bytes: ...


class AsyncRequester(Protocol):
    """What an async resource needs of its client: AsyncSam2Client's request primitives."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        files: Sequence[FilePart] | None = None,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]: ...

    def stream(self, path: str, body: dict[str, Any] | None) -> AsyncGenerator[str, None]: ...

    async def download(self, path: str) -> bytes: ...


class SyncAPIResource:
    def __init__(self, client: SyncRequester) -> None:
        self._client = client
        self._request = client.request
        self._stream = client.stream
        self._download = client.download


class AsyncAPIResource:
    def __init__(self, client: AsyncRequester) -> None:
        self._client = client
        self._request = client.request
        self._stream = client.stream
        self._download = client.download
