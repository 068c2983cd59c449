#!/usr/bin/python3
"""make_jpegs: writes the decoder's fixtures: photo-like JPEGs and the odd cases of every format.

Two sets, both from a fixed seed:
  fixtures  (internal/pipeline/decode/testdata/): one realistic 1024x768 q90 photo-like JPEG and the odd
            cases the decoder must match Pillow on: grayscale, CMYK (Adobe, inverted), progressive,
            4:4:4 / 4:2:2 / 4:2:0, restart markers (jpegtran -restart, skipped without it), 1x1 and
            7x3, odd sizes, EXIF orientation 6; PNG RGBA / RGB 16-bit / RGBA 16-bit / gray 16-bit /
            palette with tRNS / gray+alpha / gray; GIF (multi-frame, transparent index); WebP lossy,
            lossy with alpha, and lossless (when Pillow has WebP); BMP.
  bench     (any directory): N photo-like 1024x768 q90 JPEGs (~300 KB each) for the benchmarks.

Usage:
  /usr/bin/python3 tests/reference/make_jpegs.py fixtures OUTDIR
  /usr/bin/python3 tests/reference/make_jpegs.py bench OUTDIR [N]      (N defaults to 20)
"""
import io
import os
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
from PIL import Image, ImageDraw, features

SEED = 20240612


def photo(w, h, rng):
    """A photo-like RGB image: smooth gradients, soft blobs, hard-edged shapes, text-like strokes
    and sensor-like noise, so JPEG sizes and decode costs resemble real photos."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    base = rng.uniform(40, 200, 3)
    for c in range(3):
        fx, fy = rng.uniform(0.5, 3.0, 2)
        ph = rng.uniform(0, 6.28)
        img[..., c] = base[c] + 50 * np.sin(fx * x / max(w, 1) * 6.28 + ph) * np.cos(fy * y / max(h, 1) * 6.28)
    for _ in range(12):  # soft blobs (sky, skin, out-of-focus background)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.05, 0.4) * max(w, h)
        col = rng.uniform(-80, 80, 3)
        g = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        img += g[..., None] * col
    # textured regions (foliage, fabric): band-limited noise
    tex = rng.normal(0, 1, (h // 4 + 1, w // 4 + 1, 3)).astype(np.float32)
    tex = np.kron(tex, np.ones((4, 4, 1), np.float32))[:h, :w]
    img += 24 * tex
    img += rng.normal(0, 5, (h, w, 3))  # sensor noise
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(im)
    for _ in range(max(1, (w * h) // 40000)):  # hard-edged objects
        x0, y0 = rng.integers(0, max(w, 2)), rng.integers(0, max(h, 2))
        x1, y1 = x0 + rng.integers(1, max(w // 4, 2)), y0 + rng.integers(1, max(h // 4, 2))
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            d.rectangle([x0, y0, x1, y1], fill=col)
        else:
            d.ellipse([x0, y0, x1, y1], fill=col)
    for _ in range(max(1, (w * h) // 30000)):  # text-like strokes: thin high-contrast lines
        x0, y0 = int(rng.integers(0, max(w, 2))), int(rng.integers(0, max(h, 2)))
        col = (0, 0, 0) if rng.random() < 0.5 else (255, 255, 255)
        for k in range(int(rng.integers(3, 12))):
            d.line([x0 + 7 * k, y0, x0 + 7 * k + 4, y0 + 10], fill=col, width=1)
            d.line([x0 + 7 * k, y0 + 10, x0 + 7 * k + 5, y0], fill=col, width=1)
    return im


def png_chunk(kind, data):
    c = kind + data
    return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)


def write_png16(path, arr, color_type):
    """Writes a 16-bit PNG from a uint16 array (h, w, channels); Pillow cannot save RGB 16-bit."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[r].astype(">u2").tobytes() for r in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""))


def fixtures(out):
    rng = np.random.default_rng(SEED)
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, name)
    big = photo(1024, 768, rng)
    big.save(p("photo_1024x768_q90.jpg"), quality=90)
    small = photo(333, 251, rng)  # odd sizes: partial MCUs in both directions
    small.save(p("s444.jpg"), quality=90, subsampling=0)
    small.save(p("s422.jpg"), quality=90, subsampling=1)
    small.save(p("s420.jpg"), quality=90, subsampling=2)
    small.save(p("progressive.jpg"), quality=85, progressive=True)
    small.convert("L").save(p("gray.jpg"), quality=90)
    small.convert("CMYK").save(p("cmyk.jpg"), quality=90)  # libjpeg writes an Adobe marker
    photo(1, 1, rng).save(p("tiny_1x1.jpg"), quality=90)
    photo(7, 3, rng).save(p("tiny_7x3.jpg"), quality=90)
    photo(1, 1, rng).convert("L").save(p("tiny_gray_1x1.jpg"), quality=90)
    ex = Image.Exif()
    ex[0x0112] = 6  # orientation: rotate 90 CW to display
    photo(120, 80, rng).save(p("exif6.jpg"), quality=90, exif=ex.tobytes())
    if shutil.which("jpegtran"):
        subprocess.run(["jpegtran", "-restart", "2B", "-outfile", p("restart.jpg"), p("s420.jpg")], check=True)

    # PNG
    rgba = photo(97, 61, rng).convert("RGBA")
    a = np.array(rgba)
    a[..., 3] = rng.integers(0, 256, a.shape[:2])  # every alpha, including 0
    Image.fromarray(a, "RGBA").save(p("rgba.png"))
    Image.fromarray(a[..., :3], "RGB").save(p("rgb.png"))
    Image.fromarray(a[..., 0], "L").save(p("gray.png"))
    la = np.stack([a[..., 1], a[..., 3]], -1)
    Image.fromarray(la, "LA").save(p("la.png"))
    pal = photo(80, 50, rng).quantize(colors=64)
    pal.save(p("palette.png"), transparency=5)
    write_png16(p("rgb16.png"), rng.integers(0, 65536, (31, 43, 3)), 2)
    write_png16(p("rgba16.png"), rng.integers(0, 65536, (31, 43, 4)), 6)
    g16 = rng.integers(0, 65536, (29, 37, 1))
    g16[:5] = rng.integers(0, 300, (5, 37, 1))  # some values a plain clamp keeps apart
    write_png16(p("gray16.png"), g16, 0)

    # GIF: three frames, a transparent index on the first
    frames = [photo(64, 48, rng).quantize(colors=32) for _ in range(3)]
    frames[0].save(p("anim.gif"), save_all=True, append_images=frames[1:], duration=100, loop=0, transparency=3)

    if features.check("webp"):
        w = photo(90, 70, rng)
        w.save(p("lossy.webp"), quality=80)
        photo(91, 69, rng).save(p("lossy_odd.webp"), quality=75)  # odd sizes: chroma edges
        w.save(p("lossless.webp"), lossless=True)
        wa = np.array(w.convert("RGBA"))
        wa[..., 3] = rng.integers(0, 256, wa.shape[:2])
        Image.fromarray(wa, "RGBA").save(p("lossless_alpha.webp"), lossless=True)
        Image.fromarray(wa, "RGBA").save(p("lossy_alpha.webp"), quality=80)

    photo(45, 33, rng).save(p("rgb.bmp"))


def bench(out, n):
    rng = np.random.default_rng(SEED + 1)
    os.makedirs(out, exist_ok=True)
    for i in range(n):
        photo(1024, 768, rng).save(os.path.join(out, "photo_%02d.jpg" % i), quality=90)


def main(argv):
    if len(argv) < 3 or argv[1] not in ("fixtures", "bench"):
        sys.stderr.write(__doc__)
        return 2
    if argv[1] == "fixtures":
        fixtures(argv[2])
    else:
        bench(argv[2], int(argv[3]) if len(argv) > 3 else 20)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
