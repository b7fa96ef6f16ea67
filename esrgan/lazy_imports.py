"""Libraries imported on first use (spandrel, torchvision), one thread at a time.

Importing any part of spandrel imports all of its architectures (seconds on a busy CPU), so a run
that never needs it never pays for it, and its first import happens in whichever thread needs it
first: a request thread listing the face option while the preload thread builds Real-CUGAN, say.
Two such first imports at once race: one thread starts at a submodule
(``spandrel.architectures.RealCUGAN.__arch``) while another is still running the package's
``__init__``, and Python's per-module import locks hand one of them a partially initialised module
(``AttributeError: partially initialized module 'spandrel.architectures.RealCUGAN' has no attribute
'RealCUGANArch'``) or a ``_DeadlockError``. So every import of these libraries inside a function
goes through `lazy_import`, which holds one lock across it; none of them is imported at the top of
a module of ours.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType

# Re-entrant: a module imported under it may import another on first use.
_FIRST_IMPORT = threading.RLock()


def lazy_import(name: str) -> ModuleType:
    """The module of this dotted ``name``, imported under the one lock (at once when done already)."""
    with _FIRST_IMPORT:
        return importlib.import_module(name)
