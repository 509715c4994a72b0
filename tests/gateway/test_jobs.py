"""Batch jobs through the gateway (issue 30) against the real inference service:
a job of uploaded images and URLs (served by a local host the SSRF guard is told to trust,
as in tests/gateway/test_image_sources.py) with bad items ends with each item done or failed
with its code, done answers equal to a /v1/segment call on the same image; a retried create
is the same job; cancel stops it; bad input and another key's job are problems with hints."""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sam2_contract import decode_mask
from sam2_gateway.core.config import JobTier
from support import IMAGES, RunningServer, bearer, encode, free_port, image_b64, scene

CLICK = {"point_coords": [[40, 30]], "point_labels": [1]}
FILES = {
    "/a.png": encode(scene(90, 120, seed=31)),
    "/b.png": encode(scene(100, 80, seed=32)),
    "/corrupt.png": b"\x89PNG\r\n\x1a\n" + b"not really a picture",
}


class _Host(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = FILES.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("content-type", "image/png")
        self.send_header("content-length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def host() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Host)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def jobs_gateway(
    make_client: Callable[..., TestClient], inference_server: RunningServer
) -> TestClient:
    return make_client(
        inference_url=inference_server.url,
        image_url_allow_http=True,
        image_url_allowed_networks=["127.0.0.1/32"],
        job_max_items=12,
        job_workers=2,
        job_lease_s=5.0,
        max_pixels=200_000,
        job_max_upload_bytes=32 * 2**20,
    )


def _wait(client: TestClient, job_id: str, auth: dict[str, str], timeout_s: float = 120) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
        if info["state"] in ("done", "cancelled"):
            return info
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {info}")


def _results(client: TestClient, job_id: str, auth: dict[str, str]) -> list[dict[str, Any]]:
    answer = client.get(f"/v1/jobs/{job_id}/results", headers=auth)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in answer.text.splitlines() if line]


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["code"] == code
    assert problem["hint"]
    return problem


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools
def test_a_job_of_uploads_and_urls_ends_with_every_item_answered_or_failed(
    jobs_gateway: TestClient, new_key: Callable[..., str], host: str, tmp_path: Path
) -> None:
    auth = bearer(new_key("segment auto jobs"))
    uploaded = [
        jobs_gateway.post(
            "/v1/segment", json={"image": image_b64(name)} | CLICK, headers=auth
        ).json()["image_id"]
        for name in ("landscape", "portrait")
    ]
    items = [
        {"image_id": uploaded[0]},
        {"image_url": f"{host}/a.png"},
        {"image_url": f"{host}/corrupt.png"},
        {"image_id": uploaded[1]},
        {"image_url": f"http://127.0.0.1:{free_port()}/gone.png"},  # nothing listens
        {"image_url": f"{host}/b.png"},
        {"image_id": "img_" + "e" * 32},  # never uploaded
    ]
    created = jobs_gateway.post(
        "/v1/jobs",
        json={"request": CLICK, "items": items},
        headers=auth | {"idempotency-key": "k1"},
    )
    assert created.status_code == 201, created.text
    job = created.json()
    assert (job["state"], job["total"], job["counts"]["queued"]) == ("queued", 7, 7)
    again = jobs_gateway.post(
        "/v1/jobs",
        json={"request": CLICK, "items": items},
        headers=auth | {"idempotency-key": "k1"},
    )
    assert (again.status_code, again.json()["job_id"]) == (200, job["job_id"])
    done = _wait(jobs_gateway, job["job_id"], auth)
    assert done["state"] == "done"
    assert (done["counts"]["done"], done["counts"]["failed"]) == (4, 3)
    assert done["finished_at"] is not None
    lines = _results(jobs_gateway, job["job_id"], auth)
    assert [line["index"] for line in lines] == list(range(7))
    codes = {line["index"]: line["error"]["code"] for line in lines if "error" in line}
    assert codes == {2: "truncated_image", 4: "image_url_unreachable", 6: "image_not_cached"}
    for line in lines:
        if "error" in line:
            assert line["error"]["hint"]
            assert line["status"] == line["error"]["status"]
    # Every done item equals the same click sent alone, by the same key.
    singles = [
        {"image_id": uploaded[0]},
        {"image": image_b64_file(FILES["/a.png"])},
        None,
        {"image_id": uploaded[1]},
        None,
        {"image": image_b64_file(FILES["/b.png"])},
        None,
    ]
    for line, single in zip(lines, singles, strict=True):
        if single is None:
            continue
        alone = jobs_gateway.post(
            "/v1/segment", json=single | CLICK | {"mask_format": "rle"}, headers=auth
        ).json()
        result = line["result"]
        assert result["image_id"] == alone["image_id"]
        assert (decode_mask(result["mask"]) == decode_mask(alone["mask"])).all()
        assert result["score"] == pytest.approx(alone["score"], abs=1e-6)
    listed = jobs_gateway.get("/v1/jobs", headers=auth).json()["jobs"]
    assert [j["job_id"] for j in listed] == [job["job_id"]]
    _assert_coco(jobs_gateway, job["job_id"], auth, lines, tmp_path)


def _assert_coco(
    client: TestClient,
    job_id: str,
    auth: dict[str, str],
    lines: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    """The COCO export loads in pycocotools, one image per done item, and its masks are the
    items' answers."""
    coco_api = pytest.importorskip("pycocotools.coco")
    exported = client.get(f"/v1/jobs/{job_id}/results?format=coco", headers=auth)
    assert exported.status_code == 200
    assert "attachment" in exported.headers["content-disposition"]
    path = tmp_path / "job.coco.json"
    path.write_bytes(exported.content)
    coco = coco_api.COCO(str(path))
    done = {line["index"]: line["result"] for line in lines if "result" in line}
    assert sorted(coco.getImgIds()) == [index + 1 for index in sorted(done)]
    for index, result in done.items():
        [annotation] = coco.loadAnns(coco.getAnnIds(imgIds=[index + 1]))
        mask = coco.annToMask(annotation).astype(bool)
        assert (mask == decode_mask(result["mask"])).all()
        assert annotation["area"] == int(mask.sum())
        assert annotation["score"] == pytest.approx(result["score"])
    bad = client.get(f"/v1/jobs/{job_id}/results?format=yaml", headers=auth)
    _problem(bad, 422, "invalid_parameter")


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools
def test_a_job_of_urls_uploads_and_an_archive(
    jobs_gateway: TestClient, new_key: Callable[..., str], host: str
) -> None:
    """The three ways at once, with bad items among them: they fail alone, with their codes;
    every good one is answered as the same image sent alone."""
    auth = bearer(new_key("segment auto jobs"))
    big = encode(scene(600, 500, seed=33))  # 300,000 pixels: over this gateway's max_pixels
    archive = _zip(
        {
            "photos/b.png": FILES["/b.png"],
            "photos/c.png": encode(IMAGES["portrait"]),
            "__MACOSX/photos/._b.png": b"resource fork",  # skipped, as macOS's zip adds it
        }
    )
    request = {
        "request": CLICK,
        "items": [
            {"image_url": f"{host}/a.png"},
            {"image_url": f"http://127.0.0.1:{free_port()}/x"},
        ],
    }
    files = [
        ("image", ("landscape.png", encode(IMAGES["landscape"]), "image/png")),
        ("image", ("broken.png", FILES["/corrupt.png"], "image/png")),
        ("image", ("poster.png", big, "image/png")),
        ("archive", ("photos.zip", archive, "application/zip")),
    ]
    created = jobs_gateway.post(
        "/v1/jobs", data={"request": json.dumps(request)}, files=files, headers=auth
    )
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["total"] == 7
    done = _wait(jobs_gateway, job["job_id"], auth)
    assert (done["counts"]["done"], done["counts"]["failed"]) == (4, 3)
    lines = _results(jobs_gateway, job["job_id"], auth)
    codes = {line["index"]: line["error"]["code"] for line in lines if "error" in line}
    assert codes == {1: "image_url_unreachable", 3: "truncated_image", 4: "image_too_large"}
    alone = {
        0: FILES["/a.png"],
        2: encode(IMAGES["landscape"]),
        5: FILES["/b.png"],
        6: encode(IMAGES["portrait"]),
    }
    for index, data in alone.items():
        single = jobs_gateway.post(
            "/v1/segment", json={"image": image_b64_file(data)} | CLICK, headers=auth
        ).json()
        result = lines[index]["result"]
        assert result["image_id"] == single["image_id"]
        assert (decode_mask(result["mask"]) == decode_mask(single["mask"])).all()
    coco = jobs_gateway.get(f"/v1/jobs/{job['job_id']}/results?format=coco", headers=auth).json()
    names = {image["id"]: image["file_name"] for image in coco["images"]}
    assert names[3] == "landscape.png"  # ids are the items' indexes + 1
    assert names[7] == "photos/c.png"


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools
def test_forty_images_three_ways_end_37_done_and_3_failed(
    make_client: Callable[..., TestClient],
    inference_server: RunningServer,
    new_key: Callable[..., str],
    host: str,
    tmp_path: Path,
) -> None:
    """The issue's acceptance job: 40 images as URLs (14), uploads (13) and one archive (13),
    one bad item among each (an unreachable URL, a corrupt file, a too-large image). 37 are
    done, each answer the same image's /v1/segment call; 3 failed, each with its code; the
    COCO export loads in pycocotools and its masks are the items' answers."""
    client = make_client(
        inference_url=inference_server.url,
        image_url_allow_http=True,
        image_url_allowed_networks=["127.0.0.1/32"],
        job_max_items=40,
        job_workers=2,
        max_pixels=200_000,
        job_max_upload_bytes=32 * 2**20,
    )
    auth = bearer(new_key("segment auto jobs"))
    pictures = [encode(scene(60 + i % 5 * 10, 80 + i % 7 * 10, seed=400 + i)) for i in range(37)]
    for i, data in enumerate(pictures[:13]):
        FILES[f"/forty/{i}.png"] = data
    urls = [{"image_url": f"{host}/forty/{i}.png"} for i in range(13)]
    urls.append({"image_url": f"http://127.0.0.1:{free_port()}/gone.png"})  # nothing listens
    uploads = [
        ("image", (f"up{i}.png", data, "image/png")) for i, data in enumerate(pictures[13:25])
    ]
    uploads.append(("image", ("corrupt.png", FILES["/corrupt.png"], "image/png")))
    entries = {f"set/{i:02d}.png": data for i, data in enumerate(pictures[25:])}  # name order
    entries["set/poster.png"] = encode(scene(600, 500, seed=34))  # over max_pixels
    files = [*uploads, ("archive", ("set.zip", _zip(entries), "application/zip"))]
    body = {"request": json.dumps({"request": CLICK, "items": urls})}
    created = client.post("/v1/jobs", data=body, files=files, headers=auth)
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["total"] == 40
    done = _wait(client, job["job_id"], auth, timeout_s=600)
    assert (done["state"], done["counts"]["done"], done["counts"]["failed"]) == ("done", 37, 3)
    lines = _results(client, job["job_id"], auth)
    assert [line["index"] for line in lines] == list(range(40))
    codes = {line["index"]: line["error"]["code"] for line in lines if "error" in line}
    assert codes == {13: "image_url_unreachable", 26: "truncated_image", 39: "image_too_large"}
    good = [line for line in lines if "result" in line]
    for line, data in zip(good, pictures, strict=True):  # URLs, uploads, archive: in order
        single = client.post(
            "/v1/segment",
            json={"image": image_b64_file(data)} | CLICK | {"mask_format": "rle"},
            headers=auth,
        ).json()
        assert line["result"]["image_id"] == single["image_id"]
        assert (decode_mask(line["result"]["mask"]) == decode_mask(single["mask"])).all()
        assert line["result"]["score"] == pytest.approx(single["score"], abs=1e-6)
    _assert_coco(client, job["job_id"], auth, lines, tmp_path)


@pytest.mark.parametrize(
    ("archive", "status", "code"),
    [
        (lambda: _zip({"../evil.png": FILES["/a.png"]}), 422, "unsafe_archive"),
        (lambda: _zip({"/etc/evil.png": FILES["/a.png"]}), 422, "unsafe_archive"),
        (lambda: _zip({"bomb.png": bytes(60 * 2**20)}), 413, "archive_too_large"),
        (lambda: _tar_with_link(), 422, "unsafe_archive"),
        (lambda: b"this is not an archive at all", 422, "invalid_archive"),
    ],
    ids=["dot-dot", "absolute", "zip bomb", "symlink", "not an archive"],
)
def test_a_dangerous_archive_is_refused_whole(
    jobs_gateway: TestClient,
    new_key: Callable[..., str],
    archive: Callable[[], bytes],
    status: int,
    code: str,
) -> None:
    auth = bearer(new_key("segment auto jobs"))
    refused = jobs_gateway.post(
        "/v1/jobs",
        data={"request": json.dumps({"request": CLICK})},
        files=[("archive", ("a.zip", archive(), "application/octet-stream"))],
        headers=auth,
    )
    _problem(refused, status, code)
    assert jobs_gateway.get("/v1/jobs", headers=auth).json() == {"jobs": []}


def _tar_with_link() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        link = tarfile.TarInfo("photos/passwd.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    return buffer.getvalue()


def image_b64_file(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def test_cancel_stops_the_job_and_starts_no_queued_item(
    jobs_gateway: TestClient, new_key: Callable[..., str]
) -> None:
    auth = bearer(new_key("segment auto jobs"))
    image_id = jobs_gateway.post(
        "/v1/segment", json={"image": image_b64("landscape")} | CLICK, headers=auth
    ).json()["image_id"]
    auto = {"mode": "auto", "points_per_side": 8}  # seconds an item on the CPU
    job = jobs_gateway.post(
        "/v1/jobs", json={"request": auto, "items": [{"image_id": image_id}] * 12}, headers=auth
    ).json()
    cancelled = jobs_gateway.delete(f"/v1/jobs/{job['job_id']}", headers=auth)
    assert cancelled.status_code == 200
    info = cancelled.json()
    assert info["state"] == "cancelled"
    finished = info["counts"]["done"] + info["counts"]["failed"]
    assert info["counts"]["cancelled"] == 12 - finished
    time.sleep(3)  # a worker that held an item has been told at its renewal, or its finish
    later = jobs_gateway.get(f"/v1/jobs/{job['job_id']}", headers=auth).json()
    assert later["counts"] == info["counts"]
    states = [line.get("state") for line in _results(jobs_gateway, job["job_id"], auth)]
    assert states.count("cancelled") == info["counts"]["cancelled"]


def test_bad_jobs_get_problems_with_hints(
    jobs_gateway: TestClient, new_key: Callable[..., str]
) -> None:
    auth = bearer(new_key("segment auto jobs"))
    item = {"image_id": "img_" + "0" * 32}
    post = lambda body, **h: jobs_gateway.post("/v1/jobs", json=body, headers=auth | h)  # noqa: E731
    _problem(post({"request": CLICK, "items": []}), 422, "empty_job")
    _problem(post({"request": CLICK, "items": [item] * 13}), 422, "too_many_job_items")
    _problem(post({"request": CLICK, "items": [{}]}), 422, "missing_image")
    _problem(
        post({"request": CLICK, "items": [item | {"image_url": "https://example.com/a.png"}]}),
        422,
        "missing_image",
    )
    _problem(
        post({"request": CLICK | {"image_id": item["image_id"]}, "items": [item]}),
        422,
        "invalid_parameter",
    )
    _problem(
        post({"request": CLICK | {"mask_format": "png"}, "items": [item]}), 422, "invalid_parameter"
    )
    _problem(post({"request": {"mode": "point"}, "items": [item]}), 422, "missing_points")
    made = post({"request": CLICK, "items": [item]}, **{"idempotency-key": "same"})
    assert made.status_code == 201
    _problem(
        post({"request": CLICK, "items": [item, item]}, **{"idempotency-key": "same"}),
        422,
        "idempotency_key_reused",
    )
    job_id = made.json()["job_id"]
    other = bearer(new_key("segment auto jobs"))
    for method, path in (
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/results"),
        ("DELETE", f"/v1/jobs/{job_id}"),
        ("GET", "/v1/jobs/job_" + "0" * 24),
    ):
        _problem(jobs_gateway.request(method, path, headers=other), 404, "job_not_found")
    assert jobs_gateway.get("/v1/jobs", headers=other).json() == {"jobs": []}
    no_scope = bearer(new_key("segment auto"))
    _problem(
        jobs_gateway.post("/v1/jobs", json={"request": CLICK, "items": [item]}, headers=no_scope),
        403,
        "insufficient_scope",
    )
    auto_only = bearer(new_key("segment jobs"))
    _problem(
        jobs_gateway.post(
            "/v1/jobs", json={"request": {"mode": "auto"}, "items": [item]}, headers=auto_only
        ),
        403,
        "insufficient_scope",
    )
    assert IMAGES  # the shared test images are the uploads above


def test_each_tier_has_its_job_limits_and_a_retry_is_never_refused(
    make_client: Callable[..., TestClient],
    inference_server: RunningServer,
    new_key: Callable[..., str],
) -> None:
    """A free key: 3 items a job, 2 jobs at once (429 with Retry-After beyond, free again
    once one ends), as /v1/usage says; another key is not held up by it; and a retried create
    answers its job even when the limits are reached (its own items are not counted twice)."""
    client = make_client(
        inference_url=inference_server.url,
        job_workers=0,  # the jobs stay queued: the limits are what is tested
        job_tiers={"free": JobTier(max_items=3, max_jobs=2, max_running=1, retention_days=2)},
        job_max_active_items=5,
    )
    free = bearer(new_key("segment auto jobs", tier="free"))
    item = {"image_id": "img_" + "1" * 32}

    def post(auth: dict[str, str], items: int, key: str | None = None) -> httpx.Response:
        headers = auth | ({"idempotency-key": key} if key else {})
        body = {"request": CLICK, "items": [item] * items}
        return client.post("/v1/jobs", json=body, headers=headers)

    problem = _problem(post(free, 4), 422, "too_many_job_items")
    assert "'free' tier has at most 3" in problem["detail"]
    first = post(free, 1, "one")
    assert post(free, 1).status_code == 201
    full = post(free, 1)
    problem = _problem(full, 429, "job_queue_full")
    assert "runs 2 at once" in problem["detail"]
    assert int(full.headers["retry-after"]) > 0
    again = post(free, 1, "one")
    assert (again.status_code, again.json()["job_id"]) == (200, first.json()["job_id"])
    limits = client.get("/v1/usage", headers=free).json()["limits"]
    assert (limits["job_items"], limits["jobs"], limits["job_running"]) == (3, 2, 1)
    assert limits["job_retention_days"] == 2
    client.delete(f"/v1/jobs/{first.json()['job_id']}", headers=free)
    assert post(free, 1).status_code == 201  # a cancelled job frees its place
    # A standard key: 5 items queued or running at most (the service's bound per key).
    standard = bearer(new_key("segment auto jobs"))
    made = post(standard, 4, "four")
    assert made.status_code == 201
    _problem(post(standard, 2), 429, "job_queue_full")
    retried = post(standard, 4, "four")  # 4 queued + these 4 would pass 5: still the same job
    assert (retried.status_code, retried.json()["job_id"]) == (200, made.json()["job_id"])
    no_jobs = bearer(new_key("segment auto"))
    limits = client.get("/v1/usage", headers=no_jobs).json()["limits"]
    assert (limits["job_items"], limits["jobs"]) == (None, None)


@contextlib.contextmanager
def _relay_later(port: int, target: str, after_s: float) -> Iterator[None]:
    """After `after_s`, forward every TCP connection on `port` to `target` (host:port): an
    inference service that is unreachable, then back."""
    import socket

    host, _, target_port = target.rpartition(":")
    stop = threading.Event()
    opened: list[socket.socket] = []

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def serve() -> None:
        if stop.wait(after_s):
            return
        with socket.create_server(("127.0.0.1", port)) as listener:
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection((host, int(target_port)))
                opened.extend((client, upstream))
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        for sock in opened:
            sock.close()


def test_items_wait_out_an_unreachable_inference_instead_of_failing(
    make_client: Callable[..., TestClient],
    inference_server: RunningServer,
    new_key: Callable[..., str],
) -> None:
    port = free_port()
    gateway = make_client(
        inference_url=f"http://127.0.0.1:{port}",
        job_workers=2,
        job_lease_s=5.0,
        inference_startup_wait_s=0.0,
    )
    auth = bearer(new_key("segment jobs"))
    pictures = [encode(scene(60, 80, seed=40 + i)) for i in range(3)]
    created = gateway.post(
        "/v1/jobs",
        data={"request": json.dumps({"request": CLICK, "items": []})},
        files=[("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(pictures)],
        headers=auth,
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["job_id"]
    with _relay_later(port, inference_server.url.removeprefix("http://"), after_s=2.5):
        info = _wait(gateway, job_id, auth, timeout_s=90)
        gateway.close()  # its workers stop before the relay does
    assert (info["counts"]["done"], info["counts"]["failed"]) == (3, 0)  # none lost to it
    direct = make_client(inference_url=inference_server.url)
    for line, data in zip(_results(direct, job_id, auth), pictures, strict=True):
        alone = direct.post(
            "/v1/segment",
            json={"image": image_b64_file(data)} | CLICK | {"mask_format": "rle"},
            headers=auth,
        ).json()
        assert (decode_mask(line["result"]["mask"]) == decode_mask(alone["mask"])).all()
