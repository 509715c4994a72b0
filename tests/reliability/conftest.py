"""The reliability suite: the local stack attacked and broken on purpose, in CI.

Every check adds a row (what was done, what the clients saw) to a report written to
test-artifacts/reliability.md at the end of the run; docs/reliability.md shows one run's table.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from reliability.report import REPORT, Report
from support import GatewayServer, RunningServer, running_gateway


@pytest.fixture(scope="session")
def report() -> Iterator[Report]:
    collected = Report()
    yield collected
    if collected.rows:
        collected.write(REPORT)


@pytest.fixture(scope="session")
def target(
    tmp_path_factory: pytest.TempPathFactory, inference_server: RunningServer
) -> Iterator[GatewayServer]:
    """The real gateway on a socket in front of the real inference service, with one key."""
    database = f"sqlite:///{tmp_path_factory.mktemp('reliability') / 'gw.db'}"
    with running_gateway(database, inference_server.url, inference_timeout_s=30) as gateway:
        yield gateway
