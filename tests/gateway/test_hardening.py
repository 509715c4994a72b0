"""Limits and edges: rate limits, CORS, body size, request ids, errors as problem+json."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sam2_gateway.core.logs import JsonFormatter
from support import (
    RunningServer,
    bearer,
    image_b64,
    raw_exchange,
    running_gateway,
    service_url,
)

PAST_AUTH = {"mode": "point", "point_coords": [[1, 1]]}


def test_over_the_rate_limit_gives_429_then_service_resumes(
    make_client: Callable[..., TestClient], new_key: Callable[..., str]
) -> None:
    client = make_client(rate_tiers={"tiny": "3/second"})
    key = new_key(tier="tiny")
    answers = [client.post("/v1/segment", json=PAST_AUTH, headers=bearer(key)) for _ in range(4)]
    assert [a.status_code for a in answers] == [422, 422, 422, 429]
    limited = answers[3]
    assert limited.json()["code"] == "rate_limited"
    assert limited.headers["retry-after"] == "1"
    assert limited.headers["ratelimit-limit"] == "3"
    assert limited.headers["ratelimit-remaining"] == "0"
    assert answers[0].headers["ratelimit-remaining"] == "2"
    time.sleep(1.1)  # the window is one second
    assert client.post("/v1/segment", json=PAST_AUTH, headers=bearer(key)).status_code == 422


def test_limits_are_per_key(
    make_client: Callable[..., TestClient], new_key: Callable[..., str]
) -> None:
    client = make_client(rate_tiers={"tiny": "1/minute"})
    first, second = new_key(tier="tiny"), new_key(tier="tiny")
    assert client.post("/v1/segment", json=PAST_AUTH, headers=bearer(first)).status_code == 422
    assert client.post("/v1/segment", json=PAST_AUTH, headers=bearer(first)).status_code == 429
    assert client.post("/v1/segment", json=PAST_AUTH, headers=bearer(second)).status_code == 422


def test_cors_preflight_allows_listed_origins_only(gateway: TestClient) -> None:
    asked = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    allowed = gateway.options("/v1/segment", headers=asked | {"Origin": "https://app.example.com"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    refused = gateway.options("/v1/segment", headers=asked | {"Origin": "https://evil.example"})
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers


def test_a_browser_on_another_origin_can_revalidate_the_decoder(gateway: TestClient) -> None:
    """The browser SDK sends If-None-Match with the decoder's ETag, and must read the ETag."""
    origin = {"Origin": "https://app.example.com"}
    asked = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization,if-none-match",
    }
    preflight = gateway.options("/v1/models/tiny/decoder.onnx", headers=asked | origin)
    assert preflight.status_code == 200
    assert "if-none-match" in preflight.headers["access-control-allow-headers"].lower()
    answer = gateway.get("/v1/models", headers=origin)
    assert "etag" in answer.headers["access-control-expose-headers"].lower()


def test_large_body_is_413_while_reading(gateway: TestClient, new_key: Callable[..., str]) -> None:
    body = b'{"image": "' + b"A" * (600 * 1024) + b'"}'
    response = gateway.post(
        "/v1/segment",
        content=body,
        headers=bearer(new_key()) | {"content-type": "application/json"},
    )
    assert (response.status_code, response.json()["code"]) == (413, "body_too_large")


def test_every_error_is_problem_json_with_the_request_id(gateway: TestClient) -> None:
    for response in (
        gateway.get("/nowhere", headers={"X-Request-ID": "trace-1"}),
        gateway.delete("/v1/segment", headers={"X-Request-ID": "trace-1"}),
        gateway.post("/v1/segment", json={}, headers={"X-Request-ID": "trace-1"}),
    ):
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["x-request-id"] == "trace-1"
        assert response.json()["request_id"] == "trace-1"
    assert gateway.get("/nowhere").json()["code"] == "not_found"
    assert gateway.delete("/v1/segment").json()["code"] == "method_not_allowed"


def test_access_log_is_json_with_ids_and_never_credentials(
    gateway: TestClient, new_key: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    key = new_key()
    with caplog.at_level(logging.DEBUG):
        token = gateway.post("/v1/auth/token", headers=bearer(key)).json()["token"]
        gateway.post("/v1/segment", json=PAST_AUTH, headers=bearer(token) | {"X-Request-ID": "r-9"})
        gateway.post("/v1/segment", json=PAST_AUTH, headers=bearer(key + "x"))
    lines = [JsonFormatter().format(r) for r in caplog.records]
    access = [json.loads(line) for line in lines if '"msg": "request"' in line]
    assert len(access) == 3
    assert access[1]["request_id"] == "r-9"
    assert access[1]["key_id"] == key.split("_")[1]
    assert [a["status"] for a in access] == [200, 422, 401]
    assert access[2]["key_id"] is None
    text = "\n".join(lines)
    assert key.split("_")[2] not in text
    assert token not in text


def test_concurrent_requests_over_the_tier_get_429(
    make_client: Callable[..., TestClient],
    inference_server: RunningServer,
    new_key: Callable[..., str],
) -> None:
    client = make_client(
        inference_url=inference_server.url,
        concurrency_tiers={"solo": 1},
        rate_tiers={"solo": "1000/minute"},
    )
    _second_call_waits_for_the_first(client, client, new_key(tier="solo"))


def test_a_keys_concurrency_limit_holds_across_gateway_replicas(
    make_client: Callable[..., TestClient],
    inference_server: RunningServer,
    new_key: Callable[..., str],
) -> None:
    """Two gateways sharing Redis (several replicas on Modal) count one key's requests in
    flight together: a second replica does not double the key's concurrency."""
    shared = {
        "inference_url": inference_server.url,
        "concurrency_tiers": {"solo": 1},
        "rate_tiers": {"solo": "1000/minute"},
        "rate_limit_storage": "async+" + service_url("SAM2_TEST_REDIS_URL"),
    }
    one, other = make_client(**shared), make_client(**shared)
    _second_call_waits_for_the_first(one, other, new_key(tier="solo"))


def _second_call_waits_for_the_first(first: TestClient, second: TestClient, key: str) -> None:
    """While a slow call of a one-slot key runs on `first`, a call on `second` gets
    `429 too_many_concurrent`; once it is over the key works again."""
    slow = {"image": image_b64("landscape"), "mode": "auto", "points_per_side": 8}
    running_status: dict[str, int] = {}

    def run_slow() -> None:
        # Until it gets the slot: a probe below may hold it for the moment it takes.
        while (
            status := first.post("/v1/segment", json=slow, headers=bearer(key))
        ).status_code == 429:
            time.sleep(0.05)
        running_status["status"] = status.status_code

    running = threading.Thread(target=run_slow)
    running.start()
    refused = second.post("/v1/segment", json=PAST_AUTH, headers=bearer(key))
    while refused.status_code != 429 and running.is_alive():  # until the slow call holds the slot
        time.sleep(0.05)
        refused = second.post("/v1/segment", json=PAST_AUTH, headers=bearer(key))
    running.join()
    assert running_status["status"] == 200
    assert (refused.status_code, refused.json()["code"]) == (429, "too_many_concurrent")
    assert refused.headers["retry-after"] == "1"
    assert second.post("/v1/segment", json=PAST_AUTH, headers=bearer(key)).status_code == 422


def test_the_head_limit_is_32_kib_exactly_whatever_the_pieces_it_arrives_in(
    tmp_path: Path,
) -> None:
    """The documented limit: a head of 32 KiB (request line, headers and the blank line) is
    served; one byte more, or 33-35 KiB, is 431, sent whole or in odd pieces."""
    with running_gateway(f"sqlite:///{tmp_path / 'keys.db'}", "http://127.0.0.1:9") as gateway:
        port = int(gateway.url.rsplit(":", 1)[1])
        for size, status in [
            (32 << 10, b"401"),
            ((32 << 10) + 1, b"431"),
            (33 << 10, b"431"),
            (35 << 10, b"431"),
        ]:
            head = _head_of(size)
            assert len(head) == size
            assert raw_exchange(port, head).startswith(b"HTTP/1.1 " + status), size
            assert _sent_in_pieces(port, head, 1000).startswith(b"HTTP/1.1 " + status), size


def _head_of(total: int) -> bytes:
    """A GET whose whole head is `total` bytes."""
    bare = len(_get(0, close=True))
    return _get(total - bare, close=True)


def _sent_in_pieces(port: int, data: bytes, size: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(ConnectionError):
            for at in range(0, len(data), size):
                sock.sendall(data[at : at + size])
                time.sleep(0.001)
        answer = b""
        with contextlib.suppress(ConnectionError, TimeoutError):
            while chunk := sock.recv(65536):
                answer += chunk
    return answer


def _get(header_bytes: int, *, close: bool = False) -> bytes:
    padding = b"x" * header_bytes
    connection = b"close" if close else b"keep-alive"
    return b"GET /v1/models HTTP/1.1\r\nhost: t\r\nx-padding: %s\r\nconnection: %s\r\n\r\n" % (
        padding,
        connection,
    )


def test_request_heads_over_32_kib_get_431_and_the_connection_closes(tmp_path: Path) -> None:
    with running_gateway(f"sqlite:///{tmp_path / 'keys.db'}", "http://127.0.0.1:9") as gateway:
        port = int(gateway.url.rsplit(":", 1)[1])
        # 20 KiB heads are served, twice on one connection (the count starts again per request).
        twice = raw_exchange(port, _get(20 << 10) + _get(20 << 10, close=True))
        assert twice.count(b"HTTP/1.1 401") == 2
        # A 32 MB header: refused after the first 32 KiB, not read to the end.
        refused = raw_exchange(port, _get(32 << 20))
        head, _, body = refused.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431")
        assert b"content-type: application/problem+json" in head
        problem = json.loads(body)
        assert (problem["status"], problem["code"]) == (431, "headers_too_large")
        assert "32 KiB" in problem["hint"]
        # The server goes on serving.
        assert httpx.get(f"{gateway.url}/healthz", timeout=10).status_code == 200
