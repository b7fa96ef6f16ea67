"""The command line's engine settings: defaults, then REMASTER_* variables, then its flags."""

from __future__ import annotations

import os

from esrgan.settings import Settings

ENV_PREFIX = "REMASTER_"
# The engine settings the command line takes from REMASTER_* variables (README, "Configuration"):
# REMASTER_WEIGHTS_FOLDER, REMASTER_BACKEND and REMASTER_DEVICE. Its flags win over them.
ENV_SETTINGS = ("weights_folder", "backend", "device")


def engine_settings(**flags: object) -> Settings:
    """The engine's settings: defaults, then the environment, then the flags given (None: not given)."""
    environment = {name: os.environ.get(ENV_PREFIX + name.upper()) for name in ENV_SETTINGS}
    return Settings().updated(environment).updated({k: v for k, v in flags.items() if v is not None})

