"""`client.jobs`: batch jobs (issue 30): many images, one request template,
answered by the service's workers and kept through restarts.

    with Sam2Client() as client:
        job = client.jobs.create(["https://example.com/a.jpg", image_id], request={"mode": "auto"},
                                 idempotency_key="my-dataset-run-1")
        client.jobs.wait(job.job_id)
        for index, result in client.jobs.results(job.job_id):
            ...  # an AutoSegmentation or Segmentation, or a BatchItemError

An item is an https URL (fetched by the service), the `image_id` of an image this key
uploaded, or a file sent with the job: a `pathlib.Path` or a `(file_name, bytes)` pair; and
`archive=` sends one zip or tar whose images are items too. The service numbers items in this
order: the URLs and image_ids as given, then the files as given, then the archive's entries in
name order (`results()` yields `(index, result)` by that number). A file's name is its
image's `file_name` in the COCO export. The same `idempotency_key` again answers the job it
made: a retried create never makes a second job.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sam2_contract.models import IMAGE_ID_PREFIX, JobInfo, JobList
from sam2_contract.models.responses import Problem

from sam2_sdk._exceptions import Sam2Error
from sam2_sdk._http import FilePart
from sam2_sdk._resource import AsyncAPIResource, SyncAPIResource
from sam2_sdk._types import BatchItemError, BatchResult, _valid, parse_auto, parse_prompt

JobItemInput = str | dict[str, str] | os.PathLike[str] | tuple[str, bytes]
"""An https URL, an `image_id`, the API's `{"image_url": ...}` / `{"image_id": ...}`, or a file
to upload: a path or a `(file_name, content)` pair."""

ArchiveInput = os.PathLike[str] | tuple[str, bytes]
"""A zip or tar of images: a path or a `(file_name, content)` pair."""


@dataclass(frozen=True, slots=True)
class _JobCall:
    """POST /v1/jobs as the client sends it: JSON, or multipart when files go with it."""

    body: dict[str, Any] | None
    files: list[FilePart] | None
    fields: dict[str, str] | None
    headers: dict[str, str] | None

    def send(self) -> dict[str, Any]:
        return {
            "body": self.body,
            "files": self.files,
            "fields": self.fields,
            "headers": self.headers,
        }


@dataclass(frozen=True, slots=True)
class JobItemPending:
    """An item not finished when the results were read: queued, running or cancelled."""

    state: str


JobResult = BatchResult | JobItemPending


class Jobs(SyncAPIResource):
    """`client.jobs` (sync)."""

    def create(
        self,
        items: Sequence[JobItemInput],
        *,
        request: dict[str, Any],
        archive: ArchiveInput | None = None,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
    ) -> JobInfo:
        """A job answering every item with `request` (the /v1/segment fields, no image)."""
        call = _create(items, request, archive, idempotency_key, webhook_url)
        return _valid(JobInfo, self._request("POST", "/v1/jobs", **call.send()))

    def get(self, job_id: str) -> JobInfo:
        return _valid(JobInfo, self._request("GET", f"/v1/jobs/{job_id}"))

    def list(self) -> list[JobInfo]:
        """This key's latest jobs, newest first."""
        return _valid(JobList, self._request("GET", "/v1/jobs")).jobs

    def cancel(self, job_id: str) -> JobInfo:
        """Queued items never start; running ones stop."""
        return _valid(JobInfo, self._request("DELETE", f"/v1/jobs/{job_id}"))

    def wait(self, job_id: str, *, poll_s: float = 2.0, timeout_s: float | None = None) -> JobInfo:
        """The job once it is done or cancelled, asking every `poll_s`; TimeoutError after
        `timeout_s` (the job goes on)."""
        started = time.monotonic()
        while True:
            info = self.get(job_id)
            if info.state in ("done", "cancelled"):
                return info
            _check_time(job_id, started, timeout_s)
            time.sleep(poll_s)

    def results(self, job_id: str) -> Iterator[tuple[int, JobResult]]:
        """(index, result) per item in item order, as the service streams them."""
        for line in self._stream(f"/v1/jobs/{job_id}/results", None):
            yield _result(line)

    def coco(self, job_id: str) -> dict[str, Any]:
        """The job's COCO file (images, RLE annotations with bbox, area and score) of its done
        items, parsed."""
        return _coco(self._download(f"/v1/jobs/{job_id}/results?format=coco"))


class AsyncJobs(AsyncAPIResource):
    """`client.jobs` (async): the same methods, awaited."""

    async def create(
        self,
        items: Sequence[JobItemInput],
        *,
        request: dict[str, Any],
        archive: ArchiveInput | None = None,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
    ) -> JobInfo:
        call = await asyncio.to_thread(
            _create, items, request, archive, idempotency_key, webhook_url
        )  # files are read off the event loop
        answer = await self._request("POST", "/v1/jobs", **call.send())
        return _valid(JobInfo, answer)

    async def get(self, job_id: str) -> JobInfo:
        return _valid(JobInfo, await self._request("GET", f"/v1/jobs/{job_id}"))

    async def list(self) -> list[JobInfo]:
        return _valid(JobList, await self._request("GET", "/v1/jobs")).jobs

    async def cancel(self, job_id: str) -> JobInfo:
        return _valid(JobInfo, await self._request("DELETE", f"/v1/jobs/{job_id}"))

    async def wait(
        self, job_id: str, *, poll_s: float = 2.0, timeout_s: float | None = None
    ) -> JobInfo:
        started = time.monotonic()
        while True:
            info = await self.get(job_id)
            if info.state in ("done", "cancelled"):
                return info
            _check_time(job_id, started, timeout_s)
            await asyncio.sleep(poll_s)

    async def results(self, job_id: str) -> AsyncIterator[tuple[int, JobResult]]:
        async for line in self._stream(f"/v1/jobs/{job_id}/results", None):
            yield _result(line)

    async def coco(self, job_id: str) -> dict[str, Any]:
        return _coco(await self._download(f"/v1/jobs/{job_id}/results?format=coco"))


def _create(
    items: Sequence[JobItemInput],
    request: dict[str, Any],
    archive: ArchiveInput | None,
    idempotency_key: str | None,
    webhook_url: str | None,
) -> _JobCall:
    files: list[FilePart] = [
        ("image", *_file(item)) for item in items if isinstance(item, (os.PathLike, tuple))
    ]
    if archive is not None:
        files.append(("archive", *_file(archive)))
    body: dict[str, Any] = {
        "request": request,
        "items": [_item(i) for i in items if not isinstance(i, (os.PathLike, tuple))],
    }
    if webhook_url is not None:
        body["webhook_url"] = webhook_url
    headers = {"idempotency-key": idempotency_key} if idempotency_key else None
    if not files:
        return _JobCall(body, None, None, headers)
    return _JobCall(None, files, {"request": json.dumps(body)}, headers)


def _file(item: os.PathLike[str] | tuple[str, bytes]) -> tuple[str, bytes]:
    if isinstance(item, tuple):
        name, content = item
        if not isinstance(name, str) or not isinstance(content, bytes):
            raise Sam2Error("a file item is a (file_name, bytes) pair")
        return name, content
    path = Path(item)
    try:
        return path.name, path.read_bytes()
    except OSError as error:
        raise Sam2Error(f"cannot read {path}: {error.strerror or error}") from error


def _item(item: str | dict[str, str]) -> dict[str, str]:
    if isinstance(item, dict):
        return item
    if not isinstance(item, str):
        raise Sam2Error(
            f"a job item is a URL, an image_id, a path or a (name, bytes) pair, "
            f"not {type(item).__name__}"
        )
    if item.startswith(IMAGE_ID_PREFIX):
        return {"image_id": item}
    if item.startswith(("https://", "http://")):
        return {"image_url": item}
    raise Sam2Error(f"a job item is an https URL or an image_id, not {item[:64]!r}")


def _result(line: str) -> tuple[int, JobResult]:
    item = json.loads(line)
    index = int(item["index"])
    if "result" in item:
        answer = item["result"]
        return index, parse_auto(answer) if "masks" in answer else parse_prompt(answer)
    if "error" in item:
        problem = _valid(Problem, item["error"])
        return index, BatchItemError(
            item["status"], problem.code, problem.detail, problem.hint, problem
        )
    return index, JobItemPending(item["state"])


def _coco(content: bytes) -> dict[str, Any]:
    coco: dict[str, Any] = json.loads(content)
    return coco


def _check_time(job_id: str, started: float, timeout_s: float | None) -> None:
    if timeout_s is not None and time.monotonic() - started > timeout_s:
        raise TimeoutError(f"job {job_id} is not done after {timeout_s} s; it goes on")
