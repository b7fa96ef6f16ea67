"""Video: upscale clips and animated images frame by frame (placeholder; filled below)."""
