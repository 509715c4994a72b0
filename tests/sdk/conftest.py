"""A real gateway on a real socket, in front of the real inference service, for the SDK."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from sam2_gateway import GatewaySettings, KeyStore, create_app
from sam2_inference.serving import BackgroundServer
from support import PEPPER, GatewayServer, RunningServer, free_port


@pytest.fixture(scope="session")
def gateway_server(
    tmp_path_factory: pytest.TempPathFactory, inference_server: RunningServer
) -> Iterator[GatewayServer]:
    from sam2_gateway.core.tokens import generate_private_key_pem

    database = f"sqlite:///{tmp_path_factory.mktemp('sdk') / 'gw.db'}"
    settings = GatewaySettings(
        database_url=database,
        key_pepper=SecretStr(PEPPER),
        jwt_private_key=SecretStr(generate_private_key_pem()),
        inference_url=inference_server.url,
    )
    port = free_port()
    server = BackgroundServer(create_app(settings), "127.0.0.1", port)
    server.start()
    store = KeyStore(database, PEPPER)
    key, _ = store.create("sdk", frozenset({"segment", "auto"}), rate_tier="dev")
    yield GatewayServer(url=f"http://127.0.0.1:{port}", key=key.full)
    server.stop()
    store.dispose()
