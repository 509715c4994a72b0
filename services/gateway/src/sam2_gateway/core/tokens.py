"""Short-lived browser tokens: Ed25519-signed JWTs (PyJWT), verified with an explicit algorithm
list and every claim required, so `alg: none` and HS/RS-style confusion are refused outright.

Why not python-jose (the first design named it): it is dormant, decodes without an algorithm
list, and pulls in `ecdsa`, which has an unfixed timing side channel. See docs/security.md.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ["iss", "aud", "sub", "scope", "exp", "iat", "nbf", "jti"]


class TokenError(ValueError):
    """A token that must be refused; `expired` tells the client to fetch a fresh one."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: str
    scopes: frozenset[str]
    expires_at: int
    token_id: str


def generate_private_key_pem() -> str:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


class TokenSigner:
    """Issues tokens with the current key and verifies them against current and retired keys."""

    def __init__(
        self,
        private_key_pem: str,
        *,
        key_id: str,
        issuer: str,
        audience: str,
        retired_public_keys: dict[str, str] | None = None,
    ) -> None:
        private = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError("the JWT signing key must be an Ed25519 private key")
        self._private = private
        self._key_id = key_id
        self._issuer = issuer
        self._audience = audience
        self._public: dict[str, Ed25519PublicKey] = {key_id: private.public_key()}
        for kid, pem in (retired_public_keys or {}).items():
            public = serialization.load_pem_public_key(pem.encode())
            if not isinstance(public, Ed25519PublicKey):
                raise ValueError(f"retired key {kid!r} is not an Ed25519 public key")
            self._public.setdefault(kid, public)

    def issue(self, subject: str, scopes: frozenset[str], ttl_s: int) -> tuple[str, TokenClaims]:
        now = int(time.time())
        claims = TokenClaims(subject, scopes, now + ttl_s, uuid.uuid4().hex)
        payload = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": subject,
            "scope": " ".join(sorted(scopes)),
            "iat": now,
            "nbf": now,
            "exp": claims.expires_at,
            "jti": claims.token_id,
        }
        token = jwt.encode(
            payload, self._private, algorithm=ALGORITHM, headers={"kid": self._key_id}
        )
        return token, claims

    def verify(self, token: str) -> TokenClaims:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise TokenError("not a JWT") from None
        public = self._public.get(kid) if isinstance(kid, str) else None
        if public is None:
            raise TokenError("unknown signing key id")
        try:
            payload = jwt.decode(
                token,
                public,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": REQUIRED_CLAIMS},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired", expired=True) from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"token refused: {type(exc).__name__}") from None
        return TokenClaims(
            subject=str(payload["sub"]),
            scopes=frozenset(str(payload["scope"]).split()),
            expires_at=int(payload["exp"]),
            token_id=str(payload["jti"]),
        )
