"""`client.jobs` (issue 30) against the real gateway and inference, sync and
async: a job of uploaded images (and one never uploaded) made once per idempotency key,
waited for, its results in order as the SDK's own types, equal to the same calls alone; files
and an archive sent with a job, and their names in its COCO file."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sam2_sdk import (
    AsyncSam2Client,
    AutoSegmentation,
    BatchItemError,
    Sam2Client,
    Sam2Error,
    Segmentation,
)
from support import IMAGES, GatewayServer, encode

CLICK = {"point_coords": [[40, 30]], "point_labels": [1]}


def test_a_job_answers_each_item_as_the_call_alone(gateway_server: GatewayServer) -> None:
    with Sam2Client(api_key=gateway_server.key, base_url=gateway_server.url) as client:
        alone = [client.segment(IMAGES[n], points=[[40, 30]]) for n in ("landscape", "portrait")]
        items = [alone[0].image_id, alone[1].image_id, "img_" + "d" * 32]
        job = client.jobs.create(items, request=CLICK, idempotency_key="sdk-run-1")
        again = client.jobs.create(items, request=CLICK, idempotency_key="sdk-run-1")
        assert again.job_id == job.job_id
        done = client.jobs.wait(job.job_id, poll_s=0.2, timeout_s=120)
        assert (done.state, done.counts.done, done.counts.failed) == ("done", 2, 1)
        results = list(client.jobs.results(job.job_id))
        assert [index for index, _ in results] == [0, 1, 2]
        for (_, result), single in zip(results[:2], alone, strict=True):
            assert isinstance(result, Segmentation)
            assert np.array_equal(result.mask, single.mask)
            assert result.score == pytest.approx(single.score, abs=1e-6)
        failed = results[2][1]
        assert isinstance(failed, BatchItemError)
        assert (failed.status, failed.code) == (404, "image_not_cached")
        assert failed.hint
        assert job.job_id in [j.job_id for j in client.jobs.list()]
        assert client.jobs.cancel(job.job_id).state == "done"  # a finished job stays so
        with pytest.raises(Sam2Error, match="https URL or an image_id"):
            client.jobs.create(["photo.jpg"], request=CLICK)


def test_the_async_client_runs_an_automatic_job(gateway_server: GatewayServer) -> None:
    async def main() -> list[object]:
        async with AsyncSam2Client(api_key=gateway_server.key, base_url=gateway_server.url) as c:
            first = await c.segment(IMAGES["landscape"], points=[[40, 30]])
            auto = {"mode": "auto", "points_per_side": 4}
            job = await c.jobs.create([first.image_id], request=auto)
            assert (await c.jobs.wait(job.job_id, poll_s=0.2, timeout_s=120)).state == "done"
            return [result async for _, result in c.jobs.results(job.job_id)]

    [result] = asyncio.run(main())
    assert isinstance(result, AutoSegmentation)
    assert result.image_id.startswith("img_")


def test_files_and_an_archive_go_with_the_job(
    gateway_server: GatewayServer, tmp_path: Path
) -> None:
    """A path, a (name, bytes) pair and a zip of two more: numbered in that order, each answer
    the call alone on the same image, each image's file_name in COCO the name it was sent as."""
    photo = tmp_path / "first.png"
    photo.write_bytes(encode(IMAGES["landscape"]))
    portrait = encode(IMAGES["portrait"])
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("set/a.png", portrait)
        bundle.writestr("set/b.png", encode(IMAGES["landscape"]))
    with Sam2Client(api_key=gateway_server.key, base_url=gateway_server.url) as client:
        job = client.jobs.create(
            [photo, ("second.png", portrait)],
            request=CLICK,
            archive=("bundle.zip", archive.getvalue()),
            idempotency_key="sdk-files-1",
        )
        assert job.total == 4
        client.jobs.wait(job.job_id, poll_s=0.2, timeout_s=180)
        results = list(client.jobs.results(job.job_id))
        coco = client.jobs.coco(job.job_id)
        alone = {
            name: client.segment(IMAGES[name], points=[[40, 30]])
            for name in ("landscape", "portrait")
        }
    order = ["landscape", "portrait", "portrait", "landscape"]
    assert [index for index, _ in results] == [0, 1, 2, 3]
    for (_, result), name in zip(results, order, strict=True):
        assert isinstance(result, Segmentation)
        assert np.array_equal(result.mask, alone[name].mask)
    names = [image["file_name"] for image in coco["images"]]
    assert names == ["first.png", "second.png", "set/a.png", "set/b.png"]
    assert len(coco["annotations"]) == 4


def test_an_unreadable_file_fails_before_anything_is_sent(
    gateway_server: GatewayServer, tmp_path: Path
) -> None:
    with Sam2Client(api_key=gateway_server.key, base_url=gateway_server.url) as client:
        before = len(client.jobs.list())
        with pytest.raises(Sam2Error, match=r"cannot read .*missing\.png"):
            client.jobs.create(["img_" + "e" * 32, tmp_path / "missing.png"], request=CLICK)
        assert len(client.jobs.list()) == before
