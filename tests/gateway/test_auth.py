"""The auth matrix: every kind of credential, with its exact status and code."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from sam2_gateway import GatewaySettings
from sam2_gateway.core import keys as keys_module
from sam2_gateway.core.keys import generate_key
from sam2_gateway.core.store import KeyStore
from sam2_gateway.core.tokens import generate_private_key_pem
from support import bearer

# A body that passes authentication and then fails validation: reaching 422 `missing_image`
# proves the credential was accepted, without needing the model.
PAST_AUTH = {"mode": "point", "point_coords": [[1, 1]]}


def _segment(client: TestClient, headers: dict[str, str]) -> tuple[int, str]:
    response = client.post("/v1/segment", json=PAST_AUTH, headers=headers)
    assert response.headers["content-type"] == "application/problem+json"
    return response.status_code, response.json()["code"]


def _token(client: TestClient, key: str, **body: object) -> str:
    response = client.post("/v1/auth/token", json=body, headers=bearer(key))
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


def _claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "sam2-gateway",
        "aud": "sam2-api",
        "sub": "placeholder",
        "scope": "segment",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": "j1",
    }
    return claims | changes


def _sign(claims: dict[str, object], pem: str, kid: str = "k1") -> str:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})  # type: ignore[arg-type]


def test_api_key_cases(gateway: TestClient, new_key: Callable[..., str], store: KeyStore) -> None:
    key = new_key()
    forged = generate_key().full  # well-formed, right checksum, never stored
    corrupted = key[:-1] + ("A" if key[-1] != "A" else "B")
    revoked = new_key()
    store.revoke(revoked.split("_")[1])
    expired = new_key(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    wrong_secret = key.split("_")
    wrong_secret[2] = wrong_secret[2][::-1]
    cases = {
        "no credentials": ({}, 401, "missing_credentials"),
        "basic auth": ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "malformed_credentials"),
        "empty bearer": ({"Authorization": "Bearer "}, 401, "malformed_credentials"),
        "bad checksum": (bearer(corrupted), 401, "malformed_credentials"),
        "key-shaped junk": (bearer("sam2_nothing_here"), 401, "malformed_credentials"),
        "unknown key": (bearer(forged), 401, "invalid_api_key"),
        "revoked key": (bearer(revoked), 401, "api_key_revoked"),
        "expired key": (bearer(expired), 401, "api_key_expired"),
        "token in X-API-Key": ({"X-API-Key": "eyJhbGciOi.x.y"}, 401, "malformed_credentials"),
        "valid key (bearer)": (bearer(key), 422, "missing_image"),
        "valid key (X-API-Key)": ({"X-API-Key": key}, 422, "missing_image"),
    }
    for name, (headers, status, code) in cases.items():
        assert _segment(gateway, headers) == (status, code), name
    # A right checksum with a wrong secret is only possible by recomputing it; still refused.
    assert "_".join(wrong_secret) != key


def test_an_unknown_key_id_costs_the_same_work_as_a_wrong_secret(
    gateway: TestClient, new_key: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Key ids cannot be enumerated by timing: the HMAC check runs whether the id exists or
    not (counted on the real function; a timing assertion would be flaky)."""
    import sam2_gateway.api.deps as deps

    checks: list[str] = []
    real = deps.verify_key

    def counted(full: str, stored: str, pepper: str) -> bool:
        checks.append(full)
        return real(full, stored, pepper)

    monkeypatch.setattr(deps, "verify_key", counted)
    existing_id = new_key().split("_")[1]
    fresh = generate_key()
    wrong_secret = fresh.full.replace(fresh.key_id, existing_id)
    wrong_secret = wrong_secret[:-6] + keys_module._checksum(wrong_secret[:-7])
    for candidate in (fresh.full, wrong_secret):
        assert _segment(gateway, bearer(candidate)) == (401, "invalid_api_key")
    assert checks == [fresh.full, wrong_secret]


def test_tokens_and_the_model_list_count_against_the_keys_rate(
    make_client: Callable[..., TestClient], new_key: Callable[..., str]
) -> None:
    gateway = make_client(rate_tiers={"standard": "3/minute"})
    key = bearer(new_key())
    first = gateway.post("/v1/auth/token", headers=key)
    assert first.status_code == 200
    assert first.headers["ratelimit-remaining"] == "2"
    assert gateway.post("/v1/auth/token", headers=key).status_code == 200
    assert gateway.get("/v1/models", headers=key).status_code == 503  # counted; no inference
    for minted in (
        gateway.post("/v1/auth/token", headers=key),
        gateway.get("/v1/models", headers=key),
    ):
        assert (minted.status_code, minted.json()["code"]) == (429, "rate_limited")
        assert int(minted.headers["retry-after"]) >= 1


def test_missing_scope_is_403(gateway: TestClient, new_key: Callable[..., str]) -> None:
    only_points = new_key("segment")
    body = {"image_id": "img_" + "0" * 32, "mode": "auto"}
    response = gateway.post("/v1/segment", json=body, headers=bearer(only_points))
    assert (response.status_code, response.json()["code"]) == (403, "insufficient_scope")


def test_token_cases(
    gateway: TestClient,
    new_key: Callable[..., str],
    gateway_settings: GatewaySettings,
    signing_key: str,
) -> None:
    key = new_key()
    key_id = key.split("_")[1]
    valid = _token(gateway, key)
    other_pem = generate_private_key_pem()
    public_pem = (
        serialization.load_pem_private_key(signing_key.encode(), password=None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    now = int(time.time())
    header, payload, signature = valid.split(".")
    no_jti = {k: v for k, v in _claims(sub=key_id).items() if k != "jti"}
    bad = (401, "invalid_token")
    cases = {
        "valid token": (valid, (422, "missing_image")),
        "expired": (_sign(_claims(sub=key_id, exp=now - 60), signing_key), (401, "token_expired")),
        "not yet valid": (_sign(_claims(sub=key_id, nbf=now + 600), signing_key), bad),
        "wrong audience": (_sign(_claims(sub=key_id, aud="someone-else"), signing_key), bad),
        "wrong issuer": (_sign(_claims(sub=key_id, iss="evil"), signing_key), bad),
        "bad signature": (_sign(_claims(sub=key_id), other_pem), bad),
        "tampered payload": (f"{header}.{payload}x.{signature}", bad),
        "alg none": (jwt.encode(_claims(sub=key_id), None, algorithm="none"), bad),
        "HS256 with the public key": (_hs256(_claims(sub=key_id), public_pem, "k1"), bad),
        "unknown kid": (_sign(_claims(sub=key_id), signing_key, kid="k9"), bad),
        "missing jti": (_sign(no_jti, signing_key), bad),
        "not a JWT": ("hello", bad),
    }
    for name, (token, expected) in cases.items():
        assert _segment(gateway, bearer(token)) == expected, name


def _hs256(claims: dict[str, object], secret: bytes, kid: str) -> str:
    """An attacker's token: HMAC-signed with the server's public key as the secret."""
    import base64
    import hashlib
    import hmac
    import json

    def part(data: dict[str, object]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{part(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def test_tokens_are_short_lived_scoped_and_die_with_their_key(
    gateway: TestClient, new_key: Callable[..., str], store: KeyStore
) -> None:
    key = new_key("segment auto")
    answer = gateway.post(
        "/v1/auth/token", json={"scopes": ["segment"], "ttl_s": 60}, headers=bearer(key)
    ).json()
    assert answer["token_type"] == "Bearer"
    assert answer["expires_in"] == 60
    claims = jwt.decode(answer["token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 60
    assert claims["scope"] == "segment"
    assert claims["sub"] == key.split("_")[1]
    assert jwt.get_unverified_header(answer["token"])["kid"] == "k1"
    token = answer["token"]
    auto = gateway.post(
        "/v1/segment", json={"image_id": "img_" + "0" * 32, "mode": "auto"}, headers=bearer(token)
    )
    assert auto.json()["code"] == "insufficient_scope"
    # No token from a token, no scope the key lacks, never longer than 15 minutes.
    assert gateway.post("/v1/auth/token", headers=bearer(token)).status_code == 403
    assert (
        gateway.post("/v1/auth/token", json={"scopes": ["admin"]}, headers=bearer(key)).status_code
        == 403
    )
    too_long = gateway.post("/v1/auth/token", json={"ttl_s": 3600}, headers=bearer(key))
    assert (too_long.status_code, too_long.json()["code"]) == (422, "invalid_parameter")
    not_a_number = gateway.post("/v1/auth/token", json={"ttl_s": True}, headers=bearer(key))
    assert (not_a_number.status_code, not_a_number.json()["code"]) == (422, "invalid_parameter")
    store.revoke(key.split("_")[1])
    assert _segment(gateway, bearer(token)) == (401, "api_key_revoked")


def test_revocation_takes_effect_on_the_next_request(
    gateway: TestClient, new_key: Callable[..., str], store: KeyStore
) -> None:
    key = new_key()
    assert _segment(gateway, bearer(key)) == (422, "missing_image")
    store.revoke(key.split("_")[1])
    assert _segment(gateway, bearer(key)) == (401, "api_key_revoked")


def test_the_database_holds_no_plaintext_key(
    gateway: TestClient, new_key: Callable[..., str], gateway_settings: GatewaySettings
) -> None:
    key = new_key()
    _segment(gateway, bearer(key))
    db_file = Path(gateway_settings.database_url.removeprefix("sqlite:///"))
    content = db_file.read_bytes()
    secret = key.split("_")[2]
    assert key.split("_")[1].encode() in content  # the id is stored, so the check is real
    assert key.encode() not in content
    assert secret.encode() not in content


def test_production_refuses_placeholder_secrets(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="SAM2_GATEWAY_KEY_PEPPER"):
        GatewaySettings(environment="production", key_pepper="change-me", jwt_private_key="x" * 10)


def test_dev_tokens_only_in_development(gateway: TestClient) -> None:
    """Outside development the credential-free token route does not exist."""
    response = gateway.post("/v1/auth/dev-token")
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
