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

import os
from pathlib import Path
from typing import TYPE_CHECKING

import modal
import sam2_gateway

from infra.settings import DeploySettings

if TYPE_CHECKING:
    from sam2_gateway import GatewaySettings

settings = DeploySettings()
IMAGE_ENV = settings.as_env() | {
    "SAM2_GATEWAY_INFERENCE_TIMEOUT_S": str(settings.call_timeout_s),
    "SAM2_GATEWAY_INFERENCE_CONNECT_TIMEOUT_S": "10",  # Modal's proxy, which accepts at once
    # With no live GPU container Modal's proxy answers 503 at once and starts one: the gateway
    # asks again with backoff for as long as a start may take (and the call's own time allows)
    # instead of passing the 503 on (sam2_gateway/backends.py).
    "SAM2_GATEWAY_INFERENCE_STARTUP_WAIT_S": str(settings.startup_timeout_s),
    "SAM2_GATEWAY_INFERENCE_START_ESTIMATE_S": str(settings.cold_start_estimate_s),
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


API_OPTIONS: dict[str, object] = {
    "secrets": [gateway_secret],
    "scaledown_window": 300,
    "timeout": settings.call_timeout_s + 30,  # outlives the inference call it waits for
}
CONCURRENCY = settings.gateway_max_inputs


@app.function(**API_OPTIONS)  # type: ignore[arg-type]
@modal.concurrent(max_inputs=CONCURRENCY)
@modal.asgi_app()
def api() -> object:
    from sam2_gateway import create_app

    return create_app(gateway_settings())


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
