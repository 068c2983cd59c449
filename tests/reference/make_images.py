#!/usr/bin/python3
"""make_images: writes every test image of the project, deterministically, from one seed.

Four sets, each drawn from its own random stream (SET_SEEDS below, all derived from SEED), so
that adding an image to one set never changes another set's bytes:

  fixtures OUTDIR     the decoder's fixtures (committed in internal/pipeline/decode/testdata/;
                      the Go tests check their exact bytes): one realistic 1024x768 q90
                      photo-like JPEG and the odd cases the decoder must match Pillow on:
                      grayscale, CMYK (Adobe, inverted), progressive, 4:4:4 / 4:2:2 / 4:2:0,
                      restart markers (jpegtran -restart, skipped without it), 1x1 and 7x3, odd
                      sizes, EXIF orientation 6; PNG RGBA / RGB 16-bit / RGBA 16-bit / gray
                      16-bit / palette with tRNS / gray+alpha / gray; GIF (multi-frame,
                      transparent index); WebP lossy, lossy with alpha, and lossless (when
                      Pillow has WebP); BMP.
  bench OUTDIR [N]    N photo-like 1024x768 q90 JPEGs (~300 KB each, N defaults to 20) for the
                      benchmarks (decodebench, bench/e2e-bench.sh, bench/fastcost).
  preprocess OUTDIR   the preprocessing checks' images (tests/reference/test_preprocess.py,
                      which imports this module and calls preprocess(outdir)): gradients,
                      filled shapes, fine stripes (which make the antialiasing filter matter)
                      and noise, in many sizes and aspect ratios (1x1 to 4000x10), in RGB, L,
                      RGBA and P modes, saved as PNG or JPEG (quality 90). Prints the paths.
  e2e [OUTDIR]        the end-to-end fixtures of `clipd embed` (committed in
                      cmd/clipd/testdata/e2e/, the default OUTDIR, whose files are replaced):
                      30 small photo-like images (24 JPEGs of assorted sizes and qualities, some
                      progressive or grayscale, and 6 PNGs, RGB and RGBA), a GOOD list of them,
                      and the bad files a crawl meets:
                        corrupt.jpg     a JPEG header followed by garbage
                        truncated.jpg   the first 40% of a valid JPEG
                        page.html       an HTML page served as if it were an image
                        bomb.png        a valid PNG header claiming 30000x30000 pixels
                      ("Too large", 404 and a hanging server are made by the test server.)

Usage: /usr/bin/python3 tests/reference/make_images.py SET ARGS...   (sets and args as above)
"""
import os
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
from PIL import Image, ImageDraw, features

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))

# The one seed. Every set starts its own generator from SET_SEEDS[set]; the offsets are the
# sets' historical seeds (20240611..20240613 and 20250105), kept so that the committed fixtures
# (decode/testdata, whose bytes the Go tests check, and cmd/clipd/testdata/e2e) and the images
# the tests make at run time stay byte-identical to what the earlier three scripts wrote.
SEED = 20240611
SET_SEEDS = {
    "preprocess": SEED,       # 20240611
    "fixtures": SEED + 1,     # 20240612
    "bench": SEED + 2,        # 20240613
    "e2e": SEED + 9494,       # 20250105
}


def rng_for(name):
    return np.random.default_rng(SET_SEEDS[name])


# ---------------------------------------------------------------------------------------------
# Shared drawing and file helpers.

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


def striped(w, h, rng):
    """The preprocessing checks' pattern: gradients + filled shapes + fine stripes in one corner
    (high frequencies that a wrong antialiasing filter would distort) + noise. Unlike photo() it
    is exact at 1x1..4000x10 and puts its energy where resampling errors show."""
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
    period = float(rng.uniform(2.0, 5.0))
    stripes = 30 * np.sin(2 * np.pi * (x + y * 0.5) / period)
    mask = (u > 0.6) & (v < 0.4)
    arr[mask] += stripes[mask][:, None]
    arr += rng.normal(0, 6, arr.shape)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")


def with_random_alpha(im, rng, dtype=np.int64):
    """im as an RGBA array with a uniformly random alpha per pixel (every value, 0 included).
    dtype is the draw's (numpy draws int64 and uint8 differently: each set keeps its own)."""
    a = np.array(im.convert("RGBA"))
    a[..., 3] = rng.integers(0, 256, a.shape[:2], dtype=dtype)
    return a


def png_chunk(kind, data):
    c = kind + data
    return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)


def write_png_raw(path, w, h, bit_depth, color_type, raw):
    """Writes a PNG from already filtered scanlines (filter byte + row), by hand: for what
    Pillow cannot save (RGB 16-bit) or will not save (a header that lies about its size)."""
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", raw) + png_chunk(b"IEND", b""))


def write_png16(path, arr, color_type):
    """Writes a 16-bit PNG from a uint16 array (h, w, channels)."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[r].astype(">u2").tobytes() for r in range(h))
    write_png_raw(path, w, h, 16, color_type, zlib.compress(raw, 9))


# ---------------------------------------------------------------------------------------------
# fixtures: the decoder's (internal/pipeline/decode/testdata/).

def fixtures(out):
    rng = rng_for("fixtures")
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
    a = with_random_alpha(photo(97, 61, rng), rng)
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
        wa = with_random_alpha(w, rng)
        Image.fromarray(wa, "RGBA").save(p("lossless_alpha.webp"), lossless=True)
        Image.fromarray(wa, "RGBA").save(p("lossy_alpha.webp"), quality=80)

    photo(45, 33, rng).save(p("rgb.bmp"))


# ---------------------------------------------------------------------------------------------
# bench: N photo-like 1024x768 q90 JPEGs.

def bench(out, n=20):
    rng = rng_for("bench")
    os.makedirs(out, exist_ok=True)
    for i in range(n):
        photo(1024, 768, rng).save(os.path.join(out, "photo_%02d.jpg" % i), quality=90)


# ---------------------------------------------------------------------------------------------
# preprocess: the preprocessing checks' images.

# (width, height, mode, format). Sizes cover: tiny and degenerate shapes, the 224 boundary
# (no resampling, pure crops with odd margins: half-to-even rounding), ordinary photos,
# extreme aspect ratios and upscaling.
PREPROCESS_CASES = [
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


def preprocess_image(w, h, mode, rng):
    rgb = striped(w, h, rng)
    if mode == "RGB":
        return rgb
    if mode == "L":
        return rgb.convert("L")
    if mode == "RGBA":  # a smooth alpha ramp
        alpha = np.clip(np.add.outer(np.linspace(40, 255, h), np.linspace(0, 60, w)), 0, 255)
        im = rgb.copy()
        im.putalpha(Image.fromarray(alpha.astype(np.uint8), "L"))
        return im
    if mode == "P":
        return rgb.quantize(colors=64)
    raise ValueError(f"unknown mode {mode}")


def preprocess(outdir):
    """Writes every preprocessing case into outdir; returns [(path, (w, h, mode, fmt))]."""
    os.makedirs(outdir, exist_ok=True)
    rng = rng_for("preprocess")
    written = []
    for i, (w, h, mode, fmt) in enumerate(PREPROCESS_CASES):
        im = preprocess_image(w, h, mode, rng)
        path = os.path.join(outdir, f"{i:02d}_{w}x{h}_{mode}.{fmt}")
        if fmt == "jpg":
            im.save(path, "JPEG", quality=90)
        else:
            im.save(path, "PNG")
        written.append((path, (w, h, mode, fmt)))
    return written


# ---------------------------------------------------------------------------------------------
# e2e: the end-to-end fixtures of `clipd embed` (cmd/clipd/testdata/e2e/).

E2E_DEFAULT_OUT = os.path.join(REPO, "cmd", "clipd", "testdata", "e2e")


def e2e(out=E2E_DEFAULT_OUT):
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        os.remove(os.path.join(out, f))
    rng = rng_for("e2e")
    good = []
    for i in range(24):
        w, h = int(rng.integers(40, 200)), int(rng.integers(40, 200))
        im = photo(w, h, rng)
        name = "img_%02d.jpg" % i
        kw = dict(quality=int(rng.integers(70, 96)))
        if i % 6 == 3:
            kw["progressive"] = True
        if i % 8 == 5:
            im = im.convert("L")
        im.save(os.path.join(out, name), **kw)
        good.append(name)
    for i in range(6):
        w, h = int(rng.integers(30, 120)), int(rng.integers(30, 120))
        im = photo(w, h, rng)
        if i % 2:
            im = Image.fromarray(with_random_alpha(im, rng, np.uint8), "RGBA")
        name = "img_%02d.png" % (24 + i)
        im.save(os.path.join(out, name))
        good.append(name)

    with open(os.path.join(out, "img_00.jpg"), "rb") as f:
        jpeg = f.read()
    junk = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    with open(os.path.join(out, "corrupt.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0" + junk)
    with open(os.path.join(out, "truncated.jpg"), "wb") as f:
        f.write(jpeg[: len(jpeg) * 4 // 10])
    with open(os.path.join(out, "page.html"), "wb") as f:
        f.write(b"<!DOCTYPE html>\n<html><head><title>Photo not found</title></head>"
                b"<body><p>This photo is no longer available.</p></body></html>\n")
    # a few rows of a 30000x30000 RGB image: the header is the point
    write_png_raw(os.path.join(out, "bomb.png"), 30000, 30000, 8, 2, zlib.compress(b"\x00" * (1 + 30000 * 3) * 4))
    with open(os.path.join(out, "GOOD"), "w") as f:
        f.write("\n".join(good) + "\n")


# ---------------------------------------------------------------------------------------------

def usage():
    sys.stderr.write(__doc__)
    return 2


def main(argv):
    if len(argv) < 2:
        return usage()
    cmd, args = argv[1], argv[2:]
    if cmd == "fixtures" and len(args) == 1:
        fixtures(args[0])
    elif cmd == "bench" and len(args) in (1, 2):
        bench(args[0], int(args[1]) if len(args) > 1 else 20)
    elif cmd == "preprocess" and len(args) == 1:
        for path, _ in preprocess(args[0]):
            print(path)
    elif cmd == "e2e" and len(args) <= 1:
        e2e(*args)
    else:
        return usage()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
