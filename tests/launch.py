"""Start a product process for a test, with the tests' hooks installed first (`tests.hooks`).

    python tests/launch.py app.py                          # as ``python app.py``
    python tests/launch.py -m web.worker --name alpha@x    # as ``python -m web.worker --name alpha@x``
    python tests/launch.py -m esrgan in.png -o out.png     # as ``python -m esrgan ...``

Run it from the repository root (``cwd=ROOT``). It reads the tests' own environment variables, never
the product's (``REMASTER_*`` stay the product's settings, passed through untouched):

    TEST_STEP_DELAY=0.1     seconds slept at every progress step of every tiled run (slow on purpose:
                            "still running when killed/cancelled/stopped" holds on any CPU)
    TEST_STEP_SLOWDOWN=5    every progress step five times as long as its work (a slower machine)
    TEST_OOM_AT_TILE=1      the forward pass that feeds tile 1 of each run raises
                            ``torch.OutOfMemoryError`` once (counted from 0)

then runs the real entry point unchanged (``runpy``: ``__name__ == "__main__"``, ``sys.argv`` as the
command would see it, ``sys.path[0]`` the script's folder or, with ``-m``, the working folder). With
none of the variables set it is the plain command. A test builds the command with `command`:

    subprocess.Popen(command("app.py"), cwd=ROOT, env={**os.environ, "TEST_STEP_DELAY": "0.1", ...})

Killing the process kills the product (there is no second process in between).
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = Path(__file__).resolve()


def command(*arguments: str) -> list[str]:
    """The argv that starts ``python *arguments`` through this launcher, with this interpreter."""
    return [sys.executable, str(LAUNCHER), *arguments]


def main(arguments: list[str]) -> None:
    if not arguments or arguments[0] in ("-h", "--help"):
        raise SystemExit(__doc__)
    if arguments[0] == "-m" and len(arguments) < 2:
        raise SystemExit("usage: python tests/launch.py -m MODULE [ARGS...]")
    module = arguments[1] if arguments[0] == "-m" else None
    sys.path[0] = os.getcwd() if module is not None else str(Path(arguments[0]).resolve().parent)
    if str(ROOT) not in sys.path:  # the hooks live in this repository's tests package
        sys.path.append(str(ROOT))
    from tests.hooks import Hooks, install

    hooks = Hooks.from_environment()
    if hooks.active:
        install(hooks)
    if module is not None:
        sys.argv = [module, *arguments[2:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(arguments)
        runpy.run_path(arguments[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
