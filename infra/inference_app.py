# # SAM2 inference on a Modal GPU
#
# The GPU side of the service: a Modal Server running the inference service's own HTTP app (the
# same one the local stack runs), with a SAM 2.1 model and its image-embedding cache. The gateway
# reaches it over one HTTP hop through Modal's proxy, with a proxy token, and sends each image's
# upload and clicks with the same `Modal-Session-ID`, so Modal's sticky routing (rendezvous
# hashing) brings them to the container holding that image's embedding. Deploy with
#
#     modal deploy -m infra.inference_app
#
# Settings come from `SAM2_DEPLOY_*` variables at deploy time (see infra/settings.py) and are
# baked into the image, so the containers see what the deploying user chose.

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import modal

from infra.keepwarm import desired_min_containers
from infra.pins import CONSTRAINTS, REMOTE_CONSTRAINTS, pins
from infra.settings import DeploySettings

settings = DeploySettings()

# Hub weights are cached in a Volume: the first container downloads them once and commits the
# Volume at once; every later container (and every snapshot) reads them from there.
HF_CACHE = "/cache/hf"
CLIPS = "/clips"
PORT = 8000
TORCH = pins("torch", "torchvision")  # the versions CI tests against (constraints.txt)
IMAGE_ENV = settings.as_env() | {
    "HF_HUB_CACHE": HF_CACHE,
    "SAM2_VIDEO_DIR": CLIPS,
    "SAM2_MODEL": settings.model,
    "SAM2_WEIGHTS": settings.weights,
    "SAM2_CACHE_MAX_BYTES": str(settings.cache_max_bytes),
    "SAM2_COMPILE": settings.compile,
    # AOTInductor packages (SAM2_COMPILE=aot) live beside the weights they were compiled with.
    "SAM2_AOT_DIR": f"{HF_CACHE}/sam2-aot",
    "SAM2_HOST": "0.0.0.0",  # noqa: S104 (the container's port, reached only through Modal's proxy)
    "SAM2_PORT": str(PORT),
}

# ## The image
#
# sam2's optional CUDA extension only fills small holes in masks and needs nvcc to build;
# SAM2_BUILD_CUDA=0 keeps the image slim and the results identical to the tested ones.

PACKAGES = (
    # services/inference/pyproject.toml's dependencies besides torch (tests/infra checks none
    # is missing)...
    *pins("sam2"),
    "huggingface_hub>=0.26",
    "opencv-python-headless>=4.9",
    "fastapi>=0.115",
    "uvicorn>=0.30",
    "pydantic-settings>=2.5",
    "python-multipart>=0.0.18",
    "av>=14",
    "onnx>=1.17",
    "onnxscript>=0.2",
    # ...and the contract's (shared/pyproject.toml)
    "pydantic>=2.9,<3",
    "pillow>=10.4",
    "numpy>=1.26",
    "httpx>=0.27",
)

image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install(*TORCH)
    .env({"SAM2_BUILD_CUDA": "0"})
    .pip_install(*PACKAGES)
    .env(IMAGE_ENV)
    .add_local_python_source("sam2_contract", "sam2_inference", "infra")
    .add_local_file(CONSTRAINTS, REMOTE_CONSTRAINTS)  # infra.pins reads it in the container too
)

app = modal.App(settings.inference_app, image=image)
hf_volume = modal.Volume.from_name(settings.hf_volume, create_if_missing=True)
clips_volume = modal.Volume.from_name(settings.clips_volume, create_if_missing=True)


with image.imports():  # type: ignore[no-untyped-call]
    from sam2_inference import InferenceSettings
    from sam2_inference.api.serving import load_for_snapshot, move_to_accelerator, serve_engine
    from sam2_inference.video.service import VideoService
    from sam2_inference.video.store import VideoStore


# ## The inference Server
#
# Why a memory snapshot: importing torch and building SAM2 takes tens of seconds on a cold
# container. `snap=True` does that once, on the CPU with CUDA out of reach (a CUDA state seen
# while snapshotting comes back with zero devices), and Modal restores later containers from the
# snapshot; `snap=False` then moves the weights to the GPU (or refuses to start without one),
# warms up and starts serving. With `SAM2_DEPLOY_GPU_SNAPSHOT=true` (Modal's GPU snapshots, an
# alpha feature) GPU memory is kept in the snapshot too, so the move, the warm-up and the CUDA
# graphs it captures happen inside `snap=True`, once, and a restore only starts serving. What
# it saves a cold start can only be measured on Modal (docs/deploy.md).
# Why H200 by default: the large model's encoder in bf16 is most of
# a first click; the fastest card makes it shortest (H100, A100 and L4 work too).
# Why these concurrency numbers: the engine runs one request's model work at a time (a lock),
# so a container takes two at once (one on the GPU, one decoding or encoding masks) before Modal
# adds a container, and answers 429 beyond `max_concurrency`.

SERVER_OPTIONS: dict[str, Any] = {
    "gpu": settings.gpu,
    "volumes": {HF_CACHE: hf_volume, CLIPS: clips_volume},
    "enable_memory_snapshot": True,
    "experimental_options": {"enable_gpu_snapshot": True} if settings.gpu_snapshot else None,
    "port": PORT,
    "startup_timeout": settings.startup_timeout_s,
    "target_concurrency": settings.target_concurrency,
    "max_concurrency": settings.max_concurrency,
    "scaledown_window": settings.scaledown_window_s,
    "max_containers": settings.max_containers,
    "routing_region": settings.routing_region,
    # The keep-warm minimum as the schedule says at deploy time: a deploy resets the
    # autoscaler to these options, and the next keep-warm tick may be ten minutes away.
    "min_containers": desired_min_containers(datetime.now(UTC), settings),
}


@app.server(**SERVER_OPTIONS)
class Inference:
    @modal.enter(snap=True)
    def load(self) -> None:
        """Weights from the Volume (or the hub, the first time) into CPU memory; with GPU
        snapshots, onto the GPU and warmed up too."""
        self.engine = load_for_snapshot(InferenceSettings())
        if self.engine.info.weights == "huggingface":
            hf_volume.commit()  # a first download is kept even if this container dies
        # The decoder for clicks decoded on the client: exported once per checkpoint, on the
        # first request for it (the export touches CUDA, not allowed before a snapshot), and
        # kept in the Volume beside the weights; a later snapshot holds it, read from there.
        self.engine.decoder_export.preload()
        self.engine.decoder_export.on_written = hf_volume.commit
        if settings.gpu_snapshot:
            self.prepare()

    @modal.enter(snap=False)
    def start(self) -> None:
        """After each restore: onto the GPU (or refuse) and warmed up, unless the snapshot
        holds that already; then serve."""
        if not settings.gpu_snapshot:
            self.prepare()
        served = InferenceSettings()
        # Clips on the shared Volume: committed when stored, reloaded before one is missing.
        store = VideoStore(
            served.video_dir, on_stored=clips_volume.commit, on_missing=clips_volume.reload
        )
        self.server = serve_engine(self.engine, served, videos=VideoService(served, store=store))

    @modal.exit()
    def stop(self) -> None:
        self.server.stop()

    def prepare(self) -> None:
        """Onto the GPU (or refuse to start without one), then a warm-up that captures the
        CUDA graphs and, with SAM2_COMPILE=aot, compiles or loads the encoder."""
        move_to_accelerator(self.engine, require_gpu=settings.require_gpu)
        acceleration = self.engine.acceleration
        if acceleration is not None and acceleration.aot == "compiled":
            hf_volume.commit()  # the compiled encoder, for every later container to load


# ## Keep-warm
#
# Re-applied every few minutes (idempotent: a missed run heals at the next): `warm_containers`
# GPU containers inside the configured days and hours, zero outside them; a deploy applies the
# minimum of its moment (`min_containers` above). Each container warms itself up when it
# starts, so nothing needs to call it. The function runs on a small CPU image of its own: it
# only talks to Modal's API, and the torch image would cost it a far longer start.

KEEP_WARM_SCHEDULE = modal.Cron(settings.warm_check_cron)
keep_warm_image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install("pydantic>=2.9,<3", "pydantic-settings>=2.5", "numpy>=1.26", "pillow>=10.4")
    .env(settings.as_env())
    .add_local_python_source("sam2_contract", "infra")
    .add_local_file(CONSTRAINTS, REMOTE_CONSTRAINTS)  # this module reads it on import
)


@app.function(schedule=KEEP_WARM_SCHEDULE, timeout=120, image=keep_warm_image)
def keep_warm() -> int:
    wanted = desired_min_containers(datetime.now(UTC), settings)
    server = modal.Server.from_name(settings.inference_app, settings.inference_class)
    server.autoscaler.update(min_containers=wanted)
    return wanted


# ## Smoke test
#
# `modal run -m infra.inference_app` asks the deployed Server whether it is ready.


@app.local_entrypoint()
def smoke() -> None:
    import json
    import os
    import urllib.request

    url = modal.Server.from_name(settings.inference_app, settings.inference_class).get_url()
    request = urllib.request.Request(f"{url}/readyz")  # noqa: S310 (Modal's https URL)
    # The gateway's proxy token (docs/deploy.md), if this shell has it.
    request.add_header("Modal-Key", os.environ.get("SAM2_GATEWAY_INFERENCE_PROXY_KEY", ""))
    request.add_header("Modal-Secret", os.environ.get("SAM2_GATEWAY_INFERENCE_PROXY_SECRET", ""))
    with urllib.request.urlopen(request, timeout=600) as answer:  # noqa: S310
        print(json.dumps(json.load(answer), indent=2))
