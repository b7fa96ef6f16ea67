"""A Celery worker's idle moments: when it runs no task and no job waits in the queue, the engine may
measure the CPU again if jobs said it must (`esrgan.runtime.recheck`), as the in-process runner lets it
(`web.runners.in_process.InProcessRunner.on_idle`).

The measurement runs in a thread of its own, never inside a task, so no job waits for it: a job
that arrives meanwhile runs with the runtime it had. The worker's task signals (`task_prerun`,
`task_postrun`: every task, images and video segments) count what runs; a task's end wakes the
thread at once, and it looks again every `IDLE_CHECK_S` seconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from esrgan.pipeline import Upscaler
from web.runners.in_process import IDLE_CHECK_S

log = logging.getLogger(__name__)

QueuedFn = Callable[[], int]


class IdleRecheck:
    """Lets ``upscaler`` measure the CPU again while this worker is idle. Thread-safe.

    Args:
        upscaler: The worker's engine (its `esrgan.runtime.recheck.CalibrationWatch` says when it is due).
        queued: How many jobs wait in the broker's queue now; an error counts as "some" (not idle).
    """

    def __init__(self, upscaler: Upscaler, queued: QueuedFn) -> None:
        self.upscaler = upscaler
        self.queued = queued
        self.running = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def task_started(self, *_: object, **__: object) -> None:
        with self._lock:
            self.running += 1

    def task_ended(self, *_: object, **__: object) -> None:
        with self._lock:
            self.running = max(0, self.running - 1)
        self._wake.set()

    def idle(self) -> bool:
        """No task runs on this worker and no job waits in the queue."""
        with self._lock:
            if self.running:
                return False
        try:
            return self.queued() == 0
        except Exception:  # the broker unreachable: not known to be idle
            log.debug("could not count the queued jobs", exc_info=True)
            return False

    def should_measure(self) -> bool:
        """A new measurement is due and the worker is idle (the engine still checks that the
        machine is quiet and that the last measurement is old enough: `CalibrationWatch.begin`)."""
        return self.upscaler.watch.due and self.idle()

    def check(self) -> bool:
        """One look: measure again now, on the calling thread, if due and idle. Returns whether it measured."""
        if not self.should_measure():
            return False
        try:
            return self.upscaler.recalibrate_if_due()
        except Exception:  # a failed measurement keeps the old runtime; jobs go on
            log.exception("measuring the CPU again failed")
            return False

    def start(self) -> None:
        """Look at every task's end and every `IDLE_CHECK_S`, in a daemon thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="idle-recheck", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while True:
            self._wake.wait(IDLE_CHECK_S)
            self._wake.clear()
            self.check()
