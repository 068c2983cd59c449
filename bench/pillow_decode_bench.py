#!/usr/bin/python3
"""pillow_decode_bench: the Python baseline of the decode benchmark, one core.

Times Image.open(f).convert('RGB') + CLIP's transform (resize the shorter side to 224 with
Pillow's bicubic, torchvision's size and center-crop rules, ToTensor, Normalize) over the
JPEGs of a directory, as the notebook's PIL threads did per image; and the same with
Image.draft('RGB', (224, 224)) first (Pillow's DCT-scaled decode, the analogue of clipd's
fast mode). Prints images/s for each.

Usage: /usr/bin/python3 bench/pillow_decode_bench.py DIR [SECONDS]
  DIR: e.g. made by /usr/bin/python3 tests/reference/make_images.py bench DIR 20
"""
import glob
import os
import sys
import time

import numpy as np
from PIL import Image

SIZE = 224
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32).reshape(3, 1, 1)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32).reshape(3, 1, 1)


def clip_transform(im):
    w, h = im.size
    if w <= h:
        nw, nh = SIZE, int(SIZE * h / w)
    else:
        nw, nh = int(SIZE * w / h), SIZE
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.BICUBIC)
    left = int(round((nw - SIZE) / 2.0))
    top = int(round((nh - SIZE) / 2.0))
    im = im.crop((left, top, left + SIZE, top + SIZE)).convert("RGB")
    a = np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return (a - MEAN) / STD


def one(path, draft):
    im = Image.open(path)
    if draft:
        im.draft("RGB", (SIZE, SIZE))
    return clip_transform(im.convert("RGB"))


def bench(files, draft, seconds):
    n, t0 = 0, time.perf_counter()
    while True:
        for f in files:
            one(f, draft)
            n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


def main(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    files = sorted(glob.glob(os.path.join(argv[1], "*.jpg")))
    seconds = float(argv[2]) if len(argv) > 2 else 5.0
    for f in files:  # warm the page cache
        open(f, "rb").read()
    print("pillow %s exact (open+convert+CLIP transform): %.1f img/s" % (Image.__version__, bench(files, False, seconds)))
    print("pillow %s draft (DCT-scaled, like fast):       %.1f img/s" % (Image.__version__, bench(files, True, seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
