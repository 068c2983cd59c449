#!/usr/bin/python3
"""test_preprocess: libclipengine's CPU preprocessing against Pillow + torchvision's rules.

For every image made by make_images.py preprocess (decoded by Pillow, then convert('RGB'), since
the engine takes RGB8), the engine's clip_preprocess_image_u8 must equal, byte for byte,
Pillow's Image.resize(BICUBIC) to torchvision's Resize(size) geometry followed by
torchvision's CenterCrop; clip_preprocess_image must equal ToTensor + Normalize of that crop
computed in float32. Sizes 224 (CLIP ViT-B/32) and 64, 32 (the tiny test models).
"""
import os
import sys
import tempfile

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import clipengine_ctypes as ce  # noqa: E402
import make_images  # noqa: E402

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
SIZES = (224, 64, 32)


def torchvision_resize_size(w, h, size):
    """torchvision.transforms.Resize(int): the short side becomes size, the long side
    int(size * long / short) (truncated). Returns (new_w, new_h)."""
    short, long_ = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long_ / short)
    return (new_short, new_long) if w <= h else (new_long, new_short)


def center_crop_offsets(w, h, size):
    """torchvision CenterCrop: int(round((H - size) / 2.0)), Python's half-to-even round."""
    return int(round((w - size) / 2.0)), int(round((h - size) / 2.0))


def reference_u8(rgb, size):
    """Pillow + torchvision on an RGB PIL image -> (size, size, 3) uint8."""
    w, h = rgb.size
    nw, nh = torchvision_resize_size(w, h, size)
    # torchvision returns the image untouched when the size does not change; Pillow's
    # resize does the same (a copy), so both paths agree.
    resized = rgb if (nw, nh) == (w, h) else rgb.resize((nw, nh), Image.BICUBIC)
    cx, cy = center_crop_offsets(nw, nh, size)
    out = np.asarray(resized)[cy:cy + size, cx:cx + size]
    assert out.shape == (size, size, 3), out.shape
    return out


def reference_normalized(u8):
    """ToTensor (u8 / 255 in float32) then Normalize((x - mean) / std), as (3, S, S)."""
    x = u8.astype(np.float32) / np.float32(255.0)
    x = (x - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def check_geometry_rules():
    # Known cases, worked out by hand from the rules above.
    assert torchvision_resize_size(640, 480, 224) == (298, 224)
    assert center_crop_offsets(298, 224, 224) == (37, 0)
    assert center_crop_offsets(227, 224, 224) == (2, 0)   # 1.5 -> 2
    assert center_crop_offsets(229, 224, 224) == (2, 0)   # 2.5 -> 2 (half to even)
    assert center_crop_offsets(225, 224, 224) == (0, 0)   # 0.5 -> 0


def main():
    check_geometry_rules()
    failures = []
    checked = 0
    u8_identical = 0
    exact_float = 0
    worst_float = 0.0
    with tempfile.TemporaryDirectory(prefix="clip_pre_") as tmp:
        cases = make_images.preprocess(tmp)
        assert len(cases) >= 20
        for n, (path, (w, h, mode, fmt)) in enumerate(cases):
            with Image.open(path) as im:
                im.load()
                assert im.size == (w, h) and im.mode == mode, (path, im.size, im.mode)
                rgb = im.convert("RGB")
            arr = np.asarray(rgb)
            # Every third image goes in as a view with padded rows (stride > width * 3).
            if n % 3 == 1:
                padded = np.zeros((h, w + 5, 3), np.uint8)
                padded[:, :w] = arr
                arr = padded[:, :w]
            for size in SIZES:
                name = f"{os.path.basename(path)} -> {size}"
                ref = reference_u8(rgb, size)
                got = ce.preprocess_u8(arr, size)
                checked += 1
                if not np.array_equal(got, ref):
                    diff = np.abs(got.astype(np.int16) - ref.astype(np.int16))
                    nbad = int(np.count_nonzero(diff))
                    msg = (f"{name}: image {w}x{h} {mode}: {nbad} of {diff.size} values differ, "
                           f"max |diff| {int(diff.max())}")
                    print("FAIL", msg)
                    failures.append(msg)
                    continue
                u8_identical += 1
                ref_f = reference_normalized(ref)
                got_f = ce.preprocess(arr, size)
                err = float(np.abs(got_f - ref_f).max())
                worst_float = max(worst_float, err)
                exact_float += int(np.array_equal(got_f, ref_f))
                if not err < 1e-6:
                    msg = f"{name}: float output max |diff| {err:.3g} >= 1e-6"
                    print("FAIL", msg)
                    failures.append(msg)

    # Every 8-bit value through ToTensor + Normalize: a 224x224 image at 224 is a pure crop,
    # so the u8 stage returns it unchanged and the float stage sees all 256 values per channel.
    ramp = (np.arange(224 * 224 * 3) % 256).astype(np.uint8).reshape(224, 224, 3)
    if not np.array_equal(ce.preprocess_u8(ramp, 224), ramp):
        failures.append("224x224 at 224 is not returned unchanged")
    err = float(np.abs(ce.preprocess(ramp, 224) - reference_normalized(ramp)).max())
    if not err < 1e-6:
        failures.append(f"normalization of all 256 values: max |diff| {err:.3g}")

    # Invalid arguments come back as CLIP_ERR_INVALID_ARGUMENT, not a crash.
    try:
        ce.preprocess_u8(np.zeros((4, 4, 3), np.uint8), 0)
        failures.append("image_size 0 was accepted")
    except ce.ClipError as e:
        assert e.status == -1, e.status

    print(f"{checked} (image, size) pairs checked on {len(cases)} images: u8 identical to "
          f"Pillow in {u8_identical}; float output bit-identical in {exact_float}, worst "
          f"|diff| {worst_float:.3g}")
    if failures:
        print(f"{len(failures)} failures")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
