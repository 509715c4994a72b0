"""Honest outages: when the key store or the rate limiter cannot be reached, every call says
`503 dependency_unavailable` with Retry-After (never 500), and `/readyz` names what is down."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from fastapi.testclient import TestClient
from sam2_gateway.core.store import KeyStore
from support import PEPPER, TcpForwarder, bearer, free_port, service_url

PAST_AUTH = {"mode": "point", "point_coords": [[1, 1]]}  # 422 once authenticated


def _down(response: object, what: str) -> None:
    assert response.status_code == 503, response.text  # type: ignore[attr-defined]
    problem = response.json()  # type: ignore[attr-defined]
    assert problem["code"] == "dependency_unavailable"
    assert what in problem["detail"]
    assert response.headers["retry-after"] == "5"  # type: ignore[attr-defined]
    assert "Traceback" not in response.text  # type: ignore[attr-defined]


def test_rate_limiter_down_fails_closed_with_503(
    make_client: Callable[..., TestClient], new_key: Callable[..., str]
) -> None:
    gateway = make_client(rate_limit_storage=f"async+redis://127.0.0.1:{free_port()}")
    _down(gateway.post("/v1/segment", json=PAST_AUTH, headers=bearer(new_key())), "rate limiter")
    _down(gateway.get("/readyz"), "rate limiter")


def test_key_store_unreachable_answers_503(make_client: Callable[..., TestClient]) -> None:
    url = service_url("SAM2_TEST_POSTGRES_URL")
    parts = urlsplit(url)
    link = TcpForwarder((parts.hostname or "127.0.0.1", parts.port or 5432))
    through = url.replace(parts.netloc.split("@")[-1], f"127.0.0.1:{link.start()}")
    gateway = make_client(database_url=through)
    store = KeyStore(through, PEPPER)
    key, _ = store.create("outage", frozenset({"segment"}), rate_tier="standard")
    store.dispose()
    assert gateway.post("/v1/segment", json=PAST_AUTH, headers=bearer(key.full)).status_code == 422
    link.stop()
    _down(gateway.post("/v1/segment", json=PAST_AUTH, headers=bearer(key.full)), "key store")
    _down(gateway.get("/readyz"), "key store")
