"""File access to a folder that is a shared Modal Volume, kept apart from its syncs.

Modal refuses to reload a Volume while a file in it is open, and a commit reloads it too: a
clip stored (commit) while another request reads a frame, or a lookup that missed (reload)
while a clip is being written, would fail that request. Here every file access holds a shared
lock and every sync an exclusive one: a sync waits for the file accesses in flight and holds
new ones back while it runs (so a stream of readers never starves it). A sync that fails
anyway is logged, not raised: the clip is still stored here, or still missing, as it was.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class VolumeGuard:
    """Shared file access, exclusive syncs (commit, reload) of one Volume."""

    def __init__(self) -> None:
        self._state = threading.Condition()
        self._open = 0
        self._syncing = False

    @contextmanager
    def files(self) -> Iterator[None]:
        """Around reading or writing files in the Volume."""
        with self._state:
            self._state.wait_for(lambda: not self._syncing)
            self._open += 1
        try:
            yield
        finally:
            with self._state:
                self._open -= 1
                self._state.notify_all()

    def sync(self, call: Callable[[], object], what: str) -> None:
        """Run `call` (the Volume's commit or reload) with no file of it open."""
        with self._state:
            self._state.wait_for(lambda: not self._syncing)
            self._syncing = True
            self._state.wait_for(lambda: self._open == 0)
        try:
            call()
        except Exception as failure:  # Modal's errors: the request goes on
            kind = type(failure).__name__
            log.warning("the clips Volume's %s failed (%s): %s", what, kind, failure)
        finally:
            with self._state:
                self._syncing = False
                self._state.notify_all()
