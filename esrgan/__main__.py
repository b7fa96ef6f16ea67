"""Entry point of ``python -m esrgan``: the command, then, for a one-shot command, a quick exit.

When a one-shot command has done its work, the interpreter's own teardown (freeing torch's modules,
tensors and thread pools object by object) is seconds of nothing: 9.3 s of a loaded 2-core CPU run,
against 0.4 s by ``os._exit``. So the process leaves by ``os._exit`` once everything is flushed:
the exit handlers (``atexit``: logging's shutdown, temporary folders' finalizers, multiprocessing's
clean-up) run first, then stdout and stderr are flushed. The normal exit stays where it matters: a
command that is not one-shot (``train``), a thread other than the main one still alive (it may
still be writing), an exception (its traceback), and any in-process call of `esrgan.cli.main.main`
(tests), which never passes through here.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Sequence

from tqdm._monitor import TMonitor

from esrgan.cli.main import main

# Commands whose every file is written and closed when `main` returns. Not ``train``: its data
# loader may have worker processes, and a run of hours gains nothing from a faster exit.
ONE_SHOT = frozenset({"upscale", "compare", "models", "degrade", "evaluate"})
FLUSH_FAILED = 120  # the status CPython's own exit gives when flushing stdout fails


def command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first argument that is not an option)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def busy_threads() -> list[threading.Thread]:
    """Alive threads besides the main one and tqdm's monitor (which only sleeps and reads)."""
    main_thread = threading.main_thread()
    return [t for t in threading.enumerate() if t is not main_thread and t.is_alive() and not isinstance(t, TMonitor)]


def quick_exit(status: int) -> None:
    """Run the exit handlers, flush stdout and stderr, and end the process with ``status`` now."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe: as the normal exit reports it
            status = status or FLUSH_FAILED
    os._exit(status)


if __name__ == "__main__":
    status = main()
    if command_of(sys.argv[1:]) in ONE_SHOT and isinstance(status, int) and not busy_threads():
        quick_exit(status)
    sys.exit(status)
