"""Writing one result while the next is made: the encoder on its own thread for runs of several images.

A folder of images through the command line used to alternate: upscale, then encode and write, then
upscale the next. A PNG encode is single-threaded zlib work (a 4096x4096 result takes seconds), and
the network waited for it. `ResultWriter` runs each write on one background thread, so the next
image's decode and network overlap the previous one's encode; zlib and numpy release the GIL while
they work. At most one write runs and one finished result waits for it (the caller's next
`ResultWriter.submit` blocks until the write before is done), so memory holds two results at most.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

from esrgan.errors import RemasterError

Report = Callable[[str], None]  # gets one line to show


class ResultWriter:
    """Runs writes one at a time on a background thread; reports each as it finishes.

    Args:
        done: Called with each write's line (its return value), from the writer's thread, as soon
            as that write is done (not when the next image is).
        failed: Called with ``"error: <label>: <message>"`` instead, when the write raised a
            `RemasterError` (an error of that one file: the run goes on).

    Use as a context manager: leaving waits for the last write, so every file is whole and closed
    (also when the caller leaves by an exception, e.g. Ctrl-C during the next image). Any error
    other than a `RemasterError` (e.g. a full disk's `OSError`) is raised in the caller's thread
    by the next `submit` or at the exit, as it would be without the thread.

    Attributes:
        failures: Writes that raised a `RemasterError` so far.
    """

    def __init__(self, done: Report, failed: Report) -> None:
        self.done, self.failed = done, failed
        self.failures = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="remaster-writer")
        self._pending: Future | None = None
        self._lock = threading.Lock()

    def submit(self, label: str, write: Callable[[], str]) -> None:
        """Wait for the write before (raising its unexpected error, if any), then start ``write``,
        which writes one result and returns the line to report; ``label`` names it in an error."""
        self.wait()
        self._pending = self._pool.submit(self._run, label, write)

    def wait(self) -> None:
        """Block until the running write (if any) is done; raise its unexpected error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _run(self, label: str, write: Callable[[], str]) -> None:
        try:
            line = write()
        except RemasterError as exc:
            with self._lock:
                self.failures += 1
            self.failed(f"error: {label}: {exc}")
            return
        self.done(line)

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            if kind is None:
                self.wait()
        finally:
            self._pool.shutdown(wait=True)  # on an exception too: the file being written is finished
