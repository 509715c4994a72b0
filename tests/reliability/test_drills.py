"""Fault drills: the inference process killed, Redis stopped, PostgreSQL stopped, each while a
client keeps calling through the real gateway; what the client saw during and after."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from reliability.report import Report
from support import TcpForwarder, bearer, free_port, image_b64, running_gateway, service_url

CLICK = {"image": image_b64("portrait"), "point_coords": [[9, 9]], "mask_format": "rle"}


def _seen(answers: list[httpx.Response]) -> str:
    kinds = Counter(
        f"{a.status_code} {a.json().get('code', '')}".strip()
        + (f" (Retry-After {a.headers['retry-after']})" if "retry-after" in a.headers else "")
        for a in answers
    )
    return ", ".join(f"{kind} x{n}" for kind, n in sorted(kinds.items()))


def _calls(url: str, key: str, count: int) -> list[httpx.Response]:
    return [
        httpx.post(f"{url}/v1/segment", json=CLICK, headers=bearer(key), timeout=60)
        for _ in range(count)
    ]


def _wait(condition: Callable[[], bool], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def _inference_process(checkpoint: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "sam2_inference", "serve", "--port", str(port)],
        env=os.environ | {"SAM2_WEIGHTS": str(checkpoint), "SAM2_DEVICE": "cpu"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: _ready(f"http://127.0.0.1:{port}"))
        yield process
    finally:
        process.kill()
        process.wait()


def test_inference_killed_then_restarted(tmp_path: Path, checkpoint: Path, report: Report) -> None:
    port = free_port()
    inference_url = f"http://127.0.0.1:{port}"
    with running_gateway(f"sqlite:///{tmp_path / 'gw.db'}", inference_url) as gateway:
        with _inference_process(checkpoint, port) as process:
            before = _calls(gateway.url, gateway.key, 2)
            process.kill()  # SIGKILL: no goodbye
            process.wait()
            during = _calls(gateway.url, gateway.key, 3)
            ready_during = httpx.get(f"{gateway.url}/readyz", timeout=10)
        with _inference_process(checkpoint, port):
            after = _calls(gateway.url, gateway.key, 2)
    assert [a.status_code for a in before + after] == [200] * 4
    for answer in during:
        assert (answer.status_code, answer.json()["code"]) == (503, "inference_unavailable")
        assert answer.headers["retry-after"] == "1"
    assert ready_during.status_code == 503
    report.add(
        "kill -9 inference",
        "a click client; the inference process killed, then started again",
        f"before: {_seen(before)}; while down: {_seen(during)}, gateway /readyz "
        f"{ready_during.status_code}; after the restart: {_seen(after)} (the upload is "
        "embedded again)",
    )


def _dependency_drill(
    name: str,
    server: str,
    variable: str,
    tmp_path: Path,
    inference_url: str,
    report: Report,
    settings_for: Callable[[str, str], dict[str, str]],
) -> None:
    url = service_url(variable)
    parts = urlsplit(url)
    link = TcpForwarder((parts.hostname or "127.0.0.1", parts.port or 0))
    port = link.start()
    through = url.replace(parts.netloc.split("@")[-1], f"127.0.0.1:{port}")
    changes = settings_for(through, f"sqlite:///{tmp_path / 'gw.db'}")
    database = changes.pop("database_url")
    with running_gateway(database, inference_url, **changes) as gateway:
        before = _calls(gateway.url, gateway.key, 2)
        link.stop()
        during = _calls(gateway.url, gateway.key, 3)
        ready_during = httpx.get(f"{gateway.url}/readyz", timeout=10)
        link = TcpForwarder((parts.hostname or "127.0.0.1", parts.port or 0))
        link.start(port)  # the dependency is back
        try:
            _wait(lambda: _ready(gateway.url), timeout_s=30)
            after = _calls(gateway.url, gateway.key, 2)
        finally:
            link.stop()
    assert [a.status_code for a in before + after] == [200] * 4
    for answer in during:
        assert (answer.status_code, answer.json()["code"]) == (503, "dependency_unavailable")
        assert answer.headers["retry-after"] == "5"
    assert ready_during.status_code == 503
    assert name in ready_during.text
    report.add(
        f"stop {server}",
        f"a click client; the {name}'s connections cut, then restored",
        f"before: {_seen(before)}; while down: {_seen(during)}, /readyz 503 naming the {name}; "
        f"after: {_seen(after)}",
    )


def test_redis_stopped_then_back(tmp_path: Path, inference_server: object, report: Report) -> None:
    _dependency_drill(
        "rate limiter",
        "Redis",
        "SAM2_TEST_REDIS_URL",
        tmp_path,
        inference_server.url,  # type: ignore[attr-defined]
        report,
        lambda through, sqlite: {
            "database_url": sqlite,
            "rate_limit_storage": "async+" + through,
        },
    )


def test_postgresql_stopped_then_back(
    tmp_path: Path, inference_server: object, report: Report
) -> None:
    _dependency_drill(
        "key store",
        "PostgreSQL",
        "SAM2_TEST_POSTGRES_URL",
        tmp_path,
        inference_server.url,  # type: ignore[attr-defined]
        report,
        lambda through, _: {"database_url": through},
    )
