"""Test hooks, from the tests' side: the engine's tiled runs slowed on purpose, or out of memory at a tile.

The product knows nothing of these. They wrap the engine's tiled run (`esrgan.tiling.run.run_plan`,
through which every tile of every image and frame goes) from outside:

* a fixed delay at every progress step (`SlowSteps`: "the job is still running when ..." holds on
  any CPU, a floor and never a ceiling);
* every step this many times as long as its own work (`SlowSteps`: the network as on a slower
  machine, so a verdict can be checked not to depend on the speed);
* ``torch.OutOfMemoryError`` once per run, raised by the forward pass that would feed the network
  its N-th tile, counted from 0 (`OutOfMemoryAt`), as a device out of memory would.

Progress steps are the engine's own (`esrgan.tiling.steps`: after each block of a network's body and
after each tile is stored); the hooks sleep inside them, so cancel is polled as it is on a slow
machine and a rate the engine learns from a slowed run is a slow machine's rate. Forward passes
outside a tiled run (a FLOPs probe, the CPU calibration) are never slowed and never counted.

Three ways in: `install` (a process: what ``tests/launch.py`` does with `Hooks.from_environment`),
the ``engine_hooks`` fixture of ``tests/conftest.py`` (an in-process test), or `SlowSteps` and
`OutOfMemoryAt` passed straight to ``run_plan`` as its ``progress`` and ``before_forward``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

import esrgan.tiling.run

# The tests' own environment variables (never REMASTER_*: the product reads those).
DELAY_VARIABLE = "TEST_STEP_DELAY"  # seconds slept at every progress step
SLOWDOWN_VARIABLE = "TEST_STEP_SLOWDOWN"  # every step this many times as long as its work
OOM_VARIABLE = "TEST_OOM_AT_TILE"  # the run's forward pass that feeds this tile raises, once per run
PRODUCT_PACKAGES = ("esrgan", "web")  # modules whose name ``run_plan`` is rebound, where they imported it

ProgressFn = Callable[[int, int], None]
BeforeForward = Callable[[list], None]


@dataclass(frozen=True)
class Hooks:
    """What to do to every tiled run: the defaults do nothing.

    Attributes:
        delay: Seconds slept at every progress step.
        slowdown: Every progress step takes this many times as long as its work did (the rest slept).
        oom_at_tile: The forward pass that would feed the run's tile with this index (counted over
            every tile the run feeds the network, from 0) raises ``torch.OutOfMemoryError`` instead,
            once per run; -1 never.
    """

    delay: float = 0.0
    slowdown: float = 1.0
    oom_at_tile: int = -1

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Hooks:
        """The hooks ``TEST_STEP_DELAY``, ``TEST_STEP_SLOWDOWN`` and ``TEST_OOM_AT_TILE`` ask for."""
        return cls(delay=float(environ.get(DELAY_VARIABLE) or 0), slowdown=float(environ.get(SLOWDOWN_VARIABLE) or 1),
                   oom_at_tile=int(environ.get(OOM_VARIABLE) or -1))

    @property
    def active(self) -> bool:
        return self.delay > 0 or self.slowdown > 1 or self.oom_at_tile >= 0


class SlowSteps:
    """A ``progress`` callback for ``run_plan`` that sleeps at every step, then calls ``then``.

    Args:
        then: The caller's progress callback, if any.
        delay: Seconds slept at every step.
        slowdown: The step takes this many times as long as the work since the last step (from the
            call's construction for the first): ``slowdown - 1`` times that work is slept.
    """

    def __init__(self, then: ProgressFn | None = None, delay: float = 0.0, slowdown: float = 1.0) -> None:
        self.then, self.delay, self.slowdown = then, delay, slowdown
        self.slept = 0.0
        self._last = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        pause = self.delay + max(0.0, self.slowdown - 1) * (time.perf_counter() - self._last)
        if pause > 0:
            time.sleep(pause)
            self.slept += pause
        if self.then is not None:
            self.then(done, total)
        self._last = time.perf_counter()  # the next step's work starts now (reporting is not the network's)


class OutOfMemoryAt:
    """A ``before_forward`` callback for ``run_plan``: calls ``then``, and raises
    ``torch.OutOfMemoryError`` once, for the forward pass that would feed the network tile ``at``
    (counted over every tile fed, from 0)."""

    def __init__(self, at: int, then: BeforeForward | None = None) -> None:
        self.at, self.then, self.fed, self.raised = at, then, 0, False

    def __call__(self, group: list) -> None:
        if self.then is not None:
            self.then(group)
        first, self.fed = self.fed, self.fed + len(group)
        if not self.raised and first <= self.at < self.fed:
            self.raised = True
            raise torch.OutOfMemoryError(f"out of memory at tile {self.at} (a test's hook)")


def hooked(run_plan: Callable, hooks: Hooks) -> Callable:
    """``run_plan`` with ``hooks`` applied to every call (each call its own steps and tile count)."""

    def run(*args, progress: ProgressFn | None = None, before_forward: BeforeForward | None = None, **kwargs):
        if hooks.delay > 0 or hooks.slowdown > 1:
            progress = SlowSteps(progress, hooks.delay, hooks.slowdown)
        if hooks.oom_at_tile >= 0:
            before_forward = OutOfMemoryAt(hooks.oom_at_tile, before_forward)
        return run_plan(*args, progress=progress, before_forward=before_forward, **kwargs)

    run.__wrapped__ = run_plan  # type: ignore[attr-defined]
    return run


_LOCK = threading.Lock()


def install(hooks: Hooks) -> Callable[[], None]:
    """Apply ``hooks`` to every tiled run in this process from now on; returns what undoes it.

    ``esrgan.tiling.run.run_plan`` is rebound, and so is every product module's own name for it
    (imported already); modules imported later take the hooked one. Hooks installed twice nest.
    """
    with _LOCK:
        original = esrgan.tiling.run.run_plan
        wrapper = hooked(original, hooks)
        bound = [module for name, module in list(sys.modules.items())
                 if name.split(".")[0] in PRODUCT_PACKAGES and getattr(module, "run_plan", None) is original]
        for module in bound:
            module.run_plan = wrapper

    def uninstall() -> None:
        with _LOCK:
            for name, module in list(sys.modules.items()):
                if name.split(".")[0] in PRODUCT_PACKAGES and getattr(module, "run_plan", None) is wrapper:
                    module.run_plan = original

    return uninstall
