# # SAM2 inference on a Modal GPU
#
# The GPU side of the service: one class that holds a SAM 2.1 model and its image-embedding
# cache, answering the gateway's frames (request line + decoded pixels). Deploy with
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
from infra.settings import DeploySettings

settings = DeploySettings()

# Hub weights are cached in a Volume: the first container downloads them once; every later
# container (and every snapshot) reads them from there.
HF_CACHE = "/cache/hf"
TORCH = ("torch==2.14.1", "torchvision==0.29.1")  # the versions CI tests against
IMAGE_ENV = settings.as_env() | {
    "HF_HUB_CACHE": HF_CACHE,
    "SAM2_MODEL": settings.model,
    "SAM2_WEIGHTS": settings.weights,
    "SAM2_CACHE_MAX_BYTES": str(settings.cache_max_bytes),
}

# ## The image
#
# sam2's optional CUDA extension only fills small holes in masks and needs nvcc to build;
# SAM2_BUILD_CUDA=0 keeps the image slim and the results identical to the tested ones.

image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install(*TORCH)
    .env({"SAM2_BUILD_CUDA": "0"})
    .pip_install(
        "sam2==1.1.0",
        "huggingface_hub>=0.26",
        "opencv-python-headless>=4.9",
        "fastapi>=0.115",
        "pydantic-settings>=2.5",
        "pillow>=10.4",
        "numpy>=1.26",
        "uvicorn>=0.30",
    )
    .env(IMAGE_ENV)
    .add_local_python_source("sam2_contract", "sam2_inference", "infra")
)

app = modal.App(settings.inference_app, image=image)
hf_volume = modal.Volume.from_name(settings.hf_volume, create_if_missing=True)

with image.imports():  # type: ignore[no-untyped-call]
    import torch
    from sam2_inference import InferenceSettings, Sam2Engine
    from sam2_inference.frames import answer_frame


# ## The inference class
#
# Why a memory snapshot: importing torch and building SAM2 takes tens of seconds on a cold
# container. `snap=True` does that once, on the CPU, and Modal restores later containers from
# the snapshot; `snap=False` then moves the weights to the GPU and warms up, per container.
# Why H200 by default: the large model's encoder in bf16 is the whole cost of a first click;
# the fastest card makes it shortest (H100, A100 and L4 work too; see docs/deploy.md).


CLASS_OPTIONS: dict[str, Any] = {
    "gpu": settings.gpu,
    "volumes": {HF_CACHE: hf_volume},
    "enable_memory_snapshot": True,
    "experimental_options": {"enable_gpu_snapshot": True} if settings.gpu_snapshot else None,
    "scaledown_window": settings.scaledown_window_s,
    "max_containers": settings.max_containers,
    "timeout": settings.timeout_s,
}
CONCURRENCY = settings.max_inputs


@app.cls(**CLASS_OPTIONS)
@modal.concurrent(max_inputs=CONCURRENCY)
class Inference:
    @modal.enter(snap=True)
    def load(self) -> None:
        """Weights from the Volume (or the hub, the first time) into CPU memory."""
        self.engine = Sam2Engine.from_settings(InferenceSettings(device="cpu"))

    @modal.enter(snap=False)
    def to_gpu(self) -> None:
        """After each restore: onto the GPU (bf16 autocast, TF32), then one warm-up click."""
        if torch.cuda.is_available():
            self.engine.to(torch.device("cuda"))
        self.engine.warm_up()

    @modal.method()
    def segment_frame(
        self,
        request_json: bytes,
        pixels: bytes | None,
        shape: list[int] | None,
        *,
        namespace: str,
        request_id: str,
    ) -> dict[str, Any]:
        """The gateway's call: what /internal/segment would answer, as a dict."""
        return answer_frame(
            self.engine, request_json, pixels, shape, namespace=namespace, request_id=request_id
        )

    @modal.method()
    def health(self) -> dict[str, Any]:
        health: dict[str, Any] = self.engine.health().model_dump(mode="json")
        return health


# ## Keep-warm
#
# Re-applied every few minutes (idempotent: a missed run heals at the next): `warm_containers`
# GPU containers inside the configured days and hours, zero outside them.


KEEP_WARM_SCHEDULE = modal.Cron(settings.warm_check_cron)


@app.function(schedule=KEEP_WARM_SCHEDULE, timeout=120)
def keep_warm() -> int:
    wanted = desired_min_containers(datetime.now(UTC), settings)
    # Modal adds update_autoscaler to the instances of a deployed class.
    Inference().update_autoscaler(min_containers=wanted)  # type: ignore[attr-defined]
    if wanted and settings.warm_ping:
        Inference().health.remote()
    return wanted


# ## Smoke test
#
# `modal run -m infra.inference_app` sends a generated image straight to the deployed class.


@app.local_entrypoint()
def smoke() -> None:
    import json

    import numpy as np

    pixels = np.zeros((480, 640, 3), dtype=np.uint8)
    pixels[120:360, 160:480] = (200, 80, 40)
    request = json.dumps({"point_coords": [[320, 240]], "mask_format": "rle"}).encode()
    answer = Inference().segment_frame.remote(
        request, pixels.tobytes(), [480, 640], namespace="smoke", request_id="smoke"
    )
    body = json.loads(answer["body"])
    print(f"status {answer['status']}; score {body.get('score')}; timings {body.get('timings_ms')}")
