"""Tiled inference: the plan, tile sizes, the run loop, the canvas, SE passes, progress steps and TTA."""
