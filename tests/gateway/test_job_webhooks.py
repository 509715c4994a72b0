"""Batch jobs' webhooks (issue 30): a local receiver (an address the gateway is told to
allow, as tests/gateway/test_image_sources.py does for image URLs) gets the job's end,
signed in the Standard Webhooks format with the key's secret, which the SDK verifies in one
call; a tampered delivery fails it; a 500 is retried with the same webhook-id; a rotation
signs with both secrets for a while; private addresses are refused, at creation and at
delivery; a browser token cannot read the secret."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sam2_sdk import WebhookVerificationError, verify_webhook
from support import RunningServer, bearer, image_b64

CLICK = {"point_coords": [[40, 30]], "point_labels": [1]}


class Receiver:
    """Records each delivery; answers the statuses in `answers` in turn, then 204."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.got.append((dict(self.headers.items()), body))
                status = receiver.answers.pop(0) if receiver.answers else 204
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait(self, count: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.got) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.got) >= count, f"{len(self.got)} deliveries, {count} expected"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    threading.Thread(target=receiver.server.serve_forever, daemon=True).start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def hooks_gateway(
    make_client: Callable[..., TestClient], inference_server: RunningServer
) -> TestClient:
    return make_client(
        inference_url=inference_server.url,
        job_workers=2,
        webhook_allow_http=True,
        webhook_allowed_networks=["127.0.0.1/32"],
        webhook_retry_s=0.2,
    )


def _job(client: TestClient, auth: dict[str, str], webhook_url: str) -> str:
    image_id = client.post(
        "/v1/segment", json={"image": image_b64("landscape")} | CLICK, headers=auth
    ).json()["image_id"]
    body = {"request": CLICK, "items": [{"image_id": image_id}], "webhook_url": webhook_url}
    created = client.post("/v1/jobs", json=body, headers=auth)
    assert created.status_code == 201, created.text
    return str(created.json()["job_id"])


def _info_when(client: TestClient, job_id: str, auth: dict[str, str], state: str) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
        if (info.get("webhook") or {}).get("state") == state:
            return info
        time.sleep(0.05)
    raise AssertionError(f"webhook not {state}: {info}")


def test_a_signed_webhook_reaches_the_receiver_and_a_tampered_one_fails(
    hooks_gateway: TestClient, new_key: Callable[..., str], receiver: Receiver
) -> None:
    auth = bearer(new_key("segment auto jobs"))
    receiver.answers = [500]  # the first attempt fails: sent again
    job_id = _job(hooks_gateway, auth, receiver.url)
    receiver.wait(2)
    info = _info_when(hooks_gateway, job_id, auth, "sent")
    assert (info["state"], info["webhook"]["attempts"]) == ("done", 2)
    secret = hooks_gateway.get("/v1/webhooks/secret", headers=auth).json()["secret"]
    assert secret.startswith("whsec_")
    (first, _), (headers, body) = receiver.got[0], receiver.got[1]
    assert first["webhook-id"] == headers["webhook-id"]  # one message, two attempts
    verify_webhook(body, headers, secret)
    assert b'"type":"job.done"' in body
    assert job_id.encode() in body
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body.replace(b"done", b"cancelled"), headers, secret)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body, headers, "whsec_" + "QUFBQQ==")


def test_after_a_rotation_both_secrets_verify_for_a_while(
    hooks_gateway: TestClient, new_key: Callable[..., str], receiver: Receiver
) -> None:
    auth = bearer(new_key("segment auto jobs"))
    old = hooks_gateway.get("/v1/webhooks/secret", headers=auth).json()["secret"]
    rotated = hooks_gateway.post("/v1/webhooks/secret/rotate", headers=auth).json()
    assert rotated["secret"] != old
    assert rotated["previous"] == [old]
    _job(hooks_gateway, auth, receiver.url)
    receiver.wait(1)
    headers, body = receiver.got[0]
    assert len(headers["webhook-signature"].split()) == 2
    verify_webhook(body, headers, old)
    verify_webhook(body, headers, rotated["secret"])


def test_private_addresses_and_tokens_are_refused(
    make_client: Callable[..., TestClient],
    inference_server: RunningServer,
    new_key: Callable[..., str],
) -> None:
    # Only the strict gateway runs workers: they share the database, and a worker of a
    # gateway that allows loopback would deliver what this one refuses.
    hooks_gateway = make_client(
        inference_url=inference_server.url,
        webhook_allow_http=True,
        webhook_allowed_networks=["127.0.0.1/32"],
    )
    key = new_key("segment auto jobs")
    auth = bearer(key)
    item = {"image_id": "img_" + "0" * 32}
    for url in ("http://10.1.2.3/hook", "ftp://example.com/hook", "https://user:pw@example.com/"):
        refused = hooks_gateway.post(
            "/v1/jobs", json={"request": CLICK, "items": [item], "webhook_url": url}, headers=auth
        )
        assert refused.status_code == 422, url
        assert refused.json()["code"] == "invalid_webhook_url"
        assert refused.json()["hint"]
    # A name that resolves to loopback passes at creation and is refused at delivery.
    strict = make_client(inference_url=inference_server.url, job_workers=2, webhook_retry_s=30.0)
    job_id = _job(strict, auth, "https://localhost/hook")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        webhook = strict.get(f"/v1/jobs/{job_id}", headers=auth).json().get("webhook")
        if webhook and webhook["attempts"]:
            break
        time.sleep(0.05)
    assert webhook["state"] == "pending"  # sent again later, and refused again
    assert "not public" in webhook["error"]
    token = hooks_gateway.post("/v1/auth/token", json={"scopes": ["jobs"]}, headers=auth).json()
    denied = hooks_gateway.get("/v1/webhooks/secret", headers=bearer(token["token"]))
    assert denied.status_code == 403
    assert denied.json()["code"] == "insufficient_scope"
