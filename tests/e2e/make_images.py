#!/usr/bin/python3
"""make_images: writes the end-to-end fixtures of `clipd embed` (cmd/clipd/testdata/e2e/).

From a fixed seed: 30 small photo-like images (24 JPEGs of assorted sizes and qualities, some
progressive or grayscale, and 6 PNGs, RGB and RGBA), the photo generator being the decoder
fixtures' one (tests/reference/make_jpegs.py), and the bad files a crawl meets:
  corrupt.jpg     a JPEG header followed by garbage
  truncated.jpg   the first 40% of a valid JPEG
  page.html       an HTML page served as if it were an image
  bomb.png        a valid PNG header claiming 30000x30000 pixels (a decompression bomb)
"Too large", 404 and a hanging server are made by the test server, not by files.

Usage: /usr/bin/python3 tests/e2e/make_images.py [OUTDIR]   (default cmd/clipd/testdata/e2e)
"""
import os
import struct
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
from make_jpegs import photo  # noqa: E402

SEED = 20250105


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def main(argv):
    out = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "cmd", "clipd", "testdata", "e2e")
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        os.remove(os.path.join(out, f))
    rng = np.random.default_rng(SEED)
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
            a = np.array(im.convert("RGBA"))
            a[..., 3] = rng.integers(0, 256, (h, w), dtype=np.uint8)
            from PIL import Image
            im = Image.fromarray(a, "RGBA")
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
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + 30000 * 3) * 4)  # a few rows: the header is the point
    with open(os.path.join(out, "bomb.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))
    with open(os.path.join(out, "GOOD"), "w") as f:
        f.write("\n".join(good) + "\n")


if __name__ == "__main__":
    main(sys.argv)
