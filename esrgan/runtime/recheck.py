"""When the CPU calibration is measured again: never on a job's path, never for one slow job.

The calibration (`esrgan.runtime.choose.calibrate_cpu`) promises a rate for x4plus. Jobs report what they
achieved (`CalibrationWatch.observe`); one job far slower than promised says little on a shared,
loaded machine, so only `RECHECK_STREAK` such jobs in a row make a new measurement due. Even then
it waits until the machine is quiet (the load average per core below `QUIET_LOAD_PER_CORE`) and at
least `RECHECK_INTERVAL_S` after the last one, and it runs where its caller says: the job runners
call `esrgan.pipeline.Upscaler.recalibrate_if_due` from a background thread when no job waits or
runs, so a person's result is never held by it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from esrgan.runtime.choose import CALIBRATION_MODEL, RECHECK_INTERVAL_S, RECHECK_MIN_PIXELS, Runtime, rate_disagrees

log = logging.getLogger(__name__)

RECHECK_STREAK = 3  # consecutive far-too-slow jobs on the calibration model before a new measurement is due
QUIET_LOAD_PER_CORE = 0.3  # 1-minute load average per core under which the machine counts as quiet

LoadFn = Callable[[], float]


def load_per_core() -> float:
    """The 1-minute load average per CPU core (0 where the system does not tell)."""
    try:
        return os.getloadavg()[0] / max(1, os.cpu_count() or 1)
    except OSError:
        return 0.0


class CalibrationWatch:
    """Counts jobs that ran far slower than the calibration promised and says when measuring again
    is due and allowed. Thread-safe.

    Args:
        load: The machine's load per core now (`load_per_core`; tests give their own).
        streak: Consecutive slow jobs that make a new measurement due.
    """

    def __init__(self, load: LoadFn = load_per_core, streak: int = RECHECK_STREAK) -> None:
        self.load = load
        self.streak = streak
        self.slow_runs = 0
        self.measured_at = 0.0  # monotonic time of the last measurement (0: none in this process)
        self.started_at: float | None = None  # wall time the last re-measurement began (for tests, logs)
        self._lock = threading.Lock()
        self._busy = False

    @property
    def due(self) -> bool:
        """Whether enough jobs in a row ran too slowly for the calibration to be trusted."""
        return self.slow_runs >= self.streak

    def observe(self, runtime: Runtime | None, model: str, seconds: float, pixels: int) -> bool:
        """Take in a finished run: ``seconds`` of inference over ``pixels`` work pixels of ``model``.
        Returns whether a new measurement is now due (it is not made here)."""
        if model != CALIBRATION_MODEL or runtime is None or runtime.seconds_per_pixel is None:
            return False
        if pixels < RECHECK_MIN_PIXELS:  # fixed costs dominate a tiny job: it tells nothing
            return self.due
        with self._lock:
            if rate_disagrees(runtime, seconds / pixels, pixels):
                self.slow_runs += 1
                log.info("x4plus ran at %.2e s/pixel, the calibration said %.2e (%d of %d in a row)",
                         seconds / pixels, runtime.seconds_per_pixel, self.slow_runs, self.streak)
            else:
                self.slow_runs = 0
            return self.due

    def measured(self) -> None:
        """A measurement was just made (the first, or again): the count starts over."""
        with self._lock:
            self.slow_runs = 0
            self.measured_at = time.monotonic()

    def begin(self) -> bool:
        """Claim the right to measure again now: due, not measured in the last `RECHECK_INTERVAL_S`,
        the machine quiet, and no other measurement under way. Pair a True with `end`."""
        with self._lock:
            if self._busy or not self.due:
                return False
            if self.measured_at and time.monotonic() - self.measured_at < RECHECK_INTERVAL_S:
                return False
            load = self.load()
            if load >= QUIET_LOAD_PER_CORE:
                log.debug("measuring the CPU again waits for a quiet machine (load %.2f per core)", load)
                return False
            self._busy = True
            self.started_at = time.time()
        log.warning("%d jobs in a row ran far slower than the calibration said and the machine is quiet "
                    "(load %.2f per core): measuring this CPU again, in the background", self.slow_runs, load)
        return True

    def end(self) -> None:
        with self._lock:
            self._busy = False
