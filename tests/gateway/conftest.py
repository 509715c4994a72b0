"""Gateway fixtures: a real gateway app on a temporary SQLite store, in front of the real
inference service (tests that never reach inference point it at a closed port)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sam2_gateway import GatewaySettings, create_app
from sam2_gateway.core.store import KeyStore
from support import PEPPER, RunningServer, free_port


@pytest.fixture
def gateway_settings(tmp_path: Path, signing_key: str) -> GatewaySettings:
    return GatewaySettings(
        environment="production",
        database_url=f"sqlite:///{tmp_path / 'gateway.db'}",
        key_pepper=SecretStr(PEPPER),
        jwt_private_key=SecretStr(signing_key),
        inference_url=f"http://127.0.0.1:{free_port()}",  # closed unless a test says otherwise
        cors_origins=["https://app.example.com"],
        max_body_bytes=512 * 1024,
        # Every gateway of a test shares its database: only a test's own runs job workers
        # (otherwise the fixtures' default gateway, whose inference is closed, takes items).
        job_workers=0,
        job_files_dir=tmp_path / "job-files",
    )


MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client(gateway_settings: GatewaySettings) -> Iterator[MakeClient]:
    """Build a gateway client, optionally with changed settings; closes them all at the end."""
    clients: list[TestClient] = []

    def make(**changes: Any) -> TestClient:
        settings = gateway_settings.model_copy(update=changes)
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def gateway(make_client: MakeClient) -> TestClient:
    return make_client()


@pytest.fixture(params=["local", "modal_server"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Gateway settings for each place the one hop reaches: the local inference service, or
    the deployed Modal Server's container code run here (hooks and all)."""
    server: RunningServer = request.getfixturevalue(
        "inference_server" if request.param == "local" else "modal_server"
    )
    return {"inference_url": server.url}


@pytest.fixture
def e2e(make_client: MakeClient, backend: dict[str, Any]) -> TestClient:
    """The gateway in front of the real inference code, through either backend."""
    return make_client(**backend)


@pytest.fixture
def store(gateway_settings: GatewaySettings, gateway: TestClient) -> KeyStore:
    """The gateway's own store (migrated by the app's start-up)."""
    return KeyStore(gateway_settings.database_url, PEPPER)


@pytest.fixture
def new_key(store: KeyStore) -> Callable[..., str]:
    def create(
        scopes: str = "segment auto",
        *,
        tier: str = "standard",
        expires_at: datetime | None = None,
    ) -> str:
        key, _ = store.create(
            "test", frozenset(scopes.split()), rate_tier=tier, expires_at=expires_at
        )
        return key.full

    return create
