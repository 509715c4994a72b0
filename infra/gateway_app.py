# # The SAM2 gateway on Modal
#
# The public side: the FastAPI gateway as an ASGI app on CPU containers, forwarding to the GPU
# inference Server over HTTP (its URL looked up by name at start-up, Modal's proxy token from the
# gateway's Secret). Deploy with
#
#     modal deploy -m infra.gateway_app
#
# The image has no torch, so a gateway container starts in about a second.

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import modal
import sam2_gateway
from sam2_gateway.core.job_files import JobFiles, JobResults

from infra.settings import JOB_WORKER_CPU, JOB_WORKER_MEMORY_MIB, DeploySettings

if TYPE_CHECKING:
    from sam2_gateway import GatewaySettings

log = logging.getLogger(__name__)
JOB_FILES = "/job-files"
T = TypeVar("T")

settings = DeploySettings()
IMAGE_ENV = settings.as_env() | {
    "SAM2_GATEWAY_INFERENCE_TIMEOUT_S": str(settings.call_timeout_s),
    "SAM2_GATEWAY_INFERENCE_CONNECT_TIMEOUT_S": "10",  # Modal's proxy, which accepts at once
    # With no live GPU container Modal's proxy answers 503 at once and starts one: the gateway
    # asks again with backoff for as long as a start may take (and the call's own time allows)
    # instead of passing the 503 on (sam2_gateway/backends.py).
    "SAM2_GATEWAY_INFERENCE_STARTUP_WAIT_S": str(settings.startup_timeout_s),
    "SAM2_GATEWAY_INFERENCE_START_ESTIMATE_S": str(settings.cold_start_estimate_s),
    # Files uploaded with jobs live on a Volume both the API and the job workers mount.
    "SAM2_GATEWAY_JOB_FILES_DIR": JOB_FILES,
}

PACKAGES = (
    # services/gateway/pyproject.toml's dependencies (tests/infra checks none is missing)...
    "fastapi>=0.115",
    "uvicorn>=0.30",
    "aiohttp>=3.10",
    "pyjwt[crypto]>=2.13",
    "limits[redis]>=5.0",
    "sqlalchemy>=2.0",
    "alembic>=1.13",
    "psycopg[binary]>=3.2",
    "pydantic-settings>=2.5",
    "python-multipart>=0.0.18",
    # ...the contract's (shared/pyproject.toml), and Modal's own client
    "pydantic>=2.9,<3",
    "pillow>=10.4",
    "numpy>=1.26",
    "httpx>=0.27",
    "modal>=1.0",
)

# The packages with every file, not only their .py ones (Modal's default): the gateway serves
# the built playground page (sam2_gateway/playground/) and Alembic keeps its revision template
# beside the migrations.
SOURCES = ("sam2_contract", "sam2_gateway", "infra")
PLAYGROUND = Path(sam2_gateway.__file__).parent / "playground"
if modal.is_local() and not (PLAYGROUND / "index.html").is_file():
    raise RuntimeError(
        "infra.gateway_app: the playground page is not built, so /playground/ would be missing "
        "from the deployment: run `cd sdk-js && npm ci && npm run build:playground` first "
        "(scripts/test and scripts/dev do)"
    )

image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install(*PACKAGES)
    .env(IMAGE_ENV)
    .add_local_python_source(*SOURCES, ignore=[])
)

app = modal.App(settings.gateway_app, image=image)

# The pepper, the JWT signing key, DATABASE_URL (PostgreSQL: containers come and go, so a
# SQLite file would lose keys) and the proxy token that opens the inference Server
# (SAM2_GATEWAY_INFERENCE_PROXY_KEY / _SECRET) come from one Secret; see docs/deploy.md.
gateway_secret = modal.Secret.from_name(settings.gateway_secret)
job_files_volume = modal.Volume.from_name(settings.job_files_volume, create_if_missing=True)


API_OPTIONS: dict[str, object] = {
    "secrets": [gateway_secret],
    "volumes": {JOB_FILES: job_files_volume},
    "scaledown_window": 300,
    "timeout": settings.call_timeout_s + 30,  # outlives the inference call it waits for
}
CONCURRENCY = settings.gateway_max_inputs


@app.function(**API_OPTIONS)  # type: ignore[arg-type]
@modal.concurrent(max_inputs=CONCURRENCY)
@modal.asgi_app()
def api() -> object:
    from sam2_gateway import create_app

    # Batch jobs run in the job workers (drain_jobs), not in these containers: they stop when
    # no request comes, and an item's lease would lapse with them.
    gateway = gateway_settings().model_copy(update={"job_workers": 0})
    files, results = _job_stores()
    web = create_app(gateway, job_files=files, job_results=results)
    web.state.on_job_created = [_job_created]
    return web


def _job_stores() -> tuple[JobFiles, JobResults]:
    """Uploaded files and answers, both on the job-files Volume."""
    root = Path(JOB_FILES)
    files = VolumeJobFiles(root, job_files_volume)
    return files, VolumeJobResults(root / "results", job_files_volume)


class _OnVolume:
    """What a store on the job-files Volume shares: a read that misses reloads the Volume
    (another container wrote the file) and looks again for up to `wait_s`; a change is
    committed. Reloads and commits take turns under one lock."""

    def _on_volume(self, volume: modal.Volume, wait_s: float) -> None:
        self._volume = volume
        self._wait_s = wait_s
        self._lock = threading.Lock()

    def _reload_until(self, read: Callable[[], T | None]) -> T | None:
        found = read()
        deadline = time.monotonic() + self._wait_s
        while found is None and time.monotonic() < deadline:
            with self._lock:
                self._volume.reload()
            found = read()
            if found is None:
                time.sleep(1.0)
        return found

    def _commit(self) -> None:
        with self._lock:
            self._volume.commit()


class VolumeJobFiles(JobFiles, _OnVolume):
    """Job files on a Modal Volume: a worker that misses a file reloads the Volume (another
    container wrote it) and looks again, for up to `wait_s`."""

    def __init__(self, directory: Path, volume: modal.Volume, wait_s: float = 30.0) -> None:
        super().__init__(directory)
        self._on_volume(volume, wait_s)

    def get(self, name: str) -> bytes | None:
        return self._reload_until(partial(super().get, name))

    def remove(self, name: str) -> None:
        super().remove(name)
        self._commit()


class VolumeJobResults(JobResults, _OnVolume):
    """Answers on a Modal Volume: a worker commits after writing one (before the database
    says the item is done; writes that wait for a commit share the next), and the API, which
    reads an answer only once the database names it, reloads the Volume when it misses."""

    def __init__(self, directory: Path, volume: modal.Volume, wait_s: float = 10.0) -> None:
        super().__init__(directory)
        self._on_volume(volume, wait_s)
        self._written = 0
        self._committed = 0

    def put(self, job_id: str, position: int, token: str, answer: str) -> str:
        name = super().put(job_id, position, token, answer)
        with self._lock:
            self._written += 1
            mine = self._written
        with self._lock:
            if self._committed < mine:  # no commit has started since this write
                upto = self._written
                self._volume.commit()
                self._committed = upto
        return name

    def get(self, name: str) -> str | None:
        return self._reload_until(partial(super().get, name))

    def drop(self, job_id: str) -> None:
        super().drop(job_id)
        self._commit()


def _job_created() -> None:
    """After a create: commit the uploaded files, and start a job worker now rather than at
    the minute's schedule (a failure here only delays the job until then)."""
    try:
        job_files_volume.commit()
        modal.Function.from_name(settings.gateway_app, "drain_jobs").spawn()
    except Exception:
        log.warning("could not start a job worker now; the schedule will", exc_info=True)


@app.function(
    secrets=[gateway_secret],
    volumes={JOB_FILES: job_files_volume},
    schedule=modal.Period(minutes=1),
    max_containers=settings.job_worker_containers,
    cpu=JOB_WORKER_CPU,
    memory=JOB_WORKER_MEMORY_MIB,
    timeout=3600,
)
def drain_jobs() -> int:
    """A job worker: runs batch-job items, `job_items_per_container` at once, against the
    inference Server until none has been queued or running for `job_worker_idle_s` (or the
    hour is nearly up: the schedule starts another). Items are leased in the database, so any
    number of these run side by side; one stopped mid-item loses nothing (its leases lapse
    and another takes the items). Returns how many seconds it ran."""
    return asyncio.run(_drain(deadline_s=3600 - 120))


async def _drain(*, deadline_s: float) -> int:
    from sam2_gateway import create_app

    gateway = gateway_settings().model_copy(
        update={"job_workers": settings.job_items_per_container}
    )
    files, results = _job_stores()
    web = create_app(gateway, job_files=files, job_results=results)
    started = time.monotonic()
    idle_since = started
    async with web.router.lifespan_context(web):
        jobs = web.state.gateway.jobs
        while time.monotonic() - started < deadline_s:
            await asyncio.sleep(1.0)
            if await asyncio.to_thread(jobs.waiting_items):
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > settings.job_worker_idle_s:
                break
    return round(time.monotonic() - started)


def gateway_settings() -> GatewaySettings:
    """The gateway's settings, pointed at the deployed inference Server unless
    SAM2_GATEWAY_INFERENCE_URL names another."""
    from sam2_gateway import GatewaySettings

    gateway = GatewaySettings()
    if "SAM2_GATEWAY_INFERENCE_URL" in os.environ:
        return gateway
    server = modal.Server.from_name(settings.inference_app, settings.inference_class)
    return gateway.model_copy(update={"inference_url": server.get_url()})


@app.function(secrets=[gateway_secret])
def create_key(name: str, scopes: str, tier: str) -> str:
    """Create an API key in the deployed key store; returns it (shown once)."""
    from sam2_gateway import GatewaySettings, KeyStore

    gateway = GatewaySettings()
    store = KeyStore(gateway.database_url, gateway.key_pepper.get_secret_value())
    store.migrate()
    key, _ = store.create(name, frozenset(scopes.split(",")), rate_tier=tier)
    return key.full


@app.local_entrypoint()
def keys(name: str, scopes: str = "segment,auto", tier: str = "standard") -> None:
    """`modal run -m infra.gateway_app::keys --name my-app` prints a new key once."""
    print(create_key.remote(name, scopes, tier))


@app.local_entrypoint()
def test(url: str, key: str) -> None:
    """The original spec's `modal run ...::test`: a generated image through the deployed stack.

    `modal run -m infra.gateway_app::test --url https://...modal.run --key sam2_...`
    """
    import base64
    import io

    import httpx
    import numpy as np
    from PIL import Image

    pixels = np.zeros((480, 640, 3), dtype=np.uint8)
    pixels[120:360, 160:480] = (200, 80, 40)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    image = base64.b64encode(buffer.getvalue()).decode()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=300) as client:
        click = {
            "image": image,
            "point_coords": [[320, 240]],
            "point_labels": [1],
            "mask_format": "rle",
        }
        first = client.post("/v1/segment", json=click).json()
        again = client.post(
            "/v1/segment", json={"image_id": first["image_id"], "point_coords": [[330, 250]]}
        ).json()
        auto = client.post(
            "/v1/segment",
            json={"image_id": first["image_id"], "mode": "auto", "mask_format": "rle"},
        ).json()
    print(f"model: {first['model']}")
    print(f"first click: score {first['score']:.3f}, timings {first['timings_ms']}")
    print(f"second click (cached={again['cached']}): timings {again['timings_ms']}")
    print(f"auto: {auto['count']} masks, timings {auto['timings_ms']}")
