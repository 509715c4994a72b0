"""Request dependencies: the gateway's parts, and the authenticated caller."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Depends, Request, Response
from sam2_contract.errors import AuthenticationError, ErrorCode, PermissionDeniedError

from sam2_gateway.core.answers import AnswerMemory
from sam2_gateway.core.config import GatewaySettings
from sam2_gateway.core.fetch import ImageFetcher
from sam2_gateway.core.job_files import JobFiles
from sam2_gateway.core.jobs import JobStore
from sam2_gateway.core.keys import MalformedKeyError, looks_like_key, parse_key, verify_key
from sam2_gateway.core.metering import UsageMeter
from sam2_gateway.core.ratelimit import RateLimiter
from sam2_gateway.core.store import KeyRecord, KeyStore
from sam2_gateway.core.tokens import TokenError, TokenSigner
from sam2_gateway.hop import InferenceBackend

log = logging.getLogger(__name__)

SCOPES = frozenset({"segment", "auto", "video", "jobs", "admin"})
_NO_SUCH_KEY_HASH = "0" * 64  # an HMAC-SHA256 hex digest that no key has


@dataclass(frozen=True, slots=True)
class Gateway:
    """Everything a route needs, built once per app."""

    settings: GatewaySettings
    store: KeyStore
    signer: TokenSigner
    limiter: RateLimiter
    backend: InferenceBackend
    meter: UsageMeter
    fetcher: ImageFetcher
    answers: AnswerMemory
    jobs: JobStore
    webhooks: ImageFetcher
    """Posts batch jobs' webhooks under the same address rules as image URLs (its own)."""
    job_files: JobFiles


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key (also the tenant whose cache entries they may use)."""

    key_id: str
    scopes: frozenset[str]
    rate_tier: str
    via: Literal["api_key", "token"]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise PermissionDeniedError(f"this credential lacks the `{scope}` scope")


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


async def get_principal(request: Request, gateway: GatewayDep) -> Principal:
    principal = await _authenticate(request, gateway)
    request.state.key_id = principal.key_id  # for the access log
    return principal


async def _authenticate(request: Request, gateway: Gateway) -> Principal:
    credential = _credential(request)
    if looks_like_key(credential):
        record = await _check_key(gateway, credential)
        return Principal(record.key_id, record.scopes, record.rate_tier, "api_key")
    try:
        claims = gateway.signer.verify(credential)
    except TokenError as exc:
        code = ErrorCode.TOKEN_EXPIRED if exc.expired else ErrorCode.INVALID_TOKEN
        raise AuthenticationError(str(exc), code=code) from None
    # The key behind a token is looked up too, so revoking a key ends its tokens at once.
    owner = await _lookup(gateway, claims.subject)
    if owner is None:
        raise AuthenticationError("the token's key no longer exists", code=ErrorCode.INVALID_TOKEN)
    _check_alive(owner)
    return Principal(owner.key_id, claims.scopes & owner.scopes, owner.rate_tier, "token")


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_counted_principal(
    request: Request, response: Response, gateway: GatewayDep
) -> Principal:
    """The caller, with this request counted against their key's rate (429 past it), for the
    routes that run no model (tokens, the model list): they cost little, but not nothing."""
    principal = await get_principal(request, gateway)
    rate = await gateway.limiter.hit(principal.key_id, principal.rate_tier)
    response.headers.update(rate.headers())
    return principal


CountedPrincipalDep = Annotated[Principal, Depends(get_counted_principal)]


def _credential(request: Request) -> str:
    header = request.headers.get("authorization")
    api_key = request.headers.get("x-api-key")
    if header is None and api_key is None:
        raise AuthenticationError("no credentials were sent")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationError(
                "use `Authorization: Bearer <key or token>`",
                code=ErrorCode.MALFORMED_CREDENTIALS,
            )
        return value.strip()
    assert api_key is not None
    if not looks_like_key(api_key.strip()):
        raise AuthenticationError(
            "`X-API-Key` takes an API key, not a token", code=ErrorCode.MALFORMED_CREDENTIALS
        )
    return api_key.strip()


async def _check_key(gateway: Gateway, credential: str) -> KeyRecord:
    try:
        parsed = parse_key(credential)
    except MalformedKeyError as exc:
        raise AuthenticationError(str(exc), code=ErrorCode.MALFORMED_CREDENTIALS) from None
    record = await _lookup(gateway, parsed.key_id)
    pepper = gateway.settings.key_pepper.get_secret_value()
    # One answer, and the same work, for "no such key" and "wrong secret": the HMAC runs
    # against a stand-in hash when the id is unknown, so neither the answer nor its time tells
    # whether a key id exists.
    stored = record.key_hash if record is not None else _NO_SUCH_KEY_HASH
    if not verify_key(parsed.full, stored, pepper) or record is None:
        raise AuthenticationError("the API key is not valid", code=ErrorCode.INVALID_API_KEY)
    _check_alive(record)
    return record


async def _lookup(gateway: Gateway, key_id: str) -> KeyRecord | None:
    return await gateway.store.aget(key_id)  # unreachable or slow: 503 dependency_unavailable


def _check_alive(record: KeyRecord) -> None:
    if record.revoked_at is not None:
        raise AuthenticationError("the API key was revoked", code=ErrorCode.API_KEY_REVOKED)
    if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
        raise AuthenticationError("the API key has expired", code=ErrorCode.API_KEY_EXPIRED)
