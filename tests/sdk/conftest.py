"""A real gateway on a real socket, in front of the real inference service, for the SDK."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import GatewayServer, RunningServer, running_gateway


@pytest.fixture(scope="session")
def gateway_server(
    tmp_path_factory: pytest.TempPathFactory, inference_server: RunningServer
) -> Iterator[GatewayServer]:
    database = f"sqlite:///{tmp_path_factory.mktemp('sdk') / 'gw.db'}"
    with running_gateway(database, inference_server.url) as gateway:
        yield gateway
