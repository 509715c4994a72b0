"""Who runs on the model next, and when a request's work stops.

The model runs one request at a time (the accelerator serialises work anyway, and this bounds
memory to one request's activations). Clicks go first: a waiting click is served before a
waiting automatic-mode job, and a running automatic-mode job steps aside while a click waits:
between its decoder batches and between the stages of its model passes (the image encoder's
attention and MLP layers, the mask decoder's transformer layers and upscaling), so a click
waits for at most one such stage of another tenant's "segment everything", never for the
whole job. Every request carries a `Work` token: its deadline (from the gateway) and a cancel
flag (set when the client goes away); long work checks it at the same places, and stops.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sam2_contract.errors import ErrorCode, ServiceUnavailableError


class WorkStopped(ServiceUnavailableError):  # noqa: N818 (it is an outcome, not a fault)
    """The request's deadline passed, or its client went away: its work was stopped."""


@dataclass
class Work:
    """One request's stop conditions, and the model time it has used so far (metered even
    when the work is stopped). Time it spends stepped aside for a click is not its own."""

    deadline: float | None = None  # time.monotonic() seconds
    cancelled: threading.Event = field(default_factory=threading.Event)
    model_ms: float = 0.0
    aside_ms: float = 0.0

    def clock_ms(self) -> float:
        """A clock (ms) that stands still while this work is stepped aside: intervals read
        on it are this request's own time."""
        return time.perf_counter() * 1000 - self.aside_ms

    @contextmanager
    def on_model(self) -> Iterator[None]:
        """Count the time inside as this request's model time."""
        started = self.clock_ms()
        try:
            yield
        finally:
            self.model_ms += self.clock_ms() - started

    @contextmanager
    def aside(self) -> Iterator[None]:
        """Time spent waiting for other requests' work (a click run first)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.aside_ms += (time.perf_counter() - started) * 1000

    @classmethod
    def within(cls, seconds: float | None) -> Work:
        return cls(None if seconds is None else time.monotonic() + seconds)

    def seconds_left(self) -> float | None:
        """Time left before the deadline (None: no deadline)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def check(self) -> None:
        """Raise WorkStopped if the work should not go on."""
        if self.cancelled.is_set():
            raise WorkStopped(
                "the client went away; the work was stopped",
                code=ErrorCode.INFERENCE_UNAVAILABLE,
                retry_after=1,
            )
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise WorkStopped(
                "the request's deadline passed; its work was stopped",
                code=ErrorCode.INFERENCE_TIMEOUT,
            )


class ModelLock:
    """The model, one request at a time, clicks first."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._held = False
        self._clicks_waiting = 0
        self._click_running = False

    @contextmanager
    def hold(self, *, interactive: bool) -> Iterator[None]:
        with self._changed:
            self._clicks_waiting += interactive
            try:
                while self._held or (not interactive and self._clicks_waiting):
                    self._changed.wait()
            finally:
                self._clicks_waiting -= interactive
            self._held = True
            self._click_running = interactive
        try:
            yield
        finally:
            with self._changed:
                self._held = self._click_running = False
                self._changed.notify_all()

    def let_clicks_pass(self) -> None:
        """For work beside the model (a clip being decoded): wait while a click waits for the
        model or runs on it, so that it has the CPU to itself."""
        with self._changed:
            while self._clicks_waiting or self._click_running:
                self._changed.wait()

    def step_aside(self) -> None:
        """For a holder between two units of work: let every waiting click run first."""
        with self._changed:
            if not self._clicks_waiting:
                return
            self._held = False
            self._changed.notify_all()
            while self._held or self._clicks_waiting:
                self._changed.wait()
            self._held = True
