"""POST /v1/auth/token: trade an API key for a short-lived browser token."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import ValidationError
from sam2_contract.errors import NotFoundError, PermissionDeniedError
from sam2_contract.models import TokenRequest, TokenResponse
from sam2_contract.problems import read_body
from sam2_contract.validation import invalid_request, parse_json

from sam2_gateway.api.deps import CountedPrincipalDep, GatewayDep
from sam2_gateway.api.openapi import request_body

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post(
    "/token",
    response_model=TokenResponse,
    openapi_extra=request_body(TokenRequest, required=False),
)
async def create_token(
    request: Request, principal: CountedPrincipalDep, gateway: GatewayDep
) -> TokenResponse:
    """A JWT for a browser app to call the API with, so that it never holds the API key."""
    if principal.via != "api_key":
        raise PermissionDeniedError("tokens are issued for API keys only, not for other tokens")
    empty = request.headers.get("content-length", "0") == "0"
    body = b"{}" if empty else await read_body(request, 16 * 1024)
    try:
        asked = TokenRequest.model_validate(parse_json(body))
    except ValidationError as exc:
        raise invalid_request(exc) from None
    scopes = frozenset(asked.scopes) if asked.scopes is not None else principal.scopes
    if not scopes <= principal.scopes:
        extra = ", ".join(sorted(scopes - principal.scopes))
        raise PermissionDeniedError(f"the key does not carry: {extra}")
    ttl = min(asked.ttl_s or gateway.settings.token_ttl_s, gateway.settings.token_ttl_s)
    token, claims = gateway.signer.issue(principal.key_id, scopes, ttl)
    return TokenResponse(
        token=token, expires_in=ttl, expires_at=claims.expires_at, scope=" ".join(sorted(scopes))
    )


@router.post("/dev-token", response_model=TokenResponse, include_in_schema=False)
async def create_dev_token(request: Request, gateway: GatewayDep) -> TokenResponse:
    """The local stack's playground token, without credentials: development mode only."""
    settings = gateway.settings
    key_id = settings.dev_token_key_id
    if settings.environment != "development" or key_id is None:
        raise NotFoundError(f"there is no {request.url.path}")
    record = await gateway.store.aget(key_id)
    if record is None or record.revoked_at is not None:
        raise NotFoundError(f"there is no {request.url.path}")
    token, claims = gateway.signer.issue(key_id, record.scopes, settings.token_ttl_s)
    return TokenResponse(
        token=token,
        expires_in=settings.token_ttl_s,
        expires_at=claims.expires_at,
        scope=" ".join(sorted(record.scopes)),
    )
