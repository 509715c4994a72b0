"""Fetching `image_url`: the gateway downloads an image for its client without becoming a way
into the network it runs in (server-side request forgery).

- `https` only, unless `image_url_allow_http`; no `user:password@` in the URL.
- Every address the host resolves to must be public: no private, loopback, link-local (cloud
  metadata at 169.254.169.254 included), shared, multicast, reserved or unspecified address,
  nor an IPv6 form of one. The check runs in the resolver the connection itself uses, so the
  address checked is the address connected to (a name that resolves to a public address for
  the check and a private one for the connection gets nowhere). Networks an operator trusts
  (an internal image store) are let through by `image_url_allowed_networks`, and only those.
- Redirects are followed here, at most MAX_REDIRECTS, each checked like the first URL.
- At most `image_url_max_bytes` bytes (Content-Length checked first, then every byte counted
  as it arrives, after content decoding: a compressed bomb stops at the limit too) within
  `image_url_timeout_s` for the whole exchange, redirects included.
- What comes back must be an image by its bytes (the caller probes them); Content-Type is not
  trusted either way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from sam2_contract.errors import ErrorCode, InvalidRequestError, PayloadTooLargeError
from sam2_contract.models import MAX_URL_LENGTH
from yarl import URL

MAX_REDIRECTS = 5
CHUNK_BYTES = 64 * 1024
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class ForbiddenAddressError(Exception):
    """The host resolved to an address the gateway must not connect to."""


def is_public(address: Address) -> bool:
    """Whether `address` is on the public internet (IPv4 inside IPv6 judged as IPv4)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or _nat64(address)
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not address.is_multicast


def _nat64(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address in ipaddress.IPv6Network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def allowed(address: Address, networks: Sequence[Network]) -> bool:
    return is_public(address) or any(address in network for network in networks)


class GuardedResolver(AbstractResolver):
    """Resolves through `base` and refuses a host if any of its addresses is not allowed."""

    def __init__(self, base: AbstractResolver, networks: Sequence[Network]) -> None:
        self.base = base
        self.networks = networks

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.base.resolve(host, port, family)
        refused = [r["host"] for r in results if not allowed(_ip(r["host"]), self.networks)]
        if refused:
            raise ForbiddenAddressError(f"{host} resolves to {refused[0]}, which is not public")
        return results

    async def close(self) -> None:
        await self.base.close()


class ImageFetcher:
    """Downloads images by URL under the limits above; one connection pool for the gateway."""

    def __init__(
        self,
        *,
        max_bytes: int,
        timeout_s: float,
        allow_http: bool = False,
        allowed_networks: Sequence[str] = (),
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.schemes = {"https", "http"} if allow_http else {"https"}
        self.networks = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver = GuardedResolver(self._resolver or ThreadedResolver(), self.networks)
            connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, limit=64)
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,  # never a proxy from the environment
                headers={"User-Agent": "sam2-gateway (image_url fetcher)"},
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def fetch(self, url: str) -> bytes:
        """The bytes at `url`, or an InvalidRequestError / PayloadTooLargeError that says why
        not. Each URL of the redirect chain is checked before it is requested."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._follow(url)
        except TimeoutError:
            raise _unreachable(
                f"{_shown(url)} did not answer within {self.timeout_s:g} s"
            ) from None

    async def _follow(self, url: str) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            target = self._check(url)
            with _translated(url, "fetching"):
                async with self._client().get(
                    target, allow_redirects=False, max_line_size=8190, max_field_size=8190
                ) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        location = response.headers.get("Location")
                        if not location:
                            raise _unreachable(f"{_shown(url)} redirects without a Location")
                        url = urljoin(str(target), location)
                        continue
                    if response.status != 200:
                        raise _unreachable(f"{_shown(url)} answered HTTP {response.status}")
                    return await self._read(response, url)
        raise _unreachable(f"more than {MAX_REDIRECTS} redirects")

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST `body` to `url` under the same address rules (no redirect is followed); the
        answer's status, or the same InvalidRequestError as `fetch` when it cannot be sent."""
        target = self._check(url)
        try:
            async with asyncio.timeout(self.timeout_s):
                with _translated(url, "sending to"):
                    async with self._client().post(
                        target, data=body, headers=headers, allow_redirects=False
                    ) as response:
                        return response.status
        except TimeoutError:
            late = f"{_shown(url)} did not answer within {self.timeout_s:g} s"
            raise _unreachable(late) from None

    def check(self, url: str) -> None:
        """Raise the InvalidRequestError `fetch` would for the URL's form (scheme, host,
        credentials, an IP literal's address), before anything is sent."""
        self._check(url)

    def _check(self, url: str) -> URL:
        """The URL, parsed, if its form is allowed; an IP literal is checked here (aiohttp
        resolves no IP literal, so the resolver never sees it)."""
        if len(url) > MAX_URL_LENGTH:
            raise _invalid(f"the URL is longer than {MAX_URL_LENGTH} characters")
        try:
            parsed = URL(url, encoded=False)
        except (ValueError, TypeError):
            raise _invalid("not a URL") from None
        if parsed.scheme not in self.schemes:
            if parsed.scheme in ("http", "https"):
                raise _forbidden(
                    f"{_shown(url)} is plain http; this gateway fetches https URLs only"
                )
            raise _invalid(f"the scheme must be {' or '.join(sorted(self.schemes))}")
        if not parsed.host:
            raise _invalid("the URL has no host")
        if parsed.user is not None or parsed.password is not None:
            raise _invalid("credentials in the URL (user:password@) are not sent")
        literal = _maybe_ip(parsed.host)
        if literal is not None and not allowed(literal, self.networks):
            raise _forbidden(f"{parsed.host} is not a public address")
        return parsed

    async def _read(self, response: aiohttp.ClientResponse, url: str) -> bytes:
        declared = response.content_length
        if declared is not None and declared > self.max_bytes:
            raise _too_large(url, f"{declared} bytes", self.max_bytes)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            size += len(chunk)
            if size > self.max_bytes:
                raise _too_large(url, "larger", self.max_bytes)
            chunks.append(chunk)
        return b"".join(chunks)


@contextmanager
def _translated(url: str, doing: str) -> Iterator[None]:
    """A refused address or a failed connection as the problem the caller gets."""
    try:
        yield
    except ForbiddenAddressError as exc:
        raise _forbidden(str(exc)) from None
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, ForbiddenAddressError):
            raise _forbidden(str(exc.os_error)) from None
        raise _unreachable(f"cannot connect to {_shown(url)}") from None
    except aiohttp.ClientError as exc:
        raise _unreachable(f"{doing} {_shown(url)} failed: {type(exc).__name__}") from None


def _ip(host: str) -> Address:
    return ipaddress.ip_address(host.split("%", 1)[0])  # an IPv6 zone id is not part of it


def _maybe_ip(host: str) -> Address | None:
    try:
        return _ip(host.strip("[]"))
    except ValueError:
        return None


def _shown(url: str) -> str:
    """The URL for an error message: scheme, host and path, no query (it may hold a token)."""
    try:
        parsed = URL(url)
        return str(parsed.with_query(None).with_fragment(None).with_user(None))[:200]
    except (ValueError, TypeError):
        return "the URL"


def _invalid(detail: str) -> InvalidRequestError:
    return InvalidRequestError(f"image_url: {detail}", code=ErrorCode.INVALID_IMAGE_URL)


def _forbidden(detail: str) -> InvalidRequestError:
    return InvalidRequestError(f"image_url: {detail}", code=ErrorCode.IMAGE_URL_FORBIDDEN)


def _unreachable(detail: str) -> InvalidRequestError:
    return InvalidRequestError(f"image_url: {detail}", code=ErrorCode.IMAGE_URL_UNREACHABLE)


def _too_large(url: str, size: str, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the image at {_shown(url)} is {size}; the limit is {limit} bytes",
        code=ErrorCode.IMAGE_TOO_LARGE,
    )
