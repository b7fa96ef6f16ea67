"""The command line (``python -m esrgan``): upscale, models, evaluate, degrade, train and video."""
