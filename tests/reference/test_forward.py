#!/usr/bin/env python3
"""test_forward: the CPU backend's forward pass against the independent PyTorch reference
(clip_ref.VisionRef).

1. The reference itself: its plain-matmul attention equals torch.nn.MultiheadAttention, and
   the committed goldens still equal what it computes from the committed weights.
2. The committed goldens (testdata/golden/*, made by make_golden.py): engine embed_pixels
   vs expected.npy.
3. Models written on the fly into a temp dir: a B/32-shaped model in OpenAI naming f32
   (QuickGELU, open_clip_config.json) and in Hugging Face naming f16 (erf GELU,
   config.json), and a tiny bf16 one; embed_pixels and embed_images (synthetic RGB8 images
   of several sizes; reference = clip_ref.preprocess + VisionRef) against the reference
   computed from the weights as stored (after f16/bf16 rounding).
4. Batch independence and thread count: image i of a batch equals it alone, 1 and 2 threads
   agree.

Pass: cosine >= 0.99999 per image and max |engine - ref| <= 2e-6 * |ref| per image for
pixel inputs (fp32 rounding through 12 layers gives ~1.3e-7 relative; QuickGELU's 1.702
changed to 1.7 gives 6e-5, a wrong softmax scale or LayerNorm eps 1e-3). For raw images the
bound is 2e-5, which leaves room for rare +-1 differences of the uint8 resize.
Run: CLIPENGINE_LIB=build/lib/libclipengine.so /usr/bin/python3 tests/reference/test_forward.py
"""
import json
import math
import os
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import clip_ref as R  # noqa: E402
import clipengine_ctypes as CE  # noqa: E402

ROOT = os.environ.get("CLIP_SOURCE_DIR", os.path.normpath(os.path.join(HERE, "..", "..")))
GOLDEN = os.path.join(ROOT, "testdata", "golden")
COS_MIN = 0.99999
REL_MAXABS = 2e-6
REL_MAXABS_IMAGES = 2e-5
THREADS = 2

failures = []
rows = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


def compare(case, got, ref, rel_bound=REL_MAXABS):
    """Per-image cosine and max-abs error (relative to the reference's norm)."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    check(got.shape == ref.shape, f"{case}: shape {got.shape} != {ref.shape}")
    if got.shape != ref.shape:
        return
    check(bool(np.all(np.isfinite(got))), f"{case}: non-finite output")
    norm = np.linalg.norm(ref, axis=1)
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * norm)
    maxabs = np.abs(got - ref).max(axis=1)
    rel = maxabs / norm
    rows.append((case, len(ref), cos.min(), maxabs.max(), rel.max(), norm.mean()))
    print(f"{case:44s} n={len(ref)} cos_min={cos.min():.9f} (1-cos {1 - cos.min():.1e}) maxabs={maxabs.max():.3e} "
          f"maxabs/|ref|={rel.max():.2e} |ref|~{norm.mean():.2f}", flush=True)
    check(bool(np.all(cos >= COS_MIN)), f"{case}: cosine {cos.min():.9f} < {COS_MIN}")
    check(bool(np.all(rel <= rel_bound)), f"{case}: max-abs/|ref| {rel.max():.2e} > {rel_bound}")


def engine(path, **kw):
    kw.setdefault("threads", THREADS)
    return CE.Engine(path, backend="cpu", **kw)


def synthetic_images(seed, sizes):
    """RGB8 images (H, W, 3) with smooth structure and noise, so resizing matters."""
    rng = np.random.default_rng(seed)
    out = []
    for (h, w) in sizes:
        yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        img = np.empty((h, w, 3))
        for c in range(3):
            fx, fy = rng.uniform(0.01, 0.08, 2)
            img[..., c] = 128 + 90 * np.sin(fx * xx + c) * np.cos(fy * yy - c)
        img += rng.normal(0, 20, img.shape)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def reference_images(cfg, stored, arrays):
    from PIL import Image
    px = np.stack([R.preprocess(Image.fromarray(a, "RGB"), cfg.image_size) for a in arrays])
    return R.embed(cfg, stored, px, dtype=torch.float64)


# ---------------------------------------------------------------------------------------

def test_reference_attention_matches_torch_mha():
    """clip_ref's hand-written attention == nn.MultiheadAttention on a tiny model."""
    cfg = R.TINY
    m = R.reference_model(cfg, R.random_weights(cfg, 5), dtype=torch.float64)

    def mha_attention(x, b):
        W = cfg.width
        mha = torch.nn.MultiheadAttention(W, cfg.heads, batch_first=True).to(torch.float64)
        with torch.no_grad():
            mha.in_proj_weight.copy_(b.qkv_w)
            mha.in_proj_bias.copy_(b.qkv_b)
            mha.out_proj.weight.copy_(b.out_w)
            mha.out_proj.bias.copy_(b.out_b)
        return mha(x, x, x, need_weights=False)[0]

    px = torch.from_numpy(R.random_pixels(cfg, 3, 6)).to(torch.float64)
    a = m(px)
    b = m(px, attention=mha_attention)
    err = (a - b).abs().max().item()
    print(f"reference attention vs nn.MultiheadAttention: max-abs {err:.2e}")
    check(err < 1e-10, f"reference attention differs from nn.MultiheadAttention by {err:.2e}")
    # and the model is not degenerate: different images give different embeddings
    check(float((a[0] - a[1]).abs().max()) > 1e-2, "reference embeddings do not depend on input")


def test_safetensors_roundtrip():
    """The reference's own safetensors writer/reader and naming conversions are inverses."""
    cfg = R.TINY
    t = R.random_weights(cfg, 9)
    with tempfile.TemporaryDirectory() as d:
        for naming in ("openai", "hf"):
            for dtype in ("f32", "f16", "bf16"):
                sub = os.path.join(d, naming + dtype)
                stored = R.write_model(sub, cfg, t, naming, dtype)
                cfg2, back = R.read_model(sub)
                check(cfg2 == cfg, f"read_model config {cfg2} != {cfg}")
                bad = [k for k in stored if not torch.equal(stored[k], back[k])]
                check(not bad and set(back) == set(stored),
                      f"safetensors round trip {naming}/{dtype}: {bad[:3]}")
                with open(os.path.join(sub, "model.safetensors"), "rb") as f:
                    n = int.from_bytes(f.read(8), "little")
                    check(n % 8 == 0, f"header length {n} not 8-aligned")
                    json.loads(f.read(n))


def test_goldens():
    names = sorted(os.listdir(GOLDEN))
    check(len(names) >= 3, f"expected >= 3 goldens in {GOLDEN}, found {names}")
    for name in names:
        d = os.path.join(GOLDEN, name)
        with open(os.path.join(d, "meta.json")) as f:
            meta = json.load(f)
        cfg = R.Config(**meta["config"])
        px = np.load(os.path.join(d, "pixels.npy"))
        expected = np.load(os.path.join(d, "expected.npy"))
        # the fixture still matches the reference (weights + reference code unchanged)
        cfg_read, stored = R.read_model(d)
        check(cfg_read == cfg, f"golden {name}: reference reads config {cfg_read}, meta says {cfg}")
        again = R.embed(cfg, stored, px, dtype=torch.float64)
        check(np.abs(again - expected).max() <= 1e-6 * np.abs(expected).max(),
              f"golden {name}: clip_ref no longer reproduces expected.npy")
        with engine(d) as e:
            info = e.info
            want = {"image_size": cfg.image_size, "patch_size": cfg.patch_size,
                    "width": cfg.width, "layers": cfg.layers, "heads": cfg.heads,
                    "mlp_width": cfg.mlp_width, "embed_dim": cfg.embed_dim,
                    "quick_gelu": int(cfg.quick_gelu)}
            check(info == want, f"golden {name}: engine info {info} != {want}")
            compare(f"golden {name}", e.embed_pixels(px), expected)


def test_b32(tmp):
    """B/32-shaped models: one set of random weights (generating 88M numbers costs seconds),
    written twice. The reference runs in fp32 here (fp64 on 2 cores takes ~10 s); its own
    error against fp64 is ~1e-7 relative, far inside the bounds."""
    arrays = synthetic_images(42, [(300, 200), (180, 261)])
    base = R.random_weights(R.B32, 11)
    cases = [  # (label, naming, dtype, quick_gelu)
        ("b32 openai f32 quick", "openai", "f32", True),
        ("b32 hf f16 erf", "hf", "f16", False),
    ]
    for i, (label, naming, dtype, quick) in enumerate(cases):
        cfg = R.with_gelu(R.B32, quick)
        d = os.path.join(tmp, label.replace(" ", "_"))
        stored = R.write_model(d, cfg, base, naming, dtype)
        px = R.random_pixels(cfg, 2, 100 + i)
        from PIL import Image
        pre = np.stack([R.preprocess(Image.fromarray(a, "RGB"), cfg.image_size) for a in arrays])
        ref = R.embed(cfg, stored, np.concatenate([px, pre]), dtype=torch.float32)
        del stored
        with engine(d, max_batch=4) as e:
            check(e.info["quick_gelu"] == int(quick) and e.info["heads"] == 12 and
                  e.info["width"] == 768 and e.info["embed_dim"] == 512,
                  f"{label}: engine info {e.info}")
            compare(f"{label} embed_pixels", e.embed_pixels(px), ref[:2])
            compare(f"{label} embed_images {[a.shape[:2] for a in arrays]}",
                    e.embed_images(arrays), ref[2:], REL_MAXABS_IMAGES)
        os.remove(os.path.join(d, "model.safetensors"))


def test_tiny_bf16_and_batching(tmp):
    cfg = R.with_gelu(R.TINY, False)
    d = os.path.join(tmp, "tiny_bf16")
    stored = R.write_model(d, cfg, R.random_weights(cfg, 21), "hf", "bf16")
    px = R.random_pixels(cfg, 7, 22)
    ref = R.embed(cfg, stored, px, dtype=torch.float64)
    with engine(d, max_batch=7) as e2, engine(d, threads=1, max_batch=7) as e1:
        out2 = e2.embed_pixels(px)
        compare("tiny hf bf16 erf embed_pixels", out2, ref)
        arrays = synthetic_images(23, [(50, 37), (32, 32), (31, 90), (200, 120)])
        compare("tiny hf bf16 erf embed_images", e2.embed_images(arrays),
                reference_images(cfg, stored, arrays), REL_MAXABS_IMAGES)
        # each image alone == the same image inside the batch (rows do not mix)
        alone = np.concatenate([e2.embed_pixels(px[i:i + 1]) for i in range(len(px))])
        err = np.abs(alone - out2).max()
        check(err <= 1e-5 * np.abs(out2).max(), f"batch vs single differ by {err:.2e}")
        # thread count does not change the result beyond rounding
        err = np.abs(e1.embed_pixels(px) - out2).max()
        check(err <= 1e-5 * np.abs(out2).max(), f"1 vs 2 threads differ by {err:.2e}")
        # a second call on the same engine gives the same result (scratch fully rewritten)
        check(np.array_equal(e2.embed_pixels(px), out2), "repeated call differs")
        # a batch beyond max_batch is refused, not overrun
        try:
            e2.embed_pixels(np.concatenate([px, px[:1]]))
            check(False, "n > max_batch was accepted")
        except CE.ClipError as ex:
            check(ex.status == -1, f"n > max_batch gave {ex}")
        check(e2.backend_name.startswith("cpu 2 threads fp32"), f"backend name {e2.backend_name!r}")


def main():
    torch.set_num_threads(THREADS)
    test_reference_attention_matches_torch_mha()
    test_safetensors_roundtrip()
    test_goldens()
    with tempfile.TemporaryDirectory(prefix="clip_fwd_") as tmp:
        test_tiny_bf16_and_batching(tmp)
        test_b32(tmp)
    print(f"\n{len(rows)} comparisons; bounds: cos >= {COS_MIN}, maxabs/|ref| <= {REL_MAXABS} "
          f"(pixels), {REL_MAXABS_IMAGES} (images)")
    if failures:
        print(f"{len(failures)} FAILURES:\n  " + "\n  ".join(failures))
        return 1
    print("all ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
