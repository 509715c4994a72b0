"""Giving freed memory back to the operating system.

glibc's malloc raises its mmap threshold as large blocks are freed, so after a session's
decoded frames (6 MB each at 1080p, GiBs for a clip) are freed, their memory stays in the
process's heap instead of going back: measured here, a 60-frame 1080p session left 1.3 GiB
more resident than before, 0.76 GiB after `malloc_trim(0)`. The video budget counts what a
session holds; this keeps the process's RSS close to that count.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None


def give_back_freed_memory() -> None:
    """Return the heap's free memory to the OS where the C library can (glibc); else nothing."""
    trim = _trim()
    if trim is not None:
        trim(0)
