"""A value each thread binds for the work it runs now: how the forward hooks of a network shared
between threads find the tiled run (its progress steps, its SE means) of the thread calling them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class PerThread(Generic[T]):
    """One value per thread: ``get()`` is what this thread bound last (None outside any ``bound``)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self) -> T | None:
        return getattr(self._local, "value", None)

    @contextmanager
    def bound(self, value: T) -> Iterator[T]:
        """``value`` for this thread while the block runs; then the one bound before (runs nest)."""
        previous = self.get()
        self._local.value = value
        try:
            yield value
        finally:
            self._local.value = previous
