"""The `sam2` command (issue 30): `sam2 segment-dir ./images --auto --out annotations.json`.

It finds the folder's images, sends them as batch jobs of at most `--chunk-items` files and
`--chunk-mb` MiB each, shows their progress, and writes one COCO file of every image's masks.
Each job is created with an Idempotency-Key made of the request and its files' SHA-256s, and
the job ids are kept in `<out>.state.json` as they are made: an interrupted run (Ctrl-C, a
crash, a lost network) started again with the same command uploads nothing already sent and
waits for the same jobs, which went on without it. Exit status: 0 every image answered, 2 the
file is written and some images failed (listed on stderr, and in the file's
`info.sam2_failed`), 1 nothing could be done (the message says why), 130 interrupted.

The progress bar is tqdm's (`pip install 'sam2-sdk[cli]'`); without tqdm, a line per change.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from sam2_contract.catalog import ErrorCode

from sam2_sdk._client import Sam2Client
from sam2_sdk._exceptions import APIStatusError, NotFoundError, Sam2Error
from sam2_sdk._jobs import JobItemPending
from sam2_sdk._types import BatchItemError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
STATE_VERSION = 1
EXIT_OK, EXIT_ERROR, EXIT_SOME_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 130
TOO_BIG_CODES = frozenset({ErrorCode.TOO_MANY_JOB_ITEMS, ErrorCode.BODY_TOO_LARGE})


@dataclass(frozen=True, slots=True)
class ImageFile:
    path: Path
    name: str  # the path under the folder, with "/": the image's COCO file_name
    size: int


@dataclass(slots=True)
class Failure:
    name: str
    code: str
    detail: str


@dataclass(slots=True)
class Run:
    """What one invocation knows: the chunks' jobs (kept in the state file) and failures."""

    state_path: Path
    request: dict[str, Any]
    jobs: dict[str, str] = field(default_factory=dict)  # chunk key -> job id
    split: set[str] = field(default_factory=set)  # chunk keys the service took only in halves
    failures: list[Failure] = field(default_factory=list)

    def save(self) -> None:
        state = {
            "version": STATE_VERSION,
            "request": self.request,
            "jobs": self.jobs,
            "split": sorted(self.split),
        }
        partial = self.state_path.with_name(self.state_path.name + ".partial")
        partial.write_text(json.dumps(state, indent=1))
        partial.replace(self.state_path)  # a crash mid-write leaves the last whole state


class Progress(Protocol):
    def update_to(self, finished: int, failed: int, note: str) -> None: ...

    def close(self) -> None: ...


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "segment-dir":
        parser.print_help()
        return EXIT_ERROR
    try:
        return segment_dir(args, sys.stderr)
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the jobs go on in the service; run the same command again to "
            "resume (nothing already sent is sent again)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except OSError as error:  # a file that went away, a full disk: no traceback
        print(f"sam2: {error}", file=sys.stderr)
        return EXIT_ERROR
    except Sam2Error as error:
        hint = getattr(error, "hint", None)
        print(f"sam2: {error}" + (f"\n  hint: {hint}" if hint else ""), file=sys.stderr)
        return EXIT_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sam2", description="The SAM2 API from a shell.")
    commands = parser.add_subparsers(dest="command")
    seg = commands.add_parser(
        "segment-dir",
        help="segment every image of a folder as batch jobs and write one COCO file",
        description=(
            "Segment every image under DIR (recursively: "
            + ", ".join(sorted(IMAGE_SUFFIXES))
            + ") as batch jobs and write one COCO file. Run it again to resume."
        ),
    )
    seg.add_argument("dir", type=Path, help="the folder of images")
    seg.add_argument("--out", type=Path, required=True, help="the COCO JSON file to write")
    seg.add_argument("--auto", action="store_true", help="automatic mode (segment everything)")
    seg.add_argument(
        "--request",
        metavar="JSON",
        help="the /v1/segment fields for every image, as JSON or @file.json: prompts "
        "('{\"box_coords\": [10, 10, 200, 150]}'), or with --auto its knobs "
        "('{\"pred_iou_thresh\": 0.7}')",
    )
    seg.add_argument("--points-per-side", type=int, help="automatic mode's grid (default 32)")
    seg.add_argument(
        "--chunk-items", type=int, default=1000, help="most images per job (default 1000)"
    )
    seg.add_argument(
        "--chunk-mb", type=float, default=128.0, help="most MiB uploaded per job (default 128)"
    )
    seg.add_argument("--poll", type=float, default=2.0, help="seconds between status reads")
    seg.add_argument("--api-key", help="the API key (default: $SAM2_API_KEY)")
    seg.add_argument("--base-url", help="the API's URL (default: $SAM2_BASE_URL)")
    seg.add_argument("--quiet", action="store_true", help="no progress, only the summary")
    return parser


def segment_dir(args: argparse.Namespace, log: TextIO) -> int:
    request = _template(args)
    if args.chunk_items < 1 or args.chunk_mb <= 0:
        raise Sam2Error("--chunk-items and --chunk-mb must be positive")
    out: Path = args.out
    if not out.parent.is_dir():
        raise Sam2Error(f"cannot write {out}: {out.parent} is not a folder")
    images = find_images(args.dir)
    if not images:
        looked = ", ".join(sorted(IMAGE_SUFFIXES))
        raise Sam2Error(f"no images under {args.dir} (looked for {looked})")
    run = _load(out, request, log)
    chunks = list(chunked(images, args.chunk_items, int(args.chunk_mb * 2**20)))
    progress = _progress(len(images), args.quiet, log)
    with Sam2Client(api_key=args.api_key, base_url=args.base_url) as client:
        jobs: list[tuple[str, list[ImageFile]]] = []
        for chunk in chunks:
            jobs += _submit(client, run, chunk, progress, args.poll)
        finished = _wait(client, [job_id for job_id, _ in jobs], progress, run, args.poll)
        progress.close()
        _write(client, out, jobs, run)
    total_failed = len(run.failures)
    print(
        f"wrote {out}: {len(images) - total_failed} images segmented, {total_failed} failed "
        f"({finished} jobs)",
        file=log,
    )
    for failure in run.failures[:20]:
        print(f"  {failure.name}: {failure.code}: {failure.detail}", file=log)
    if total_failed > 20:
        print(f"  ... and {total_failed - 20} more (all in info.sam2_failed of {out})", file=log)
    run.state_path.unlink(missing_ok=True)
    return EXIT_SOME_FAILED if run.failures else EXIT_OK


def find_images(folder: Path) -> list[ImageFile]:
    if not folder.is_dir():
        raise Sam2Error(f"{folder} is not a folder")
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            found.append(ImageFile(path, path.relative_to(folder).as_posix(), path.stat().st_size))
    return found


def chunked(images: list[ImageFile], max_items: int, max_bytes: int) -> Iterator[list[ImageFile]]:
    """Runs of images in folder order, each within both bounds (an image larger than
    `max_bytes` goes alone: the service says whether it takes it)."""
    chunk: list[ImageFile] = []
    size = 0
    for image in images:
        if chunk and (len(chunk) == max_items or size + image.size > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(image)
        size += image.size
    if chunk:
        yield chunk


def chunk_key(request: dict[str, Any], chunk: list[ImageFile]) -> str:
    """The chunk's Idempotency-Key: the same request and files (names and contents) give the
    same key, so a rerun finds the job its first run made."""
    digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode())
    for image in chunk:
        digest.update(b"\0" + image.name.encode() + b"\0" + _sha256(image.path))
    return "sam2-segment-dir-" + digest.hexdigest()[:48]


def _submit(
    client: Sam2Client,
    run: Run,
    chunk: list[ImageFile],
    progress: Progress,
    poll_s: float,
) -> list[tuple[str, list[ImageFile]]]:
    """The job(s) for this chunk: the one the state file names, or a new one; halves when the
    service finds the chunk too large (too many items, too many bytes)."""
    key = chunk_key(run.request, chunk)
    if key in run.split:
        return _halves(client, run, chunk, progress, poll_s)
    known = run.jobs.get(key)
    if known is not None:
        try:
            client.jobs.get(known)
            return [(known, chunk)]
        except NotFoundError:
            del run.jobs[key]  # expired or deleted: made again below
    files = [(image.name, image.path.read_bytes()) for image in chunk]
    while True:
        try:
            job = client.jobs.create(files, request=run.request, idempotency_key=key)
            break
        except APIStatusError as error:
            if error.code in TOO_BIG_CODES or error.status_code == 413:
                if len(chunk) == 1:
                    run.failures.append(Failure(chunk[0].name, error.code, str(error)))
                    return []
                run.split.add(key)
                run.save()
                return _halves(client, run, chunk, progress, poll_s)
            if error.code != ErrorCode.JOB_QUEUE_FULL:
                raise
            progress.update_to(-1, -1, "the key's queue is full: waiting for its jobs")
            time.sleep(max(poll_s, _retry_after(error)))
    run.jobs[key] = job.job_id
    run.save()
    return [(job.job_id, chunk)]


def _halves(
    client: Sam2Client, run: Run, chunk: list[ImageFile], progress: Progress, poll_s: float
) -> list[tuple[str, list[ImageFile]]]:
    middle = len(chunk) // 2
    return _submit(client, run, chunk[:middle], progress, poll_s) + _submit(
        client, run, chunk[middle:], progress, poll_s
    )


def _wait(
    client: Sam2Client, job_ids: list[str], progress: Progress, run: Run, poll_s: float
) -> int:
    local_failed = len(run.failures)
    while True:
        infos = [client.jobs.get(job_id) for job_id in job_ids]
        failed = local_failed + sum(i.counts.failed + i.counts.cancelled for i in infos)
        finished = local_failed + sum(
            i.counts.done + i.counts.failed + i.counts.cancelled for i in infos
        )
        running = sum(i.counts.running for i in infos)
        progress.update_to(finished, failed, f"{running} running")
        if all(i.state in ("done", "cancelled") for i in infos):
            return len(infos)
        time.sleep(poll_s)


def _write(
    client: Sam2Client, out: Path, jobs: list[tuple[str, list[ImageFile]]], run: Run
) -> None:
    """One COCO file of every job's images, renumbered in folder order; each job's file is
    read whole (a job is at most --chunk-items images), and the output written as it goes;
    written beside `out` and renamed onto it, so `out` is whole or absent."""
    for job_id, _ in jobs:
        for index, result in client.jobs.results(job_id):
            if isinstance(result, BatchItemError):
                name = _name(jobs, job_id, index)
                run.failures.append(Failure(name, result.code, result.detail or ""))
            elif isinstance(result, JobItemPending):
                detail = f"the job was {result.state} before this image ran"
                run.failures.append(Failure(_name(jobs, job_id, index), result.state, detail))
    partial = out.with_name(out.name + ".partial")
    with partial.open("w") as file:
        info = {
            "description": "SAM2 segment-dir",
            "request": run.request,
            "sam2_failed": [asdict(f) for f in run.failures],
        }
        # Annotations (the bulk) are written as each job's file is read; the images (small)
        # are kept and written after them: key order means nothing to a JSON reader.
        file.write(f'{{"info":{json.dumps(info)},"annotations":[')
        images: list[dict[str, Any]] = []
        categories: list[Any] = []
        next_annotation = 1
        for job_id, _ in jobs:
            coco = client.jobs.coco(job_id)
            categories = categories or coco.get("categories", [])
            renumbered: dict[int, int] = {}
            for image in coco["images"]:
                renumbered[image["id"]] = len(images) + 1
                images.append(image | {"id": len(images) + 1})
            for annotation in coco["annotations"]:
                annotation["id"] = next_annotation
                annotation["image_id"] = renumbered[annotation["image_id"]]
                file.write(("," if next_annotation > 1 else "") + json.dumps(annotation))
                next_annotation += 1
        file.write(f'],"images":{json.dumps(images)},"categories":{json.dumps(categories)}}}')
    partial.replace(out)


def _name(jobs: list[tuple[str, list[ImageFile]]], job_id: str, index: int) -> str:
    chunk = next(chunk for known, chunk in jobs if known == job_id)
    return chunk[index].name if 0 <= index < len(chunk) else f"{job_id}#{index}"


def _template(args: argparse.Namespace) -> dict[str, Any]:
    request: dict[str, Any] = {}
    if args.request is not None:
        text = args.request
        if text.startswith("@"):
            try:
                text = Path(text[1:]).read_text()
            except OSError as error:
                raise Sam2Error(f"cannot read {text[1:]}: {error.strerror or error}") from error
        try:
            request = json.loads(text)
        except json.JSONDecodeError as error:
            raise Sam2Error(f"--request is not JSON: {error}") from error
        if not isinstance(request, dict):
            raise Sam2Error("--request is a JSON object of /v1/segment fields")
    elif not args.auto:
        raise Sam2Error("say what to segment: --auto, or --request with prompts")
    if args.auto:
        if request.get("mode", "auto") != "auto":
            raise Sam2Error(f"--auto and a --request of mode {request['mode']!r}: choose one")
        request["mode"] = "auto"
    if args.points_per_side is not None:
        request["points_per_side"] = args.points_per_side
    if "image" in request or "image_url" in request or "image_id" in request:
        raise Sam2Error("--request has no image field: the folder's files are the images")
    return request


def _load(out: Path, request: dict[str, Any], log: TextIO) -> Run:
    state_path = out.with_name(out.name + ".state.json")
    run = Run(state_path, request)
    if not state_path.exists():
        return run
    try:
        state = json.loads(state_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise Sam2Error(
            f"{state_path} cannot be read ({error}): remove it to start afresh"
        ) from error
    if state.get("version") != STATE_VERSION or state.get("request") != request:
        raise Sam2Error(
            f"{state_path} is from a run with another request; "
            "run that command again to finish it, or remove the file to start afresh"
        )
    run.jobs = dict(state.get("jobs", {}))
    run.split = set(state.get("split", []))
    print(f"resuming: {len(run.jobs)} jobs already made ({state_path})", file=log)
    return run


def _progress(total: int, quiet: bool, log: TextIO) -> Progress:
    if quiet:
        return _Silent()
    try:
        from tqdm import tqdm  # type: ignore[import-untyped]
    except ImportError:
        return _Lines(total, log)
    return _Bar(tqdm(total=total, unit="img", file=log, dynamic_ncols=True))


class _Bar:
    def __init__(self, bar: Any) -> None:
        self._bar = bar

    def update_to(self, finished: int, failed: int, note: str) -> None:
        if finished >= 0:
            self._bar.n = finished
            self._bar.set_postfix_str(f"{failed} failed, {note}", refresh=False)
        else:
            self._bar.set_postfix_str(note, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


class _Lines:
    """Without tqdm: a line each time the counts change."""

    def __init__(self, total: int, log: TextIO) -> None:
        self._total, self._log, self._last = total, log, ""

    def update_to(self, finished: int, failed: int, note: str) -> None:
        line = note if finished < 0 else f"{finished}/{self._total} ({failed} failed, {note})"
        if line != self._last:
            print(line, file=self._log, flush=True)
            self._last = line

    def close(self) -> None:
        pass


class _Silent:
    def update_to(self, finished: int, failed: int, note: str) -> None:
        pass

    def close(self) -> None:
        pass


def _retry_after(error: APIStatusError) -> float:
    try:
        return float(error.response.headers.get("retry-after", "0"))
    except ValueError:
        return 0.0


def _sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(2**20), b""):
            digest.update(block)
    return digest.digest()


if __name__ == "__main__":
    raise SystemExit(main())
