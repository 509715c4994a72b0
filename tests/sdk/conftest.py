"""A real gateway on a real socket, in front of the real inference service, for the SDK."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from pydantic import SecretStr
from sam2_gateway import GatewaySettings, KeyStore, create_app
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
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    store = KeyStore(database, PEPPER)
    key, _ = store.create("sdk", frozenset({"segment", "auto"}), rate_tier="dev")
    yield GatewayServer(url=f"http://127.0.0.1:{port}", key=key.full)
    server.should_exit = True
    thread.join(timeout=10)
    store.dispose()
