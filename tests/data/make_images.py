"""Rebuild the test images in this folder: crops of scikit-image's bundled photographs and a drawing.

    .venv/bin/python tests/data/make_images.py

Every source is in the scikit-image wheel itself (no download) and carries a public-domain or CC0
notice (see README.md here); the line art is drawn below. The low-resolution files are MATLAB-style
bicubic reductions (`esrgan.quality.resize.imresize`), as benchmark LR files are made. The tests read the
saved PNGs, not this script, so a later scikit-image cannot change what they see.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage import data

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from esrgan.quality.resize import imresize  # noqa: E402

# file -> (source, (left, top, right, bottom)) in the source's pixels.
CROPS = {
    "astronaut.png": (data.astronaut, (110, 0, 334, 224)),  # a portrait: skin, hair, smooth backdrop
    "coffee.png": (data.coffee, (200, 20, 424, 244)),  # clean colourful object: cup, saucer, wood
    "astronaut_badge.png": (data.astronaut, (100, 280, 260, 440)),  # saturated colours, hard edges, small text
    "chelsea_head.png": (data.chelsea, (170, 40, 370, 240)),  # a face close up: eyes, nose, whiskers
    "chelsea_fur.png": (data.chelsea, (0, 100, 200, 300)),  # fine fur texture and whiskers
    "rocket.png": (data.rocket, (0, 150, 200, 350)),  # thin regular structure: a lattice tower at dusk
    "camera.png": (data.camera, (220, 120, 348, 248)),  # 8-bit grayscale: a camera, a hand, buildings
}

# file -> (source, crop box or None for the whole image, reduction factor).
REDUCED = {
    "astronaut_lr4.png": (data.astronaut, None, 4),  # 128x128
    "chelsea_lr3.png": (data.chelsea, None, 3),  # 100x151
    "rocket_lr4.png": (data.rocket, (0, 160, 640, 416), 4),  # 160x64: towers, rocket, lights
}

LINE_ART = "line_art.png"


def draw_line_art(width: int = 160, height: int = 192) -> Image.Image:
    """Flat colours, black outlines, a little hatching and screentone: what the anime models expect."""
    image = Image.new("RGB", (width, height), (250, 244, 226))
    pen = ImageDraw.Draw(image)
    ink, line = (24, 20, 28), 3
    pen.rectangle((0, 128, width, height), fill=(150, 200, 120))  # ground
    pen.line((0, 128, width, 128), fill=ink, width=line)
    pen.ellipse((20, 24, 128, 132), fill=(255, 214, 180), outline=ink, width=line)  # face
    pen.polygon([(18, 70), (40, 10), (80, 4), (120, 16), (136, 72), (110, 40), (70, 30), (40, 44)],
                fill=(90, 60, 150), outline=ink, width=line)  # hair
    for cx in (52, 96):  # eyes
        pen.ellipse((cx - 12, 62, cx + 12, 92), fill=(255, 255, 255), outline=ink, width=2)
        pen.ellipse((cx - 7, 70, cx + 7, 90), fill=(40, 110, 200), outline=ink, width=1)
        pen.ellipse((cx - 3, 73, cx + 1, 77), fill=(255, 255, 255))
    pen.arc((58, 96, 90, 116), 20, 160, fill=ink, width=2)  # mouth
    for x in range(30, 50, 4):  # blush hatching
        pen.line((x, 100, x + 6, 94), fill=(230, 120, 120), width=1)
        pen.line((x + 68, 100, x + 74, 94), fill=(230, 120, 120), width=1)
    star = [(140, 20), (144, 32), (156, 32), (146, 40), (150, 52), (140, 44), (130, 52), (134, 40),
            (124, 32), (136, 32)]
    pen.polygon(star, fill=(255, 220, 60), outline=ink, width=2)
    for y in range(136, height, 6):  # screentone dots on the ground
        for x in range((y // 6) % 2 * 3, width, 6):
            pen.ellipse((x, y, x + 2, y + 2), fill=(110, 160, 90))
    pen.rectangle((100, 140, 150, 180), fill=(230, 90, 70), outline=ink, width=line)  # a box
    pen.line((100, 160, 150, 160), fill=ink, width=2)
    return image


def main() -> int:
    for name, (source, box) in CROPS.items():
        Image.fromarray(source()).crop(box).save(HERE / name, optimize=True)
    for name, (source, box, factor) in REDUCED.items():
        pixels = source() if box is None else np.asarray(Image.fromarray(source()).crop(box))
        Image.fromarray(imresize(pixels, 1 / factor)).save(HERE / name, optimize=True)
    draw_line_art().save(HERE / LINE_ART, optimize=True)
    total = sum(p.stat().st_size for p in HERE.glob("*.png"))
    print(f"{len(CROPS) + len(REDUCED) + 1} images, {total / 1024:.0f} KiB in {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
