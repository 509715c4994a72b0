"""Images by URL (fetched by the gateway, as an attacker would try to misuse it) and by
multipart upload, each answered as the same image sent in base64.

The DNS resolver is the boundary replaced here (`StubResolver`): names map to the addresses a
hostile DNS server could give. The image host is a real HTTP server on 127.0.0.1, which the
gateway is told to trust (`image_url_allowed_networks`), as an operator would an internal
image store; every other non-public address stays refused.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import numpy as np
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from fastapi.testclient import TestClient
from sam2_contract import decode_mask
from sam2_contract.overlay import decode_overlay
from sam2_gateway import GatewaySettings, create_app
from sam2_gateway.core.fetch import is_public
from sam2_gateway.core.store import KeyStore
from support import IMAGES, PEPPER, RunningServer, b64, bearer, encode, post_segment

PHOTO = encode(IMAGES["landscape"])
CLICK = {"point_coords": [[100, 50]], "mask_format": "rle"}
MAX_BYTES = 200_000
TIMEOUT_S = 1.5


class ImageHost(BaseHTTPRequestHandler):
    """What a web server (or an attacker's) can answer."""

    hits: Counter[str]

    def do_GET(self) -> None:
        self.hits[self.path] += 1
        path, _, query = self.path.partition("?")
        if path in ("/photo.png", "/photo-as-text"):
            kind = "image/png" if path == "/photo.png" else "text/plain"
            self._send(200, PHOTO, kind)
        elif path == "/fake.png":
            self._send(200, b"<html>not an image</html>", "image/png")
        elif path == "/big":
            self._send(200, b"\0" * (MAX_BYTES + 1), "image/png")
        elif path == "/endless":  # no Content-Length: counted as it arrives
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"\0" * 65536)
        elif path == "/bomb":  # 40 KiB on the wire, 40 MiB decompressed
            bomb = gzip.compress(b"\0" * (40 << 20))
            self._send(200, bomb, "image/png", {"Content-Encoding": "gzip"})
        elif path == "/slow":
            time.sleep(TIMEOUT_S * 3)
            self._send(200, PHOTO, "image/png")
        elif path == "/redirect":
            self._send(302, b"", "text/plain", {"Location": query.removeprefix("to=")})
        elif path == "/loop":
            self._send(302, b"", "text/plain", {"Location": "/loop"})
        else:
            self._send(404, b"no", "text/plain")

    def _send(
        self, status: int, body: bytes, kind: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


class StubResolver(AbstractResolver):
    """DNS as an attacker may set it up: names to any addresses."""

    NAMES: ClassVar[dict[str, list[str]]] = {
        "images.test": ["127.0.0.1"],
        "internal.test": ["10.0.0.7"],
        "metadata.test": ["169.254.169.254"],
        "loopback.test": ["127.0.0.2"],
        "rebind.test": ["127.0.0.1", "192.168.1.20"],  # one allowed, one not: refused
        "mapped.test": ["::ffff:10.0.0.7"],
        "ula.test": ["fd00:ec2::254"],
        "public.test": ["93.184.215.14"],
    }

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.NAMES:
            raise OSError(f"unknown host {host}")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.NAMES[host]
        ]

    async def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def image_host() -> Iterator[tuple[str, Counter[str]]]:
    hits: Counter[str] = Counter()
    handler = type("Handler", (ImageHost,), {"hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://images.test:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


@pytest.fixture
def open_gateway(
    gateway_settings: GatewaySettings, inference_server: RunningServer
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A gateway that fetches http URLs too and trusts 127.0.0.1 (the image host) only."""
    settings = gateway_settings.model_copy(
        update={
            "inference_url": inference_server.url,
            "image_url_allow_http": True,
            "image_url_allowed_networks": ["127.0.0.1/32"],
            "image_url_max_bytes": MAX_BYTES,
            "image_url_timeout_s": TIMEOUT_S,
        }
    )
    with TestClient(create_app(settings, resolver=StubResolver())) as client:
        key, _ = KeyStore(settings.database_url, PEPPER).create(
            "test", frozenset({"segment", "auto"}), rate_tier="standard"
        )
        yield client, bearer(key.full)


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["code"] == code, problem
    assert problem["hint"]
    assert "Traceback" not in response.text
    return problem


def test_an_image_by_url_answers_as_the_same_image_uploaded(
    open_gateway: tuple[TestClient, dict[str, str]], image_host: tuple[str, Counter[str]]
) -> None:
    client, auth = open_gateway
    base, hits = image_host
    by_url = client.post(
        "/v1/segment", json={"image_url": f"{base}/photo.png"} | CLICK, headers=auth
    )
    assert by_url.status_code == 200, by_url.text
    uploaded = client.post("/v1/segment", json={"image": b64(PHOTO)} | CLICK, headers=auth).json()
    got = by_url.json()
    assert got["image_id"] == uploaded["image_id"]  # the same file, the same id
    assert uploaded["cached"] is True  # the URL's image was encoded once
    assert np.array_equal(decode_mask(got["mask"]), decode_mask(uploaded["mask"]))
    assert hits["/photo.png"] >= 1
    # Content-Type is not trusted either way: the bytes say what the file is.
    as_text = client.post(
        "/v1/segment", json={"image_url": f"{base}/photo-as-text"} | CLICK, headers=auth
    )
    assert as_text.status_code == 200, as_text.text
    fake = client.post("/v1/segment", json={"image_url": f"{base}/fake.png"} | CLICK, headers=auth)
    _problem(fake, 422, "unsupported_image")


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://internal.test/photo.png", "image_url_forbidden"),
        ("http://metadata.test/latest/meta-data/", "image_url_forbidden"),
        ("http://169.254.169.254/latest/meta-data/", "image_url_forbidden"),
        ("http://[::ffff:169.254.169.254]/latest/meta-data/", "image_url_forbidden"),
        ("http://[::1]/photo.png", "image_url_forbidden"),
        ("http://10.0.0.1/photo.png", "image_url_forbidden"),
        ("http://loopback.test/photo.png", "image_url_forbidden"),
        ("http://rebind.test/photo.png", "image_url_forbidden"),
        ("http://mapped.test/photo.png", "image_url_forbidden"),
        ("http://ula.test/photo.png", "image_url_forbidden"),
        ("http://0.0.0.0/photo.png", "image_url_forbidden"),
        ("ftp://images.test/photo.png", "invalid_image_url"),
        ("file:///etc/passwd", "invalid_image_url"),
        ("http://user:secret@images.test/photo.png", "invalid_image_url"),
        ("not a url", "invalid_image_url"),
        ("http://unknown.test/photo.png", "image_url_unreachable"),
    ],
)
def test_urls_to_forbidden_or_malformed_places_are_refused(
    open_gateway: tuple[TestClient, dict[str, str]], url: str, code: str
) -> None:
    client, auth = open_gateway
    response = client.post("/v1/segment", json={"image_url": url} | CLICK, headers=auth)
    _problem(response, 422, code)
    assert "secret" not in response.text


def test_redirects_are_checked_like_the_first_url(
    open_gateway: tuple[TestClient, dict[str, str]], image_host: tuple[str, Counter[str]]
) -> None:
    client, auth = open_gateway
    base, hits = image_host
    before = hits["/photo.png"]
    relative = client.post(
        "/v1/segment", json={"image_url": f"{base}/redirect?to=/photo.png"} | CLICK, headers=auth
    )
    assert relative.status_code == 200, relative.text
    assert hits["/photo.png"] == before + 1
    for target in ("http://internal.test/photo.png", "http://169.254.169.254/", "ftp://x.test/"):
        bounced = client.post(
            "/v1/segment", json={"image_url": f"{base}/redirect?to={target}"} | CLICK, headers=auth
        )
        assert bounced.status_code == 422, bounced.text
        assert bounced.json()["code"] in ("image_url_forbidden", "invalid_image_url")
    loop = client.post("/v1/segment", json={"image_url": f"{base}/loop"} | CLICK, headers=auth)
    assert "redirects" in _problem(loop, 422, "image_url_unreachable")["detail"]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/big", 413, "image_too_large"),  # declared too large: not read
        ("/endless", 413, "image_too_large"),  # no length: stopped at the limit
        ("/bomb", 413, "image_too_large"),  # small compressed, huge decompressed
        ("/slow", 422, "image_url_unreachable"),  # over the time limit
        ("/missing", 422, "image_url_unreachable"),  # HTTP 404
    ],
)
def test_fetches_are_bounded_in_size_and_time(
    open_gateway: tuple[TestClient, dict[str, str]],
    image_host: tuple[str, Counter[str]],
    path: str,
    status: int,
    code: str,
) -> None:
    client, auth = open_gateway
    base, _ = image_host
    url = f"{base}{path}?token=secret-in-query"
    response = client.post("/v1/segment", json={"image_url": url} | CLICK, headers=auth)
    _problem(response, status, code)
    assert "secret-in-query" not in response.text  # a URL's query may hold a credential
    after = client.post("/v1/segment", json={"image": b64(PHOTO)} | CLICK, headers=auth)
    assert after.status_code == 200  # the gateway serves on


def test_plain_http_and_private_hosts_are_refused_by_default(
    gateway_settings: GatewaySettings, image_host: tuple[str, Counter[str]]
) -> None:
    base, hits = image_host
    before = sum(hits.values())
    with TestClient(create_app(gateway_settings, resolver=StubResolver())) as client:
        key, _ = KeyStore(gateway_settings.database_url, PEPPER).create(
            "test", frozenset({"segment"}), rate_tier="standard"
        )
        for url in (f"{base}/photo.png", "https://images.test/photo.png"):
            response = client.post(
                "/v1/segment", json={"image_url": url} | CLICK, headers=bearer(key.full)
            )
            _problem(response, 422, "image_url_forbidden")
    assert sum(hits.values()) == before  # nothing was requested from the host


def test_a_batch_fetches_its_shared_url_once(
    open_gateway: tuple[TestClient, dict[str, str]], image_host: tuple[str, Counter[str]]
) -> None:
    client, auth = open_gateway
    base, hits = image_host
    url = f"{base}/photo.png?batch"
    body = {"image_url": url, "requests": [CLICK, CLICK | {"point_coords": [[20, 20]]}]}
    response = client.post("/v1/segment/batch", json=body, headers=auth)
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == [200, 200]
    assert hits["/photo.png?batch"] == 1


def _multipart(request: dict[str, Any], image: bytes | None = PHOTO) -> dict[str, Any]:
    files: dict[str, Any] = {"request": (None, json.dumps(request), "application/json")}
    if image is not None:
        files["image"] = ("photo.png", image, "image/png")
    return {"files": files}


def test_a_multipart_upload_answers_as_base64_and_carries_a_third_less(
    open_gateway: tuple[TestClient, dict[str, str]],
) -> None:
    client, auth = open_gateway
    noise = np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    photo = encode(noise)  # incompressible: the file is most of the body
    upload = client.build_request(
        "POST", "/v1/segment", headers=auth, **_multipart(CLICK | {"render": "png"}, image=photo)
    )
    sent = len(upload.read())
    response = client.send(upload)
    assert response.status_code == 200, response.text
    base64_body = json.dumps({"image": b64(photo)} | CLICK).encode()
    as_base64 = client.post(
        "/v1/segment", content=base64_body, headers=auth | {"content-type": "application/json"}
    ).json()
    got = response.json()
    assert got["image_id"] == as_base64["image_id"]
    assert np.array_equal(decode_mask(got["mask"]), decode_mask(as_base64["mask"]))
    assert sent < 0.77 * len(base64_body)
    assert decode_overlay(got["overlay"]).shape == (150, 200, 3)  # rendered where pixels are
    batch = client.post(
        "/v1/segment/batch",
        headers=auth,
        **_multipart({"requests": [CLICK, {"mode": "auto", "points_per_side": 2}]}),
    )
    assert [r["status"] for r in batch.json()["results"]] == [200, 200]


@pytest.mark.parametrize(
    ("name", "kwargs", "status", "code"),
    [
        (
            "image named twice",
            _multipart(CLICK | {"image_id": "img_" + "0" * 32}),
            422,
            "image_and_image_id",
        ),
        (
            "url and file",
            _multipart(CLICK | {"image_url": "https://x.test/a.png"}),
            422,
            "image_and_image_id",
        ),
        (
            "no request part",
            {"files": {"image": ("p.png", PHOTO, "image/png")}},
            422,
            "invalid_request",
        ),
        ("no image part", _multipart(CLICK, image=None), 422, "missing_image"),
        (
            "an extra part",
            {"files": _multipart(CLICK)["files"] | {"other": ("x", b"1", "text/plain")}},
            422,
            "invalid_request",
        ),
        ("not an image", _multipart(CLICK, image=b"hello"), 422, "unsupported_image"),
        (
            "two image parts",  # not the last one silently winning
            {
                "files": [
                    ("request", (None, json.dumps(CLICK), "application/json")),
                    ("image", ("a.png", PHOTO, "image/png")),
                    ("image", ("b.png", PHOTO, "image/png")),
                ]
            },
            422,
            "invalid_request",
        ),
        (
            "two request parts",
            {
                "files": [
                    ("request", (None, json.dumps(CLICK), "application/json")),
                    ("request", (None, json.dumps(CLICK), "application/json")),
                    ("image", ("a.png", PHOTO, "image/png")),
                ]
            },
            422,
            "invalid_request",
        ),
        (
            "bad JSON",
            {"files": {"request": (None, "{", "application/json"), "image": ("p", PHOTO)}},
            400,
            "invalid_json",
        ),
        ("too large", _multipart(CLICK, image=PHOTO + b"\0" * (600 * 1024)), 413, "body_too_large"),
        (
            "broken",
            {
                "content": b"--x\r\nnonsense",
                "headers": {"content-type": "multipart/form-data; boundary=x"},
            },
            422,
            "invalid_request",
        ),
    ],
)
def test_bad_multipart_bodies_get_their_problem(
    open_gateway: tuple[TestClient, dict[str, str]],
    name: str,
    kwargs: dict[str, Any],
    status: int,
    code: str,
) -> None:
    client, auth = open_gateway
    kwargs = dict(kwargs)
    response = client.post("/v1/segment", headers=auth | kwargs.pop("headers", {}), **kwargs)
    _problem(response, status, code)


def test_other_content_types_are_refused_with_both_accepted_ones_named(
    open_gateway: tuple[TestClient, dict[str, str]],
) -> None:
    client, auth = open_gateway
    response = client.post(
        "/v1/segment", content=PHOTO, headers=auth | {"content-type": "image/png"}
    )
    problem = _problem(response, 415, "unsupported_media_type")
    assert "multipart/form-data" in problem["hint"]


def test_the_inference_service_reads_no_urls(inference_server: RunningServer) -> None:
    response = post_segment(
        httpx,
        {"image_url": "http://169.254.169.254/latest/meta-data/"} | CLICK,
        base_url=inference_server.url,
    )
    _problem(response, 422, "invalid_image_url")


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:4700::1111", True),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("192.0.0.170", False),
        ("224.0.0.251", False),
        ("ff02::1", False),
        ("2002:a00:1::", False),  # 6to4 around 10.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 around 169.254.169.254
        ("fe80::1", False),
        ("::", False),
    ],
)
def test_only_public_addresses_count_as_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public
