"""The Modal apps, offline: they import without a token, their specs are what the settings
say, keep-warm follows the schedule, the Server's container code loads without CUDA, refuses to
serve without the GPU it asked for, and answers like the service."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import modal
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from sam2_contract import decode_mask
from sam2_inference import Sam2Engine
from sam2_inference.api.serving import GpuMissingError
from support import IMAGES, RunningServer, b64, encode, free_port, post_segment, run_hook

import infra.inference_app
from infra.keepwarm import desired_min_containers, warm_hours_per_week
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
import modal
import infra.inference_app as ia, infra.gateway_app as ga
from modal._partial_function import _PartialFunctionFlags as F, _find_partial_methods_for_user_cls
from modal._utils.async_utils import synchronizer
from modal.mount import _Mount

def mounted(image):  # the files an image's local mounts put into a container, found offline
    found, todo, seen = [], [synchronizer._translate_in(image)], set()
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, _Mount):
            found += [str(remote) for e in obj.entries for _, remote in e.get_files_to_upload()]
        todo += obj._deps() if getattr(obj, "_deps", None) else []
    return sorted(found)

spec = ia.Inference._get_service_function()._spec_
user_cls = ia.Inference._get_user_cls()
hooks = {
    flag: sorted(_find_partial_methods_for_user_cls(user_cls, getattr(F, flag)))
    for flag in ("ENTER_PRE_SNAPSHOT", "ENTER_POST_SNAPSHOT", "EXIT", "CALLABLE_INTERFACE")
}
print(json.dumps({
    "is_server": isinstance(ia.Inference, modal.Server),
    "gpu": spec.gpus,
    "volumes": {path: vol._name for path, vol in spec.volumes.items()},
    "server_options": {k: v for k, v in ia.SERVER_OPTIONS.items() if k != "volumes"},
    "hooks": hooks,
    "hf_cache": ia.IMAGE_ENV["HF_HUB_CACHE"],
    "video_dir": ia.IMAGE_ENV["SAM2_VIDEO_DIR"],
    "model": ia.IMAGE_ENV["SAM2_MODEL"],
    "compile": ia.IMAGE_ENV["SAM2_COMPILE"],
    "aot_dir": ia.IMAGE_ENV["SAM2_AOT_DIR"],
    "listens": [ia.IMAGE_ENV["SAM2_HOST"], ia.IMAGE_ENV["SAM2_PORT"]],
    "cron": ia.KEEP_WARM_SCHEDULE.proto_message.cron.cron_string,
    "gateway_secrets": [s._name for s in ga.api._spec_.secrets],
    "gateway_gpu": ga.api._spec_.gpus,
    "gateway_concurrency": ga.CONCURRENCY,
    "gateway_timeouts": [ga.IMAGE_ENV[f"SAM2_GATEWAY_INFERENCE_{k}"]
                         for k in ("TIMEOUT_S", "CONNECT_TIMEOUT_S", "STARTUP_WAIT_S")],
    "deploy_env_warm_days": ia.IMAGE_ENV["SAM2_DEPLOY_WARM_DAYS"],
    "gateway_files": mounted(ga.image),
    "keep_warm_on_its_own_image": (
        ia.keep_warm._spec_.image is synchronizer._translate_in(ia.keep_warm_image)
    ),
    "min_containers_now": ia.desired_min_containers(ia.datetime.now(ia.UTC), ia.settings),
    "inference_files": mounted(ia.image),
}))
"""


def test_apps_import_without_a_token_and_have_the_default_specs() -> None:
    spec = _probe(SPEC_PROBE)
    assert spec["is_server"] is True  # one HTTP hop: a Modal Server, no Modal method calls
    assert spec["hooks"] == {
        "ENTER_PRE_SNAPSHOT": ["load"],
        "ENTER_POST_SNAPSHOT": ["start"],
        "EXIT": ["stop"],
        "CALLABLE_INTERFACE": [],
    }
    assert spec["gpu"] == "H200"
    # the hub's weights, and the clips every container must read (a session's container may
    # not be the one its clip was uploaded to)
    assert spec["volumes"] == {"/cache/hf": "sam2-hf-cache", "/clips": "sam2-clips"}
    assert spec["hf_cache"] == "/cache/hf"
    assert spec["video_dir"] == "/clips"  # where the clips Volume is mounted
    assert spec["model"] == "large"
    assert spec["compile"] == "off"  # until AOTInductor's gain is measured on a GPU
    assert spec["aot_dir"].startswith(spec["hf_cache"] + "/")  # kept in the weights Volume
    assert spec["listens"] == ["0.0.0.0", "8000"]
    assert spec["keep_warm_on_its_own_image"] is True  # not the torch image
    assert spec["server_options"] == {
        "min_containers": spec["min_containers_now"],  # a deploy applies keep-warm at once
        "gpu": "H200",
        "enable_memory_snapshot": True,
        "experimental_options": None,
        "port": 8000,
        "startup_timeout": 600,  # a cold start has its own, long timeout...
        "target_concurrency": 2,  # one request on the GPU, one decoding or encoding
        "max_concurrency": 8,
        "scaledown_window": 300,
        "max_containers": 10,
        "routing_region": "us-east",
    }
    # ...a call waits about a minute, a cold start within it
    assert spec["gateway_timeouts"] == ["60", "10", "600"]
    assert spec["cron"] == "*/10 * * * *"
    assert spec["gateway_secrets"] == ["sam2-gateway"]
    assert spec["gateway_gpu"] is None  # the gateway runs on CPU
    assert spec["gateway_concurrency"] == 100
    assert json.loads(spec["deploy_env_warm_days"]) == ["mon", "tue", "wed", "thu", "fri"]


def test_the_gateway_image_ships_the_playground_and_the_alembic_template() -> None:
    """Modal's add_local_python_source takes only .py files by default: the built page and
    Alembic's template must be in the gateway image's mounts all the same."""
    files = _probe(SPEC_PROBE)["gateway_files"]
    page = "/root/sam2_gateway/playground/"
    assert page + "index.html" in files
    assets = [f for f in files if f.startswith(page + "assets/")]
    assert any(f.endswith(".js") for f in assets)
    assert any(f.endswith(".css") for f in assets)
    built = Path(REPO) / "services" / "gateway" / "src" / "sam2_gateway" / "playground"
    assert len(assets) == len(list((built / "assets").iterdir()))  # every asset, none left out
    assert "/root/sam2_gateway/migrations/script.py.mako" in files
    assert any(f.startswith("/root/sam2_gateway/migrations/versions/") for f in files)
    assert not any("__pycache__" in f for f in files)


@pytest.mark.parametrize(
    ("project", "module"),
    [("services/gateway", "infra.gateway_app"), ("services/inference", "infra.inference_app")],
)
def test_each_modal_image_installs_every_dependency_of_its_service(
    project: str, module: str
) -> None:
    """A package added to a service (or the contract) must reach its Modal image too."""
    import importlib
    import tomllib

    def names(requirements: Any) -> set[str]:
        return {
            re.split(r"[<>=;\[ ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements
        }

    needed: set[str] = set()
    for path in (project, "shared"):
        with open(os.path.join(REPO, path, "pyproject.toml"), "rb") as file:
            needed |= names(tomllib.load(file)["project"]["dependencies"])
    local = {"sam2-contract"}  # added to the image as source
    local_only = {"uvloop", "httptools"}  # uvicorn's fast loop: scripts/dev, not Modal's ASGI
    pinned_apart = {"torch", "torchvision"}  # the CUDA build, installed first (infra/TORCH)
    packages = importlib.import_module(module).PACKAGES
    assert needed - local - local_only - pinned_apart <= names(packages)


def test_settings_change_the_specs() -> None:
    spec = _probe(
        SPEC_PROBE,
        SAM2_DEPLOY_GPU="H100",
        SAM2_DEPLOY_GPU_SNAPSHOT="true",
        SAM2_DEPLOY_MODEL="small",
        SAM2_DEPLOY_MAX_CONTAINERS="3",
        SAM2_DEPLOY_TARGET_CONCURRENCY="1",
        SAM2_DEPLOY_CALL_TIMEOUT_S="30",
        SAM2_DEPLOY_GATEWAY_SECRET="other-secret",
        SAM2_DEPLOY_WARM_CHECK_CRON="*/5 * * * *",
    )
    assert spec["gpu"] == "H100"
    assert spec["server_options"]["experimental_options"] == {"enable_gpu_snapshot": True}
    assert spec["server_options"]["max_containers"] == 3
    assert spec["server_options"]["target_concurrency"] == 1
    assert spec["gateway_timeouts"] == ["30", "10", "600"]
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


@pytest.mark.parametrize(
    "chosen",
    [
        DeploySettings(),
        WEEKDAYS_9_TO_17_BERLIN,
        DeploySettings(warm_days=["sun"], warm_end_hour=24),
    ],
)
def test_warm_hours_per_week_are_the_hours_keep_warm_holds_containers(
    chosen: DeploySettings,
) -> None:
    monday = datetime(2026, 11, 23, tzinfo=ZoneInfo(chosen.warm_timezone))
    held = sum(
        desired_min_containers(monday + timedelta(hours=hour), chosen) > 0 for hour in range(168)
    )
    assert warm_hours_per_week(chosen) == held > 0


def test_keep_warm_across_midnight_in_another_zone() -> None:
    tokyo = DeploySettings(
        warm_days=["mon"], warm_start_hour=0, warm_end_hour=6, warm_timezone="Asia/Tokyo"
    )
    sunday_utc = datetime(2026, 11, 22, 16, 0, tzinfo=ZoneInfo("UTC"))  # Monday 01:00 in Tokyo
    assert desired_min_containers(sunday_utc, tokyo) == 1


def test_the_modal_server_answers_like_the_inference_service(
    modal_server: RunningServer, client: TestClient
) -> None:
    """The container code (snapshot hook, start hook) serves the very HTTP app of the local
    service: same masks, the weights header, ready."""
    pixels = IMAGES["portrait"]
    click = {"image": b64(encode(pixels)), "point_coords": [[50, 80]], "mask_format": "rle"}
    service = post_segment(client, click).json()
    with httpx.Client(base_url=modal_server.url, timeout=60) as server:
        answer = post_segment(server, click)
    assert answer.status_code == 200
    assert answer.headers["x-sam2-weights"] == "random"
    body = answer.json()
    assert np.array_equal(decode_mask(body["mask"]), decode_mask(service["mask"]))
    assert body["all_scores"] == pytest.approx(service["all_scores"], abs=1e-5)
    ready = httpx.get(f"{modal_server.url}/readyz").json()
    assert (ready["state"], ready["model"]["name"], ready["model"]["device"]) == (
        "ready",
        "tiny",
        "cpu",
    )


def _every_cuda_call_raises(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("torch.cuda was called while a snapshot would be taken")

    guarded = []
    for name in dir(torch.cuda):
        value = getattr(torch.cuda, name)
        if inspect.isfunction(value) or inspect.isbuiltin(value):
            monkeypatch.setattr(torch.cuda, name, refuse)
            guarded.append(name)
    return guarded


@pytest.fixture
def deployed_env(checkpoint: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> int:
    """The environment a container of the deployed Server sees, with the test checkpoint."""
    port = free_port()
    for name, value in {
        "SAM2_AOT_DIR": str(tmp_path / "aot"),  # the weights Volume's folder, on Modal
        "SAM2_WEIGHTS": str(checkpoint),
        "SAM2_MODEL": "tiny",
        "SAM2_HOST": "127.0.0.1",
        "SAM2_PORT": str(port),
    }.items():
        monkeypatch.setenv(name, value)
    # A Volume commit is a Modal call (it needs an account); here the folder is a temporary one.
    monkeypatch.setattr(infra.inference_app.hf_volume, "commit", lambda: None)
    return port


def test_the_snapshot_hook_loads_without_touching_cuda(
    deployed_env: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = infra.inference_app.Inference._get_user_cls()()
    with monkeypatch.context() as guard:
        guarded = _every_cuda_call_raises(guard)
        assert {"is_available", "device_count", "init", "get_device_properties"} <= set(guarded)
        run_hook(container, "load")
    assert container.engine.device.type == "cpu"
    assert next(container.engine.model.parameters()).device.type == "cpu"


def test_the_snapshot_holds_the_exported_decoder_and_the_volume_keeps_it(
    deployed_env: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The first container exports the decoder on the first request for it and commits it to
    the weights Volume (a Modal call: recorded here); the next container's snapshot hook reads
    it from there, so it exports nothing, commits nothing, and serves the same file and ETag."""
    commits: list[str] = []
    monkeypatch.setattr(infra.inference_app.hf_volume, "commit", lambda: commits.append("commit"))
    first = infra.inference_app.Inference._get_user_cls()()
    run_hook(first, "load")
    assert commits == []
    onnx, etag = first.engine.decoder_export.get()  # what GET /v1/models/tiny/decoder.onnx runs
    assert commits == ["commit"]
    assert first.engine.decoder_export.written is True
    kept = first.engine.aot_store.decoder_path(18)
    assert [p.name for p in (tmp_path / "aot").iterdir()] == [kept.name]
    assert kept.read_bytes() == onnx
    second = infra.inference_app.Inference._get_user_cls()()
    with monkeypatch.context() as guard:
        _every_cuda_call_raises(guard)  # reading it is safe before a snapshot
        run_hook(second, "load")
    assert second.engine.decoder_export.written is False
    assert commits == ["commit"]
    assert second.engine.decoder_export.get() == (onnx, etag)


def test_without_the_requested_gpu_the_server_refuses_to_become_ready(
    deployed_env: int, caplog: pytest.LogCaptureFixture
) -> None:
    """After a restore with no GPU (CUDA sees none here) a deployment that asked for one fails
    its start hook: Modal never routes to it, nothing is served on the CPU."""
    assert infra.inference_app.settings.require_gpu is True
    container = infra.inference_app.Inference._get_user_cls()()
    run_hook(container, "load")
    with pytest.raises(GpuMissingError):
        run_hook(container, "start")
    assert "NO GPU" in caplog.text
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{deployed_env}/readyz")


@pytest.mark.parametrize("gpu_snapshot", [False, True])
def test_the_hooks_move_warm_and_serve_in_order(
    deployed_env: int, monkeypatch: pytest.MonkeyPatch, gpu_snapshot: bool
) -> None:
    """Without GPU snapshots the model reaches the GPU and warms up (graphs captured) after
    each restore; with them, inside the snapshot, so a restore only serves. The real functions
    run (no GPU here: the model stays on the CPU and warms up there); only their
    order is recorded. What GPU snapshots save a cold start is measurable on Modal only."""
    app = infra.inference_app
    chosen = {"gpu_snapshot": gpu_snapshot, "require_gpu": False}
    monkeypatch.setattr(app, "settings", app.settings.model_copy(update=chosen))
    calls: list[tuple[str, str]] = []
    hook = ["none"]
    for name in ("load_for_snapshot", "move_to_accelerator", "serve_engine"):
        real = getattr(app, name)

        def recorded(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append((hook[0], _name))
            return _real(*args, **kwargs)

        monkeypatch.setattr(app, name, recorded)
    warmed: list[str] = []
    real_warm_up = Sam2Engine.warm_up

    def warm_up(engine: Sam2Engine) -> None:
        warmed.append(hook[0])
        real_warm_up(engine)

    monkeypatch.setattr(Sam2Engine, "warm_up", warm_up)
    container = app.Inference._get_user_cls()()
    for name in ("load", "start"):
        hook[0] = name
        run_hook(container, name)
    try:
        prepared = "load" if gpu_snapshot else "start"
        assert calls == [
            ("load", "load_for_snapshot"),
            (prepared, "move_to_accelerator"),
            ("start", "serve_engine"),
        ]
        assert warmed == [prepared]  # the warm-up (graph capture on a GPU) with the move
        assert httpx.get(f"http://127.0.0.1:{deployed_env}/readyz").status_code == 200
    finally:
        run_hook(container, "stop")


def test_the_gateway_finds_the_inference_server_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """At the Modal boundary: the gateway asks Modal for the Server's URL, unless told one."""
    import infra.gateway_app

    asked = []

    class DeployedServer:
        def get_url(self) -> str:
            return "https://me--sam2-inference-inference.modal.run"

    def from_name(app: str, name: str) -> DeployedServer:
        asked.append((app, name))
        return DeployedServer()

    monkeypatch.setattr(modal.Server, "from_name", from_name)
    monkeypatch.setenv("SAM2_GATEWAY_ENVIRONMENT", "development")
    monkeypatch.setenv("SAM2_GATEWAY_INFERENCE_PROXY_KEY", "wk-1")
    monkeypatch.setenv("SAM2_GATEWAY_INFERENCE_PROXY_SECRET", "ws-2")
    monkeypatch.delenv("SAM2_GATEWAY_INFERENCE_URL", raising=False)
    found = infra.gateway_app.gateway_settings()
    assert found.inference_url == "https://me--sam2-inference-inference.modal.run"
    assert asked == [("sam2-inference", "Inference")]
    assert found.inference_auth_headers == {"Modal-Key": "wk-1", "Modal-Secret": "ws-2"}
    monkeypatch.setenv("SAM2_GATEWAY_INFERENCE_URL", "https://elsewhere.example")
    assert infra.gateway_app.gateway_settings().inference_url == "https://elsewhere.example"
    assert len(asked) == 1


def test_keep_warm_sets_the_servers_minimum_with_current_apis_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At the Modal boundary: keep-warm sets min_containers through `Server.autoscaler.update`
    (the stand-in has no deprecated `update_autoscaler`), with warnings as errors; and the pinned
    client has that method with that keyword, offline."""
    updates = []

    class Autoscaler:
        def update(self, **changes: int) -> None:
            updates.append(changes)

    class DeployedServer:
        autoscaler = Autoscaler()

    real = inspect.signature(modal.Server.from_name("app", "Cls").autoscaler.update)
    assert "min_containers" in real.parameters
    monkeypatch.setattr(modal.Server, "from_name", lambda *_: DeployedServer())
    before = desired_min_containers(datetime.now(UTC), infra.inference_app.settings)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wanted = infra.inference_app.keep_warm.local()
    after = desired_min_containers(datetime.now(UTC), infra.inference_app.settings)
    assert wanted in (before, after)
    assert updates == [{"min_containers": wanted}]


def test_the_cost_section_is_what_bench_cost_computes_from_the_measured_figures() -> None:
    """docs/deploy.md's cost tables are bench/cost.py's output (run `bench/cost.py --write`
    after a change to the figures, the prices or the defaults), and their keep-warm column is
    the window's hours x a container's price."""
    done = subprocess.run(
        [sys.executable, "bench/cost.py"], cwd=REPO, capture_output=True, text=True, check=True
    )
    doc = (Path(REPO) / "docs" / "deploy.md").read_text()
    begin = doc.index("<!-- cost tables: bench/cost.py -->")
    end = doc.index("<!-- end of bench/cost.py -->")
    assert doc[begin:end] == done.stdout[: done.stdout.index("<!-- end of bench/cost.py -->")]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ")]
    prices = {cells[0].strip(): cells for cells in rows if cells[0].strip() in ("H200", "L4")}
    hours = warm_hours_per_week(DeploySettings())
    for gpu, cells in prices.items():
        container = float(cells[1]) + 2 * 0.0472 + 16 * 0.008  # the GPU, 2 cores, 16 GiB
        assert float(cells[-1]) == pytest.approx(hours * container, abs=0.01), gpu
