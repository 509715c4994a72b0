"""Images uploaded with a batch job (issue 30): kept on disk until their items run (a job
survives restarts, so its files must too), named by their SHA-256 (the same file twice is
kept once), and archives unpacked into them with every entry checked first.

An archive (zip, or tar, optionally gzip/bzip2/xz-compressed) is refused whole when an entry
could write outside a folder (an absolute name, `..`, a drive letter), is a link or a device,
or when it would unpack past the limits: more entries than the job may have, more bytes in all
than `max_bytes` (counted as read, not as the archive declares: a zip bomb's headers lie), or
an entry compressed more than MAX_RATIO times. Folders, dotfiles and macOS's `__MACOSX/` are
skipped; every other entry is an item, in name order (one that is not an image fails alone).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import secrets
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

from sam2_contract.errors import ErrorCode, InvalidRequestError, PayloadTooLargeError

MAX_RATIO = 200
"""The most an archive entry may be compressed (a photo is barely; a bomb is thousands)."""
CHUNK = 1 << 20


class JobFiles:
    """Content-addressed image files in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def put(self, data: bytes) -> str:
        """Keep `data`; its name (the SHA-256 hex digest)."""
        name = hashlib.sha256(data).hexdigest()
        path = self._path(name)
        if not path.exists():
            _write_whole(path, data)
        return name

    def get(self, name: str) -> bytes | None:
        path = self._path(name)
        return path.read_bytes() if path.is_file() else None

    def remove(self, name: str) -> None:
        """Forget a file (no job names it any more)."""
        self._path(name).unlink(missing_ok=True)

    def _path(self, name: str) -> Path:
        if len(name) != 64 or not all(c in "0123456789abcdef" for c in name):
            raise ValueError("not a file name of this store")
        return self.directory / name[:2] / name


class JobResults:
    """Batch-job answers as files, `directory/<job_id>/<position>-<lease token>.json`: a
    large automatic-mode answer does not grow the database, and a late worker's file (its
    lease lapsed) never overwrites the answer another worker recorded."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def put(self, job_id: str, position: int, token: str, answer: str) -> str:
        """Keep an answer; its name (for `get`)."""
        name = f"{_safe(job_id)}/{position}-{_safe(token)}.json"
        _write_whole(self.directory / name, answer.encode())
        return name

    def get(self, name: str) -> str | None:
        job_id, _, file = name.partition("/")
        path = self.directory / _safe(job_id) / _safe(file)
        return path.read_text() if path.is_file() else None

    def discard(self, name: str) -> None:
        job_id, _, file = name.partition("/")
        (self.directory / _safe(job_id) / _safe(file)).unlink(missing_ok=True)

    def drop(self, job_id: str) -> None:
        """Every answer of a job (it was deleted)."""
        folder = self.directory / _safe(job_id)
        for path in folder.glob("*"):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()


def _write_whole(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole or not at all (a reader never sees a part)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
    partial.write_bytes(data)
    partial.replace(path)


def _safe(part: str) -> str:
    if not part or not all(c.isalnum() or c in "_-." for c in part) or part.startswith("."):
        raise ValueError("not a name of this store")
    return part


def unpack(archive: bytes, *, max_entries: int, max_bytes: int) -> list[tuple[str, bytes]]:
    """The files of a zip or tar archive, (name, bytes) in name order, checked as above."""
    if zipfile.is_zipfile(io.BytesIO(archive)):
        return sorted(_zip(archive, max_entries, max_bytes))
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
            return sorted(_tar(tar, max_entries, max_bytes))
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, InvalidRequestError):
            raise
        raise InvalidRequestError(
            "`archive` is neither a zip nor a tar file (or it is damaged)",
            code=ErrorCode.INVALID_ARCHIVE,
        ) from None


def _zip(archive: bytes, max_entries: int, max_bytes: int) -> list[tuple[str, bytes]]:
    files: list[tuple[str, bytes]] = []
    total = 0
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as opened:
            for info in opened.infolist():
                name = _checked(info.filename)
                if name is None or info.is_dir():
                    continue
                if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
                    raise _bomb(f"{name!r} is compressed {info.file_size // info.compress_size}x")
                _count(files, max_entries)
                with opened.open(info) as entry:
                    data = _bounded(entry, max_bytes - total, name)
                total += len(data)
                files.append((name, data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise InvalidRequestError(
            f"`archive` is a damaged zip file: {exc}", code=ErrorCode.INVALID_ARCHIVE
        ) from None
    return files


def _tar(tar: tarfile.TarFile, max_entries: int, max_bytes: int) -> list[tuple[str, bytes]]:
    files: list[tuple[str, bytes]] = []
    total = 0
    for member in tar:
        name = _checked(member.name)
        if member.isdir():
            continue
        if not member.isfile():
            raise _unsafe(f"{member.name!r} is a link or a device, not a file")
        if name is None:
            continue
        _count(files, max_entries)
        entry = tar.extractfile(member)
        if entry is None:
            continue
        data = _bounded(entry, max_bytes - total, name)
        total += len(data)
        files.append((name, data))
    return files


def _checked(raw: str) -> str | None:
    """The entry's name if it stays inside a folder; None for what is skipped."""
    name = raw.replace("\\", "/")
    path = PurePosixPath(name)
    if name.startswith("/") or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise _unsafe(f"the entry {raw[:100]!r} would be written outside its folder")
    if not path.parts or path.parts[0] == "__MACOSX" or path.name.startswith("."):
        return None
    return str(path)


def _count(files: list[tuple[str, bytes]], max_entries: int) -> None:
    if len(files) >= max_entries:
        raise PayloadTooLargeError(
            f"`archive` has more than {max_entries} files: more than one job takes",
            code=ErrorCode.ARCHIVE_TOO_LARGE,
        )


def _bounded(entry: IO[bytes], left: int, name: str) -> bytes:
    """Read an entry, stopping past `left` bytes: the size is what comes out, not what the
    archive says."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = entry.read(CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > left:
            raise _bomb(f"unpacking {name!r} passes the limit on a job's uploaded bytes")
        chunks.append(chunk)


def _unsafe(detail: str) -> InvalidRequestError:
    return InvalidRequestError(f"`archive`: {detail}", code=ErrorCode.UNSAFE_ARCHIVE)


def _bomb(detail: str) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"`archive`: {detail}", code=ErrorCode.ARCHIVE_TOO_LARGE)
