"""The Modal job workers (issue 30), offline: the deployed API takes a job of uploaded files
and runs none of it (its containers stop when idle), commits the job-files Volume and starts a
worker; `drain_jobs.local()` then answers every item against the real inference service and
stops once the queue stays empty. Test doubles only at the Modal boundary (the Volume's
commit and reload, `Function.from_name(...).spawn()`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import modal
import pytest
from fastapi.testclient import TestClient
from sam2_contract import decode_mask
from sam2_gateway import KeyStore
from sam2_gateway.core.tokens import generate_private_key_pem
from support import IMAGES, PEPPER, RunningServer, b64, bearer, encode

CLICK = {"point_coords": [[40, 30]], "point_labels": [1]}


# Modal says a local call has no Volume: this test gives the functions a local folder instead.
@pytest.mark.filterwarnings("ignore:The .* function is executing locally:UserWarning")
def test_the_api_queues_and_a_job_worker_drains(
    inference_server: RunningServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import infra.gateway_app as ga

    database = f"sqlite:///{tmp_path / 'gw.db'}"
    for name, value in {
        "SAM2_GATEWAY_DATABASE_URL": database,
        "SAM2_GATEWAY_KEY_PEPPER": PEPPER,
        "SAM2_GATEWAY_JWT_PRIVATE_KEY": generate_private_key_pem(),
        "SAM2_GATEWAY_INFERENCE_URL": inference_server.url,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(ga, "JOB_FILES", str(tmp_path / "volume"))
    monkeypatch.setattr(ga, "settings", ga.settings.model_copy(update={"job_worker_idle_s": 1}))
    modal_calls: list[str] = []
    monkeypatch.setattr(ga.job_files_volume, "commit", lambda: modal_calls.append("commit"))
    monkeypatch.setattr(ga.job_files_volume, "reload", lambda: modal_calls.append("reload"))

    class Worker:
        def spawn(self) -> None:
            modal_calls.append("spawn")

    def from_name(app: str, name: str) -> Worker:
        assert (app, name) == (ga.settings.gateway_app, "drain_jobs")
        return Worker()

    monkeypatch.setattr(modal.Function, "from_name", from_name)
    store = KeyStore(database, PEPPER)
    store.migrate()
    key, _ = store.create("test", frozenset({"segment", "jobs"}), rate_tier="standard")
    store.dispose()
    auth = bearer(key.full)
    pictures = {"a.png": encode(IMAGES["landscape"]), "b.png": encode(IMAGES["portrait"])}

    with TestClient(ga.api.local()) as api:
        files = [("image", (name, data, "image/png")) for name, data in pictures.items()]
        body = {"request": json.dumps({"request": CLICK, "items": []})}
        created = api.post("/v1/jobs", data=body, files=files, headers=auth)
        assert created.status_code == 201, created.text
        job_id = created.json()["job_id"]
        assert modal_calls == ["commit", "spawn"]  # files committed, then a worker started
        time.sleep(1.5)
        assert api.get(f"/v1/jobs/{job_id}", headers=auth).json()["counts"]["queued"] == 2

        ran_s = ga.drain_jobs.local()
        assert ran_s >= 1  # it waited out its idle time once the queue was empty
        answers = list((tmp_path / "volume" / "results" / job_id).glob("*.json"))
        assert len(answers) == 2  # the answers are on the Volume, committed by the worker
        assert 1 <= modal_calls[2:].count("commit") <= 2
        info = api.get(f"/v1/jobs/{job_id}", headers=auth).json()
        assert (info["state"], info["counts"]["done"]) == ("done", 2)
        lines = [
            json.loads(line)
            for line in api.get(f"/v1/jobs/{job_id}/results", headers=auth).text.splitlines()
        ]
        for line, data in zip(lines, pictures.values(), strict=True):
            alone = api.post(
                "/v1/segment",
                json={"image": b64(data)} | CLICK | {"mask_format": "rle"},
                headers=auth,
            ).json()
            assert (decode_mask(line["result"]["mask"]) == decode_mask(alone["mask"])).all()


def test_a_worker_reloads_the_volume_for_a_file_another_container_wrote(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import infra.gateway_app as ga

    written = ga.JobFiles(tmp_path)
    reloads: list[int] = []

    class Volume:
        def reload(self) -> None:  # the other container's commit arrives on the second reload
            reloads.append(1)
            if len(reloads) == 2:
                name = written.put(b"the image")
                assert name == expected

    expected = ga.JobFiles(tmp_path / "elsewhere").put(b"the image")
    files = ga.VolumeJobFiles(tmp_path, Volume(), wait_s=10)  # type: ignore[arg-type]
    monkeypatch.setattr(ga.time, "sleep", lambda _: None)
    assert files.get(expected) == b"the image"
    assert len(reloads) == 2
    missing = ga.VolumeJobFiles(tmp_path / "empty", Volume(), wait_s=0.05)  # type: ignore[arg-type]
    assert missing.get("0" * 64) is None  # gives up after wait_s: the item fails, with its code
