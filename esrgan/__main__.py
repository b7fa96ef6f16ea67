"""Entry point of ``python -m esrgan``."""

import sys

from esrgan.cli import main

sys.exit(main())
