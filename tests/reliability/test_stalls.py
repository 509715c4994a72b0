"""Stall drills: Redis, PostgreSQL and inference frozen (they accept connections and never
answer, as after SIGSTOP, a failover or a black-holed network) while clients keep calling
through the real gateway; how long their answers took, what they were, and how long the
gateway took to serve again after the dependency thawed."""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from reliability.report import Report
from reliability.test_drills import CLICK, _inference_process
from support import GatewayServer, TcpForwarder, bearer, free_port, running_gateway, service_url

CLIENTS = 4  # clicking at once, as a page's users would
CLICKS = 8  # each, while the dependency is frozen
CLIENT_TIMEOUT_S = 15.0  # a hung click shows as this long, not as a hung test
READYZ_TIMEOUT_S = 2.0


@dataclass
class Timed:
    seconds: float
    status: int
    code: str
    retry_after: str | None


def _click(gateway: GatewayServer) -> Timed:
    started = time.monotonic()
    try:
        answer = httpx.post(
            f"{gateway.url}/v1/segment",
            json=CLICK,
            headers=bearer(gateway.key),
            timeout=CLIENT_TIMEOUT_S,
        )
    except httpx.TimeoutException:
        return Timed(time.monotonic() - started, 0, "client timeout", None)
    code = answer.json().get("code", "") if answer.status_code != 200 else ""
    return Timed(
        time.monotonic() - started, answer.status_code, code, answer.headers.get("retry-after")
    )


def _clicks_at_once(gateway: GatewayServer) -> list[Timed]:
    with ThreadPoolExecutor(CLIENTS) as pool:
        runs = [
            pool.submit(lambda: [_click(gateway) for _ in range(CLICKS)]) for _ in range(CLIENTS)
        ]
        return [timed for run in runs for timed in run.result()]


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def _recovery_s(gateway: GatewayServer) -> float:
    """Seconds from now until a click is answered 200 again (clicking every 0.1 s)."""
    started = time.monotonic()
    while _click(gateway).status != 200:
        assert time.monotonic() - started < 30, "the gateway did not recover within 30 s"
        time.sleep(0.1)
    return time.monotonic() - started


def _stall_drill(
    gateway: GatewayServer,
    freeze: Callable[[], None],
    thaw: Callable[[], None],
    expected: set[tuple[int, str]],
    name: str,
) -> tuple[list[Timed], httpx.Response, float, float]:
    """Clicks before, during and after a stall; /readyz during it (and how long it took)."""
    assert _click(gateway).status == 200
    freeze()
    try:
        during = _clicks_at_once(gateway)
        started = time.monotonic()
        ready = httpx.get(f"{gateway.url}/readyz", timeout=CLIENT_TIMEOUT_S)
        ready_s = time.monotonic() - started
    finally:
        thaw()
    recovery = _recovery_s(gateway)
    assert {(t.status, t.code) for t in during} <= expected, _summary(during)
    assert ready.status_code == 503, ready.text
    assert name in ready.json()["detail"]
    assert ready_s < READYZ_TIMEOUT_S + 0.5, f"/readyz took {ready_s:.2f} s"
    assert recovery < 5.0, f"recovered in {recovery:.1f} s"
    return during, ready, ready_s, recovery


def _summary(during: list[Timed]) -> str:
    kinds: dict[str, int] = {}
    for t in during:
        kind = f"{t.status} {t.code}" + (f" (Retry-After {t.retry_after})" if t.retry_after else "")
        kinds[kind] = kinds.get(kind, 0) + 1
    seconds = [t.seconds for t in during]
    return (
        ", ".join(f"{kind} x{n}" for kind, n in sorted(kinds.items()))
        + f"; p50 {statistics.median(seconds) * 1000:.0f} ms, p99 {_p99(seconds) * 1000:.0f} ms, "
        f"max {max(seconds) * 1000:.0f} ms"
    )


@contextmanager
def _forwarded(variable: str) -> Iterator[tuple[TcpForwarder, str]]:
    """The service at `variable`'s URL behind a forwarder we can freeze; the URL through it."""
    url = service_url(variable)
    parts = urlsplit(url)
    link = TcpForwarder((parts.hostname or "127.0.0.1", parts.port or 0))
    port = link.start()
    try:
        yield link, url.replace(parts.netloc.split("@")[-1], f"127.0.0.1:{port}")
    finally:
        link.stop()


def _row(
    report: Report,
    what: str,
    during: list[Timed],
    ready: httpx.Response,
    ready_s: float,
    recovery: float,
) -> None:
    report.add(
        f"{what} frozen",
        f"{CLIENTS} clients clicking; the {what} accepting connections and never answering, "
        "then thawed",
        f"while frozen: {_summary(during)}; /readyz {ready.status_code} in {ready_s * 1000:.0f} ms "
        f'("{ready.json()["detail"]}"); after the thaw, clicks answered again in '
        f"{recovery:.1f} s",
    )


@pytest.mark.parametrize(
    ("server", "variable", "name"),
    [
        ("Redis", "SAM2_TEST_REDIS_URL", "rate limiter"),
        ("PostgreSQL", "SAM2_TEST_POSTGRES_URL", "key store"),
    ],
)
def test_dependency_frozen(
    tmp_path: Path,
    inference_server: object,
    report: Report,
    server: str,
    variable: str,
    name: str,
) -> None:
    with _forwarded(variable) as (link, through):
        if server == "Redis":
            where = {"database_url": f"sqlite:///{tmp_path / 'gw.db'}"}
            where["rate_limit_storage"] = "async+" + through
        else:
            where = {"database_url": through}
        with running_gateway(
            where.pop("database_url"),
            inference_server.url,  # type: ignore[attr-defined]
            readyz_timeout_s=READYZ_TIMEOUT_S,
            **where,
        ) as gateway:
            during, ready, ready_s, recovery = _stall_drill(
                gateway, link.freeze, link.thaw, {(503, "dependency_unavailable")}, name
            )
    assert _p99([t.seconds for t in during]) < 2.0, _summary(during)
    assert {t.retry_after for t in during} == {"5"}
    _row(report, server, during, ready, ready_s, recovery)


def test_inference_frozen(tmp_path: Path, checkpoint: Path, report: Report) -> None:
    """SIGSTOP of the inference process. The first clicks wait out the gateway's inference
    timeout (6 s here: the first click embeds the image, 2-4 s on a CPU) and get 504; once the
    health probe has not answered either, clicks get 503 at once."""
    port = free_port()
    with (
        _inference_process(checkpoint, port) as process,
        running_gateway(
            f"sqlite:///{tmp_path / 'gw.db'}",
            f"http://127.0.0.1:{port}",
            inference_timeout_s=6,
            readyz_timeout_s=READYZ_TIMEOUT_S,
        ) as gateway,
    ):
        during, ready, ready_s, recovery = _stall_drill(
            gateway,
            lambda: os.kill(process.pid, signal.SIGSTOP),
            lambda: os.kill(process.pid, signal.SIGCONT),
            {(504, "inference_timeout"), (503, "inference_unavailable")},
            "inference",
        )
    seconds = sorted(t.seconds for t in during)
    # Only the clicks already waiting when the probe found the stall waited out the timeout.
    assert sum(s > 2.0 for s in seconds) <= CLIENTS * 2, _summary(during)
    assert statistics.median(seconds) < 0.5, _summary(during)
    assert {t.retry_after for t in during if t.status == 503} == {"1"}
    _row(report, "inference", during, ready, ready_s, recovery)
