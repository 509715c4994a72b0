"""The Modal apps, offline: they import without a token, their specs are what the settings
say, keep-warm follows the schedule, and the inference class answers like the service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sam2_contract import decode_mask
from support import IMAGES, b64, encode

from infra.keepwarm import desired_min_containers
from infra.settings import DeploySettings

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _probe(code: str, **env: str) -> Any:
    """Import the apps in a fresh interpreter with no Modal credentials, and report on them."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "SAM2_DEPLOY_"))}
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        env=clean | {"HOME": "/nonexistent", "MODAL_CONFIG_PATH": "/nonexistent/.modal.toml"} | env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


SPEC_PROBE = """
import json
import infra.inference_app as ia, infra.gateway_app as ga
spec = ia.Inference._get_class_service_function()._spec_
print(json.dumps({
    "gpu": spec.gpus,
    "volumes": {path: vol._name for path, vol in spec.volumes.items()},
    "class_options": {k: v for k, v in ia.CLASS_OPTIONS.items() if k != "volumes"},
    "concurrency": ia.CONCURRENCY,
    "hf_cache": ia.IMAGE_ENV["HF_HUB_CACHE"],
    "model": ia.IMAGE_ENV["SAM2_MODEL"],
    "cron": ia.KEEP_WARM_SCHEDULE.proto_message.cron.cron_string,
    "gateway_secrets": [s._name for s in ga.api._spec_.secrets],
    "gateway_gpu": ga.api._spec_.gpus,
    "gateway_concurrency": ga.CONCURRENCY,
    "gateway_backend": ga.IMAGE_ENV["SAM2_GATEWAY_INFERENCE_BACKEND"],
    "gateway_calls": [ga.IMAGE_ENV[f"SAM2_GATEWAY_MODAL_{k}"] for k in ("APP", "CLASS")],
    "deploy_env_warm_days": ia.IMAGE_ENV["SAM2_DEPLOY_WARM_DAYS"],
}))
"""


def test_apps_import_without_a_token_and_have_the_default_specs() -> None:
    spec = _probe(SPEC_PROBE)
    assert spec["gpu"] == "H200"
    assert spec["volumes"] == {"/cache/hf": "sam2-hf-cache"}
    assert spec["hf_cache"] == "/cache/hf"
    assert spec["model"] == "large"
    assert spec["class_options"] == {
        "gpu": "H200",
        "enable_memory_snapshot": True,
        "experimental_options": None,
        "scaledown_window": 300,
        "max_containers": 10,
        "timeout": 600,
    }
    assert spec["concurrency"] == 4
    assert spec["cron"] == "*/10 * * * *"
    assert spec["gateway_secrets"] == ["sam2-gateway"]
    assert spec["gateway_gpu"] is None  # the gateway runs on CPU
    assert spec["gateway_concurrency"] == 100
    assert spec["gateway_backend"] == "modal"
    assert spec["gateway_calls"] == ["sam2-inference", "Inference"]
    assert json.loads(spec["deploy_env_warm_days"]) == ["mon", "tue", "wed", "thu", "fri"]


def test_settings_change_the_specs() -> None:
    spec = _probe(
        SPEC_PROBE,
        SAM2_DEPLOY_GPU="H100",
        SAM2_DEPLOY_GPU_SNAPSHOT="true",
        SAM2_DEPLOY_MODEL="small",
        SAM2_DEPLOY_MAX_CONTAINERS="3",
        SAM2_DEPLOY_GATEWAY_SECRET="other-secret",
        SAM2_DEPLOY_WARM_CHECK_CRON="*/5 * * * *",
    )
    assert spec["gpu"] == "H100"
    assert spec["class_options"]["experimental_options"] == {"enable_gpu_snapshot": True}
    assert spec["class_options"]["max_containers"] == 3
    assert spec["model"] == "small"
    assert spec["gateway_secrets"] == ["other-secret"]
    assert spec["cron"] == "*/5 * * * *"


def test_deploy_settings_survive_the_trip_through_the_image_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chosen = DeploySettings(gpu="L4", warm_days=["sat", "sun"], warm_timezone="Asia/Tokyo")
    for name, value in chosen.as_env().items():
        monkeypatch.setenv(name, value)
    assert DeploySettings() == chosen


WEEKDAYS_9_TO_17_BERLIN = DeploySettings(
    warm_days=["mon", "tue", "wed", "thu", "fri"],
    warm_start_hour=9,
    warm_end_hour=17,
    warm_timezone="Europe/Berlin",
    warm_containers=2,
)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2026-11-23 08:00+00:00", 2),  # Monday 09:00 in Berlin (UTC+1): window opens
        ("2026-11-23 07:59+00:00", 0),  # Monday 08:59 in Berlin
        ("2026-11-23 15:59+00:00", 2),  # Monday 16:59 in Berlin
        ("2026-11-23 16:00+00:00", 0),  # Monday 17:00 in Berlin: window closed
        ("2026-11-28 12:00+00:00", 0),  # Saturday
        ("2026-07-06 07:30+00:00", 2),  # Monday 09:30 in Berlin in summer (UTC+2)
        ("2026-07-06 15:30+00:00", 0),  # Monday 17:30 in Berlin in summer
        ("2026-11-23 09:00-05:00", 2),  # 09:00 in New York is 15:00 in Berlin
    ],
)
def test_keep_warm_follows_days_hours_and_time_zone(moment: str, expected: int) -> None:
    now = datetime.fromisoformat(moment)
    assert desired_min_containers(now, WEEKDAYS_9_TO_17_BERLIN) == expected


def test_keep_warm_across_midnight_in_another_zone() -> None:
    tokyo = DeploySettings(
        warm_days=["mon"], warm_start_hour=0, warm_end_hour=6, warm_timezone="Asia/Tokyo"
    )
    sunday_utc = datetime(2026, 11, 22, 16, 0, tzinfo=ZoneInfo("UTC"))  # Monday 01:00 in Tokyo
    assert desired_min_containers(sunday_utc, tokyo) == 1


def test_inference_class_locally_answers_like_the_inference_service(
    modal_inference: Any, client: TestClient
) -> None:
    pixels = IMAGES["portrait"]
    click = {"point_coords": [[50, 80]], "point_labels": [1], "mask_format": "rle"}
    service = client.post("/v1/segment", json={"image": b64(encode(pixels))} | click).json()
    request = json.dumps({"image_id": service["image_id"]} | click).encode()
    answer = modal_inference.segment_frame.local(
        request, pixels.tobytes(), [200, 120], namespace="t", request_id="r"
    )
    assert answer["status"] == 200
    body = json.loads(answer["body"])
    assert np.array_equal(decode_mask(body["mask"]), decode_mask(service["mask"]))
    assert body["all_scores"] == pytest.approx(service["all_scores"], abs=1e-5)
    assert answer["masks"] == 1
    assert answer["model_ms"] > 0
    health = modal_inference.health.local()
    assert health["state"] == "ready"
    assert health["model"]["name"] == "tiny"
    assert health["random_weights"] is True
