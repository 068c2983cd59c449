#!/usr/bin/python3
"""make_test_images: writes the deterministic test images of the preprocessing checks.

Each image is a photo-like mix of smooth gradients, filled shapes, fine stripes (which make
the antialiasing filter matter) and noise, made from a fixed seed, in many sizes and aspect
ratios (1x1 to 4000x10), in RGB, L, RGBA and P modes, saved as PNG or JPEG (quality 90).

Usage: /usr/bin/python3 tests/reference/make_test_images.py OUTDIR
"""
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

SEED = 20240611

# (width, height, mode, format). Sizes cover: tiny and degenerate shapes, the 224 boundary
# (no resampling, pure crops with odd margins: half-to-even rounding), ordinary photos,
# extreme aspect ratios and upscaling.
CASES = [
    (1, 1, "RGB", "png"),
    (1, 2, "RGB", "png"),
    (2, 3, "RGB", "png"),
    (3, 2, "RGB", "png"),
    (7, 1, "L", "png"),
    (1, 500, "RGB", "png"),
    (500, 1, "RGB", "png"),
    (50, 80, "RGB", "png"),
    (80, 50, "RGB", "jpg"),
    (100, 30, "RGB", "png"),
    (64, 48, "RGBA", "png"),
    (120, 90, "P", "png"),
    (223, 223, "RGB", "png"),
    (224, 224, "RGB", "png"),
    (225, 224, "RGB", "png"),
    (224, 225, "RGB", "png"),
    (225, 225, "RGB", "png"),
    (227, 224, "RGB", "jpg"),
    (224, 229, "RGB", "png"),
    (257, 256, "RGB", "png"),
    (299, 299, "RGB", "jpg"),
    (300, 200, "RGB", "jpg"),
    (320, 240, "L", "jpg"),
    (256, 384, "RGBA", "png"),
    (333, 500, "RGB", "jpg"),
    (500, 333, "RGB", "jpg"),
    (400, 300, "P", "png"),
    (448, 224, "RGB", "png"),
    (640, 427, "L", "png"),
    (640, 480, "RGB", "jpg"),
    (480, 640, "RGB", "jpg"),
    (800, 600, "RGB", "png"),
    (1024, 768, "RGB", "jpg"),
    (768, 1024, "RGB", "png"),
    (1000, 37, "RGB", "png"),
    (37, 1000, "RGB", "png"),
    (1600, 1200, "RGB", "jpg"),
    (2048, 1536, "RGB", "jpg"),
    (4000, 10, "RGB", "png"),
    (10, 4000, "RGB", "png"),
]


def case_name(index, w, h, mode, fmt):
    return f"{index:02d}_{w}x{h}_{mode}.{fmt}"


def make_rgb(w, h, rng):
    """A photo-like RGB image: gradients + shapes + stripes + noise, as a PIL image."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    u = x / max(w - 1, 1)
    v = y / max(h - 1, 1)
    base = np.empty((h, w, 3))
    for c in range(3):
        a, b, ph = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * (u * 1.3 + v * 0.7) + ph)
        base[..., c] = 128 + 70 * (a * u + b * v) + 40 * wave
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")

    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 9))):
        x0, x1 = sorted(rng.uniform(-0.2, 1.2, 2) * w)
        y0, y1 = sorted(rng.uniform(-0.2, 1.2, 2) * h)
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse([x0, y0, x1, y1], fill=color)
        elif kind == 1:
            draw.rectangle([x0, y0, x1, y1], fill=color)
        else:
            pts = [(float(rng.uniform(0, w)), float(rng.uniform(0, h))) for _ in range(3)]
            draw.polygon(pts, fill=color)

    arr = np.asarray(img).astype(np.float64)
    # Fine stripes in one corner region: high frequencies that aliasing would distort.
    period = float(rng.uniform(2.0, 5.0))
    stripes = 30 * np.sin(2 * np.pi * (x + y * 0.5) / period)
    mask = (u > 0.6) & (v < 0.4)
    arr[mask] += stripes[mask][:, None]
    arr += rng.normal(0, 6, arr.shape)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")


def make_image(w, h, mode, rng):
    rgb = make_rgb(w, h, rng)
    if mode == "RGB":
        return rgb
    if mode == "L":
        return rgb.convert("L")
    if mode == "RGBA":
        alpha = np.clip(np.add.outer(np.linspace(40, 255, h), np.linspace(0, 60, w)), 0, 255)
        im = rgb.copy()
        im.putalpha(Image.fromarray(alpha.astype(np.uint8), "L"))
        return im
    if mode == "P":
        return rgb.quantize(colors=64)
    raise ValueError(f"unknown mode {mode}")


def write_all(outdir):
    """Writes every case into outdir; returns [(path, (w, h, mode, fmt))]."""
    os.makedirs(outdir, exist_ok=True)
    rng = np.random.default_rng(SEED)
    written = []
    for i, (w, h, mode, fmt) in enumerate(CASES):
        im = make_image(w, h, mode, rng)
        path = os.path.join(outdir, case_name(i, w, h, mode, fmt))
        if fmt == "jpg":
            im.save(path, "JPEG", quality=90)
        else:
            im.save(path, "PNG")
        written.append((path, (w, h, mode, fmt)))
    return written


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    for path, _ in write_all(argv[1]):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
