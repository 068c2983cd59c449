#!/usr/bin/env python3
"""gpu_check: the Python part of `make gpu-check` (bench/gpu-check.sh).

On the GPU machine, with a B/32-shaped random model (tests/reference/clip_ref.py, fixed seed):
  setup   weights file + the PyTorch fp32 reference (TF32 off) + real-looking images
  cpu     the CPU engine on a few images vs the reference (is the weights file read right?)
  u8      CPU preprocessing (clip_preprocess_image_u8) vs Pillow, bit for bit
  pixels  CUDA embed_pixels fp16 / bf16 / fp32 vs the reference: min cosine, max abs error
  stages  the forward stopped after each stage (clip_cuda_debug_forward_stage: tokens, ln_pre,
          every block, ln_post, embedding) vs the reference's same intermediate, per precision:
          where a difference starts and how it grows (always run; arrays saved on a failure)
  images  CUDA embed_images on varied sizes: device uint8 crops vs the CPU path (bit for bit)
          and the embeddings vs the reference on Pillow-preprocessed pixels
  text    the text tower (clip_engine_embed_tokens) on a B/32-shaped text tower (context 77,
          width 512, 12 layers, 8 heads) with 64 token sequences of varied lengths: the CPU
          engine and CUDA fp16 / bf16 / fp32 vs clip_ref.TextRef in fp32 on the GPU (min cosine
          >= 0.9999 fp16, 0.999 bf16, 0.99999 fp32 and CPU), and text sequences/s at batch 64
  speed   engine-only forward images/s (CUDA events, median) at batch 256 and 1024, fp16 and
          bf16, with CUDA graphs (the default) and fp16 without, embed_pixels / embed_images end
          to end, PyTorch fp16 eager on the same weights, a per-op-class breakdown
          (CLIP_CUDA_PROFILE=1, direct launches), torch.compile last (time-capped)

Every result is appended at once to --table (tab-separated: check, value, PASS/FAIL/SKIP/INFO)
so the shell script can print the table even if this process is killed by its timeout.
--dry-run uses the tiny config and the CPU for what does not need a GPU.
--artifacts DIR receives small .npz files with the arrays of a failed comparison, for offline work.
"""
import argparse
import ctypes
import math
import os
import statistics
import sys
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import clip_ref  # noqa: E402
import clipengine_ctypes as ce  # noqa: E402
import torch  # noqa: E402

GFLOP_PER_IMAGE = {"b32": 8.82}  # open_clip docs/model_profile.csv (ViT-B/32, 224 px)


class Report:
    def __init__(self, table_path):
        self.table_path = table_path
        self.rows = []
        self.speed = []

    def add(self, check, value, status):
        value = str(value).replace("\t", " ").replace("\n", " ")
        self.rows.append((check, value, status))
        print(f"[{status}] {check}: {value}", flush=True)
        if self.table_path:
            with open(self.table_path, "a") as f:
                f.write(f"{check}\t{value}\t{status}\n")

    def add_speed(self, config, img_s, note=""):
        self.speed.append((config, img_s, note))
        if self.table_path:
            with open(self.table_path + ".speed", "a") as f:
                f.write(f"{config}\t{img_s:.1f}\t{note}\n")


def stage(rep, name, fn, *a, **k):
    """Runs one stage; an exception becomes a FAIL row and the check goes on."""
    t0 = time.time()
    try:
        r = fn(*a, **k)
        print(f"-- stage {name} done in {time.time() - t0:.1f}s", flush=True)
        return r
    except Exception as ex:  # the report must survive any stage
        traceback.print_exc()
        rep.add(f"{name} (stage)", f"{type(ex).__name__}: {ex}"[:300], "FAIL")
        return None


# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------

def photo_like(w, h, rng):
    """uint8 (h, w, 3): smooth gradients, a few soft blobs, fine stripes and mild noise."""
    yy, xx = np.meshgrid(np.linspace(0, 1, h, dtype=np.float32), np.linspace(0, 1, w, dtype=np.float32),
                         indexing="ij")
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        a, b, p = rng.uniform(-1, 1, 3)
        img[..., c] = 0.5 + 0.3 * (a * xx + b * yy) + 0.1 * np.sin(2 * np.pi * (rng.uniform(1, 4) * xx + p))
    for _ in range(4):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.4)
        col = rng.uniform(-0.4, 0.4, 3).astype(np.float32)
        m = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        img += m[..., None] * col
    img += 0.04 * np.sin(2 * np.pi * 40 * xx)[..., None]
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)
    return np.ascontiguousarray(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8))


def varied_sizes(n, rng):
    fixed = [(1, 1), (1, 500), (500, 1), (3, 1000), (1000, 3), (1024, 768), (768, 1024), (224, 224),
             (225, 224), (224, 229), (300, 200), (640, 480), (480, 640), (333, 500), (2048, 1536),
             (17, 250), (64, 64)]
    sizes = list(fixed)
    while len(sizes) < n:
        sizes.append((int(rng.integers(8, 1400)), int(rng.integers(8, 1400))))
    return sizes[:n]


def pil_u8(arr, size):
    """Pillow's uint8 crop as clip_ref.preprocess makes it (before /255)."""
    from PIL import Image
    img = Image.fromarray(arr, "RGB")
    w, h = img.size
    nw, nh = clip_ref.resize_geometry(w, h, size)
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BICUBIC)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)


def pil_pixels(arrs, size):
    from PIL import Image
    return np.stack([clip_ref.preprocess(Image.fromarray(a, "RGB"), size) for a in arrs])


def cos_err(a, b):
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-300)
    return float(np.nan_to_num(cos, nan=-2.0).min()), float(np.nan_to_num(np.abs(a - b), nan=np.inf).max())


def per_image_cos(a, b):
    a = a.astype(np.float64).reshape(a.shape[0], -1)
    b = b.astype(np.float64).reshape(b.shape[0], -1)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-300)
    return np.nan_to_num(cos, nan=-2.0)


def worst_images(a, b, k=5):
    """'#i cos' for the k images with the lowest cosine (for a failure's row)."""
    cos = per_image_cos(a, b)
    idx = np.argsort(cos)[:k]
    return ", ".join(f"#{i} {cos[i]:.5f}" for i in idx)


ARTIFACTS = None


def save_artifact(name, **arrays):
    """Small arrays of a failed comparison into --artifacts (returns the path or '')."""
    if not ARTIFACTS:
        return ""
    try:
        os.makedirs(ARTIFACTS, exist_ok=True)
        path = os.path.join(ARTIFACTS, name + ".npz")
        np.savez_compressed(path, **arrays)
        return path
    except Exception as ex:  # an artifact must never break the check
        print(f"could not save {name}: {ex}", flush=True)
        return ""


def debug_fn(name, argtypes):
    """A clip_cuda_debug_* entry point of the library, or None when it lacks it."""
    fn = getattr(ce.lib(), name, None)
    if fn is not None:
        fn.argtypes = argtypes
        fn.restype = ctypes.c_int
    return fn


def last_error(e):
    return ce.lib().clip_engine_last_error(e.h).decode(errors="replace")


def graph_status(e, enable=-1):
    """clip_cuda_debug_graphs: enable 1/0 switches, -1 only reads; returns the status line."""
    fn = debug_fn("clip_cuda_debug_graphs", [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t])
    if fn is None:
        return "library has no clip_cuda_debug_graphs"
    buf = ctypes.create_string_buffer(512)
    s = fn(e.h, enable, buf, len(buf))
    if s != 0:
        raise ce.ClipError(s, last_error(e))
    return buf.value.decode(errors="replace")


def stage_names(cfg):
    return (["tokens (patch embed + cls + pos)", "ln_pre"] + [f"block {i}" for i in range(cfg.layers)]
            + ["ln_post (class tokens)", "embedding"])


def engine_stage(e, cfg, px, stage):
    """The CUDA forward stopped at `stage` (see engine/include/clipengine_cuda.h) -> float32 array."""
    fn = debug_fn("clip_cuda_debug_forward_stage", [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int,
                                                    ctypes.c_int, ctypes.POINTER(ctypes.c_float)])
    if fn is None:
        raise RuntimeError("library has no clip_cuda_debug_forward_stage")
    n = px.shape[0]
    if stage <= cfg.layers + 1:
        shape = (n, cfg.tokens, cfg.width)
    elif stage == cfg.layers + 2:
        shape = (n, cfg.width)
    else:
        shape = (n, cfg.embed_dim)
    px = np.ascontiguousarray(px, np.float32)
    out = np.empty(shape, np.float32)
    fp = ctypes.POINTER(ctypes.c_float)
    s = fn(e.h, px.ctypes.data_as(fp), n, stage, out.ctypes.data_as(fp))
    if s != 0:
        raise ce.ClipError(s, last_error(e))
    return out


def ref_stages(c, px):
    """The fp32 reference's intermediates at the engine's stages, computed with the reference
    model's own parameters and pieces (clip_ref.VisionRef.forward, step by step)."""
    import torch.nn.functional as F
    m, cfg = c.ref, c.cfg
    outs = []
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(px)).to(c.dev, torch.float32)
        x = F.conv2d(x, m.conv1, stride=cfg.patch_size)
        n = x.shape[0]
        x = x.reshape(n, cfg.width, -1).transpose(1, 2)
        cls = m.class_embedding.reshape(1, 1, -1).expand(n, 1, cfg.width)
        x = torch.cat([cls, x], dim=1) + m.positional_embedding
        outs.append(x)
        x = m._ln(x, m.ln_pre_w, m.ln_pre_b)
        outs.append(x)
        for b in m.blocks:
            x = x + m.attention(m._ln(x, b.ln1_w, b.ln1_b), b)
            x = x + m.mlp(m._ln(x, b.ln2_w, b.ln2_b), b)
            outs.append(x)
        cl = m._ln(x[:, 0, :], m.ln_post_w, m.ln_post_b)
        outs.append(cl)
        outs.append(cl @ m.proj)
    return [t.float().cpu().numpy() for t in outs]


def stage_compare(a, r):
    """min cosine over rows (image, token), the worst row, max abs error, max |ref|."""
    a2 = a.reshape(-1, a.shape[-1])
    r2 = r.reshape(-1, r.shape[-1])
    cos = per_image_cos(a2, r2)
    worst = int(np.argmin(cos))
    err = float(np.nan_to_num(np.abs(a2.astype(np.float64) - r2), nan=np.inf).max())
    return float(cos[worst]), worst, err, float(np.abs(r2).max())


# ---------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------

class Ctx:
    pass


def no_tf32():
    """A true fp32 reference: matmuls are fp32 by default, but cuDNN convolutions (the patch
    embedding) use TF32 unless told not to. Newer torch has a new knob; try both."""
    torch.set_float32_matmul_precision("highest")
    try:
        torch.backends.cudnn.conv.fp32_precision = "ieee"
        return
    except Exception:
        pass
    try:
        torch.backends.cudnn.allow_tf32 = False
    except Exception:
        pass


def sdpa_attention(cfg):
    """VisionRef's attention through F.scaled_dot_product_attention (flash / memory-efficient
    kernels): the stronger PyTorch baseline."""
    import torch.nn.functional as F

    def att(x, b):
        n, T, W = x.shape
        H = cfg.heads
        qkv = F.linear(x, b.qkv_w, b.qkv_b)
        q, k, v = (t.reshape(n, T, H, W // H).transpose(1, 2) for t in qkv.split(W, dim=-1))
        o = F.scaled_dot_product_attention(q, k, v)
        return F.linear(o.transpose(1, 2).reshape(n, T, W), b.out_w, b.out_b)
    return att


def setup(rep, args):
    c = Ctx()
    c.dry = args.dry_run
    c.cfg_name = "tiny" if c.dry else "b32"
    c.cfg = clip_ref.CONFIGS[c.cfg_name]
    c.S = c.cfg.image_size
    c.dev = "cuda" if torch.cuda.is_available() and not c.dry else "cpu"
    no_tf32()
    c.wdir = os.path.join(args.out, f"weights-{c.cfg_name}")
    t0 = time.time()
    c.tensors = clip_ref.random_weights(c.cfg, seed=1234)
    clip_ref.write_model(c.wdir, c.cfg, c.tensors, naming="openai", dtype="f32", config_file=True)
    c.ref = clip_ref.reference_model(c.cfg, c.tensors, torch.float32, c.dev)
    rep.add("setup", f"{c.cfg_name} weights + fp32 reference on {c.dev} ({time.time() - t0:.1f}s)", "INFO")
    rng = np.random.default_rng(7)
    n = 16 if c.dry else 64
    c.photo = [photo_like(int(rng.integers(200, 700)), int(rng.integers(200, 700)), rng) for _ in range(n)]
    c.px = pil_pixels(c.photo, c.S)                      # (n, 3, S, S) via Pillow
    c.ref_px = ref_embed(c, c.px)
    c.varied = [photo_like(w, h, rng) for (w, h) in varied_sizes(16 if c.dry else 64, rng)]
    return c


def ref_embed(c, px, chunk=64):
    outs = []
    with torch.no_grad():
        for i in range(0, len(px), chunk):
            x = torch.from_numpy(np.ascontiguousarray(px[i:i + chunk])).to(c.dev, torch.float32)
            outs.append(c.ref(x).float().cpu().numpy())
    return np.concatenate(outs, 0)


def check_cpu_engine(rep, c):
    n = 4 if not c.dry else 8
    with ce.Engine(c.wdir, backend="cpu", max_batch=n) as e:
        out = e.embed_pixels(c.px[:n])
    cmin, err = cos_err(out, c.ref_px[:n])
    rep.add("cpu engine vs reference (fp32)", f"min cos {cmin:.6f}, max abs {err:.2e}, n={n}",
            "PASS" if cmin >= 0.9999 else "FAIL")


def check_cpu_u8(rep, c):
    bad_img, bad_bytes = 0, 0
    for a in c.varied:
        d = int((ce.preprocess_u8(a, c.S) != pil_u8(a, c.S)).sum())
        bad_bytes += d
        bad_img += d > 0
    rep.add("cpu uint8 preprocessing vs Pillow", f"{bad_img}/{len(c.varied)} images differ ({bad_bytes} bytes)",
            "PASS" if bad_img == 0 else "FAIL")


def cuda_engine(rep, c, check, **kw):
    """A CUDA engine, or None with a SKIP row (no GPU / no CUDA build) or FAIL row."""
    try:
        return ce.Engine(c.wdir, backend="cuda", **kw)
    except ce.ClipError as ex:
        if ex.status == -6:  # CLIP_ERR_UNSUPPORTED: built without CUDA, or no device
            rep.add(check, f"no GPU: {ex.message}", "SKIP")
        else:
            rep.add(check, f"engine create failed: {ex}", "FAIL")
        return None


def check_pixels(rep, c):
    for prec, want in (("fp16", 0.999), ("bf16", 0.999), ("fp32", 0.9999)):
        name = f"cuda embed_pixels {prec} vs reference"
        e = cuda_engine(rep, c, name, precision=prec, max_batch=len(c.px))
        if e is None:
            continue
        with e:
            out = e.embed_pixels(c.px)
            out2 = e.embed_pixels(c.px[:5])  # a smaller batch: lazily planned GEMMs
            c.backend_name = e.backend_name
        cmin, err = cos_err(out, c.ref_px)
        cmin2, _ = cos_err(out2, c.ref_px[:5])
        ok = min(cmin, cmin2) >= want
        detail = "" if ok else f"; worst images {worst_images(out, c.ref_px)}; the stages rows say where it starts"
        if not ok:
            save_artifact(f"pixels_{prec}", engine=out, reference=c.ref_px, engine_n5=out2)
        rep.add(name, f"min cos {cmin:.6f} (n=5: {cmin2:.6f}), max abs {err:.2e}, |ref| max "
                f"{np.abs(c.ref_px).max():.2f}, n={len(c.px)}{detail}", "PASS" if ok else "FAIL")


def check_stages(rep, c):
    """Where a difference from the reference starts: the CUDA forward stopped after each stage
    against the fp32 reference's same intermediate (per-row cosine over all images and tokens),
    for each precision. Prints the whole table; one row per precision."""
    n = min(4, len(c.px))
    px = c.px[:n]
    ref = ref_stages(c, px)
    names = stage_names(c.cfg)
    # The step-by-step reference must be the reference (else the rows below mean nothing).
    direct = ref_embed(c, px)
    d = float(np.abs(ref[-1] - direct).max())
    rep.add("reference stages == reference forward", f"max abs {d:.2e}", "PASS" if d <= 1e-5 * (1 + np.abs(direct).max()) else "FAIL")
    for prec, want in (("fp16", 0.999), ("bf16", 0.999), ("fp32", 0.9999)):
        name = f"stages {prec} (where cuda departs from the reference)"
        e = cuda_engine(rep, c, name, precision=prec, max_batch=n)
        if e is None:
            continue
        with e:
            got = [engine_stage(e, c.cfg, px, k) for k in range(len(names))]
            final = e.embed_pixels(px)
        print(f"\nstages {prec}, n={n} (cosine per (image, token) row vs fp32 reference):")
        print(f"  {'stage':34s} {'min cos':>10s} {'worst row':>10s} {'max abs':>10s} {'max |ref|':>10s}")
        first_bad, summary = None, []
        for k, (g, r) in enumerate(zip(got, ref)):
            cmin, worst, err, top = stage_compare(g, r)
            T = c.cfg.tokens if g.ndim == 3 else 1
            print(f"  {names[k]:34s} {cmin:10.6f} {f'{worst // T}/{worst % T}':>10s} {err:10.2e} {top:10.2e}")
            summary.append(f"{names[k].split(' (')[0]} {cmin:.5f}")
            if first_bad is None and cmin < want:
                first_bad = k
        same = np.array_equal(got[-1], final)
        ok = first_bad is None and same
        note = "all stages >= %g" % want if first_bad is None else f"first stage under {want}: {names[first_bad]}"
        if not same:
            note += "; the last stage differs from embed_pixels (staged vs whole forward)"
        if not ok:
            k0 = first_bad if first_bad is not None else len(names) - 1
            path = save_artifact(f"stages_{prec}", pixels=px[:1],
                                 **{f"engine_{k}": got[k][:1] for k in range(max(0, k0 - 1), k0 + 1)},
                                 **{f"ref_{k}": ref[k][:1] for k in range(max(0, k0 - 1), k0 + 1)})
            if path:
                note += f"; arrays in {os.path.basename(path)}"
        rep.add(name, note + "; " + ", ".join(summary[:2] + summary[-3:]), "PASS" if ok else "FAIL")


def check_text(rep, c):
    """The text tower on its own weights file: a B/32-shaped text tower (the dry run: the tiny
    one) beside a one-block vision tower of the same embed_dim, OpenAI naming, QuickGELU."""
    tcfg = clip_ref.TEXT_CONFIGS["tiny" if c.dry else "b32"]
    vcfg = clip_ref.Config(32, 8, 64, 1, 1, 128, tcfg.embed_dim, True)
    wdir = c.wdir + "-text"
    tt = clip_ref.random_text_weights(tcfg, 4321)
    clip_ref.write_model(wdir, vcfg, clip_ref.random_weights(vcfg, 4321), "openai", "f32",
                         text=(tcfg, tt))
    C = tcfg.context_length
    lengths = [C, 2, 3, max(4, C // 4), max(5, C // 2), C - 1, 10 if C > 10 else C, C]
    n = 8 if c.dry else 64
    toks = clip_ref.random_tokens(tcfg, (lengths * (n // len(lengths) + 1))[:n], 99, zero_inside=(2, 10))
    ref_model = clip_ref.text_reference_model(tcfg, tt, torch.float32, c.dev)
    with torch.no_grad():
        ref = ref_model(torch.from_numpy(toks.astype(np.int64)).to(c.dev)).float().cpu().numpy()
    with ce.Engine(wdir, backend="cpu", max_batch=4) as e:
        cmin, err = cos_err(e.embed_tokens(toks[:4]), ref[:4])
    rep.add("text cpu engine vs reference (fp32)", f"min cos {cmin:.7f}, max abs {err:.2e}, n=4",
            "PASS" if cmin >= 0.99999 else "FAIL")
    for prec, want in (("fp16", 0.9999), ("bf16", 0.999), ("fp32", 0.99999)):
        name = f"cuda text embed_tokens {prec} vs reference"
        try:
            e = ce.Engine(wdir, backend="cuda", precision=prec, max_batch=n)
        except ce.ClipError as ex:
            rep.add(name, f"no GPU: {ex.message}" if ex.status == -6 else f"engine create failed: {ex}",
                    "SKIP" if ex.status == -6 else "FAIL")
            continue
        with e:
            out = e.embed_tokens(toks)
            out5 = e.embed_tokens(toks[:5])
            # only short sequences: the forward runs on <= C/2 positions (tensor-core attention
            # in fp16/bf16 when that is <= 64)
            short = [i for i, L in enumerate((lengths * (n // len(lengths) + 1))[:n]) if L <= max(5, C // 2)]
            out_short = e.embed_tokens(toks[short])
            same = np.array_equal(e.embed_tokens(toks), out)
            ms = None
            if prec == "fp16":
                for _ in range(3):
                    e.embed_tokens(toks)
                t0 = time.time()
                iters = 20
                for _ in range(iters):
                    e.embed_tokens(toks)
                ms = (time.time() - t0) / iters * 1e3
        cmin, err = cos_err(out, ref)
        cmin5, _ = cos_err(out5, ref[:5])
        cmin_s, _ = cos_err(out_short, ref[short])
        ok = min(cmin, cmin5, cmin_s) >= want and same
        if not ok:
            save_artifact(f"text_{prec}", engine=out, reference=ref, tokens=toks)
        rep.add(name, f"min cos {cmin:.7f} (n=5: {cmin5:.7f}, {len(short)} short: {cmin_s:.7f}), "
                f"max abs {err:.2e}, |ref| max "
                f"{np.abs(ref).max():.2f}, n={n}{'' if same else ', a repeated call differs'}"
                f"{'' if ok else '; worst ' + worst_images(out, ref)}", "PASS" if ok else "FAIL")
        if ms is not None:
            rep.add_speed(f"cuda text fp16 embed_tokens b{n} (end to end)", n / (ms / 1e3),
                          f"{ms:.2f} ms per call")


def check_images(rep, c):
    name = "cuda uint8 preprocessing vs cpu"
    e = cuda_engine(rep, c, name, precision="fp16", max_batch=len(c.varied))
    if e is None:
        rep.add("cuda embed_images vs reference", "no GPU", "SKIP")
        return
    with e:
        L = ce.lib()
        fn = getattr(L, "clip_cuda_debug_preprocess_u8", None)
        if fn is None:
            rep.add(name, "library has no clip_cuda_debug_preprocess_u8", "FAIL")
        else:
            fn.argtypes = [ctypes.c_void_p, ctypes.POINTER(ce.Image), ctypes.c_int,
                           ctypes.POINTER(ctypes.c_uint8)]
            fn.restype = ctypes.c_int
            ims = (ce.Image * len(c.varied))()
            keep = []
            for i, a in enumerate(c.varied):
                ims[i], k = ce._image(a)
                keep.append(k)
            dev = np.zeros((len(c.varied), c.S, c.S, 3), np.uint8)
            s = fn(e.h, ims, len(c.varied), dev.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
            if s != 0:
                rep.add(name, f"status {s}: {L.clip_engine_last_error(e.h).decode()}", "FAIL")
            else:
                cpu = [ce.preprocess_u8(a, c.S) for a in c.varied]
                bad = [(i, int((dev[i] != cpu[i]).sum())) for i in range(len(c.varied))]
                bad = [(i, d) for i, d in bad if d]
                parts = []
                for i, d in bad[:5]:
                    y, x, ch = (int(v[0]) for v in np.nonzero(dev[i] != cpu[i]))
                    h, w = c.varied[i].shape[:2]
                    rw, rh = clip_ref.resize_geometry(w, h, c.S)
                    parts.append(f"#{i} {w}x{h} (resized {rw}x{rh}): {d} bytes, first at y{y} x{x} c{ch} "
                                 f"cuda {dev[i][y, x, ch]} cpu {cpu[i][y, x, ch]}")
                if bad:
                    save_artifact("u8_mismatch", **{f"cuda_{i}": dev[i] for i, _ in bad[:3]},
                                  **{f"cpu_{i}": cpu[i] for i, _ in bad[:3]})
                rep.add(name, f"{len(bad)}/{len(c.varied)} images differ; " + "; ".join(parts),
                        "PASS" if not bad else "FAIL")
        out = e.embed_images(c.varied)
    ref = ref_embed(c, pil_pixels(c.varied, c.S))
    cmin, err = cos_err(out, ref)
    detail = ""
    if cmin < 0.999:
        cos = per_image_cos(out, ref)
        detail = "; worst " + ", ".join(f"#{i} {c.varied[i].shape[1]}x{c.varied[i].shape[0]} cos {cos[i]:.5f}"
                                        for i in np.argsort(cos)[:3])
        save_artifact("images_fp16", engine=out, reference=ref)
    rep.add("cuda embed_images fp16 vs reference", f"min cos {cmin:.6f}, max abs {err:.2e}, n={len(c.varied)}{detail}",
            "PASS" if cmin >= 0.999 else "FAIL")


def time_torch(c, model, x, iters):
    """Median ms per forward with CUDA events (after warm-up)."""
    with torch.no_grad():
        for _ in range(3):
            model(x)
        torch.cuda.synchronize()
        ts = []
        for _ in range(iters):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            model(x)
            b.record()
            b.synchronize()
            ts.append(a.elapsed_time(b))
    return statistics.median(ts)


def engine_forward_ms(e, n, iters):
    L = ce.lib()
    fn = L.clip_cuda_debug_time_forward
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    fn.restype = ctypes.c_int
    ms = ctypes.c_float(0)
    s = fn(e.h, n, 3, iters, ctypes.byref(ms))
    if s != 0:
        raise ce.ClipError(s, L.clip_engine_last_error(e.h).decode())
    return ms.value


def check_speed(rep, c, args):
    if c.dev != "cuda":
        rep.add("speed", "no GPU", "SKIP")
        return
    gflop = GFLOP_PER_IMAGE.get(c.cfg_name)
    batches = (256, 1024)
    big = max(batches)
    reps = int(math.ceil(big / len(c.px)))
    px = np.ascontiguousarray(np.concatenate([c.px] * reps, 0)[:big])   # real images, tiled
    torch_ms = {}
    ref16 = clip_ref.reference_model(c.cfg, c.tensors, torch.float16, "cuda")
    x16 = torch.from_numpy(px).to("cuda", torch.float16)
    att = sdpa_attention(c.cfg)
    with torch.no_grad():
        o16 = ref16(x16[:len(c.px)], attention=att).float().cpu().numpy()
    rep.add("pytorch fp16 (sdpa) vs fp32 reference", "min cos %.6f (for scale: the baseline's own error)"
            % cos_err(o16, c.ref_px)[0], "INFO")
    for n in batches:
        ms_plain = time_torch(c, ref16, x16[:n], args.iters)
        ms_sdpa = time_torch(c, lambda x: ref16(x, attention=att), x16[:n], args.iters)
        torch_ms[n] = min(ms_plain, ms_sdpa)  # ratios are against the faster baseline
        rep.add_speed(f"pytorch fp16 eager b{n} (matmul attention)", n / (ms_plain / 1e3), f"{ms_plain:.2f} ms")
        rep.add_speed(f"pytorch fp16 eager b{n} (sdpa attention)", n / (ms_sdpa / 1e3), f"{ms_sdpa:.2f} ms")
    del x16
    torch.cuda.empty_cache()

    for prec in ("fp16", "bf16"):
        name = f"speed {prec}"
        e = cuda_engine(rep, c, name, precision=prec, max_batch=big)
        if e is None:
            continue
        with e:
            out = e.embed_pixels(px)                           # fills the device input
            cmin, _ = cos_err(out[:len(c.px)], c.ref_px)
            for n in batches:
                ms = engine_forward_ms(e, n, args.iters)
                ips = n / (ms / 1e3)
                note = f"{ms:.2f} ms, {ips / (n / (torch_ms[n] / 1e3)):.2f}x the faster pytorch fp16 eager"
                if gflop:
                    note += f", {ips * gflop / 1e3:.1f} TFLOP/s"
                rep.add_speed(f"engine {prec} forward b{n}", ips, note)
            # The timings above replay CUDA graphs unless capturing failed: say which.
            gs = graph_status(e)
            rep.add(f"cuda graphs {prec}", gs, "PASS" if gs.startswith("graphs on") and "replays 0;" not in gs
                    else "FAIL")
            if prec == "fp16":  # the same forwards with direct launches: what the graphs gain
                graph_status(e, 0)
                for n in batches:
                    ms = engine_forward_ms(e, n, max(5, args.iters // 2))
                    rep.add_speed(f"engine {prec} forward b{n} (graphs off)", n / (ms / 1e3), f"{ms:.2f} ms")
                graph_status(e, 1)
            # End to end: float32 pixels from pageable host memory, embeddings back.
            ts = []
            for _ in range(5):
                t0 = time.perf_counter()
                e.embed_pixels(px)
                ts.append(time.perf_counter() - t0)
            rep.add_speed(f"engine {prec} embed_pixels b{big} (incl. H2D fp32)", big / statistics.median(ts),
                          f"{statistics.median(ts) * 1e3:.1f} ms wall")
            if prec == "fp16":
                imgs = [c.photo[i % len(c.photo)] for i in range(256)]
                ts = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    e.embed_images(imgs)
                    ts.append(time.perf_counter() - t0)
                mp = sum(a.shape[0] * a.shape[1] for a in imgs) / 256 / 1e6
                rep.add_speed("engine fp16 embed_images b256 (RGB8 in, ~%.2f MP each)" % mp,
                              256 / statistics.median(ts), f"{statistics.median(ts) * 1e3:.1f} ms wall")
        rep.add(f"speed {prec} engine output sane", f"min cos {cmin:.6f} on the timed engine",
                "PASS" if cmin >= 0.999 else "FAIL")



def check_profile(rep, c):
    """Per-op-class breakdown at batch 1024, fp16, from an engine with events around ops
    (CLIP_CUDA_PROFILE=1: direct launches, a little slower than the timed forward)."""
    if c.dev != "cuda":
        rep.add("profile", "no GPU", "SKIP")
        return
    big = 1024
    reps = int(math.ceil(big / len(c.px)))
    px = np.ascontiguousarray(np.concatenate([c.px] * reps, 0)[:big])
    os.environ["CLIP_CUDA_PROFILE"] = "1"
    try:
        e = cuda_engine(rep, c, "profile", precision="fp16", max_batch=big)
    finally:
        del os.environ["CLIP_CUDA_PROFILE"]
    if e is not None:
        with e:
            e.embed_pixels(px)
            L = ce.lib()
            fn = L.clip_cuda_debug_profile
            fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
            fn.restype = ctypes.c_int
            buf = ctypes.create_string_buffer(4096)
            fn(e.h, buf, len(buf))  # reset
            iters = 5
            engine_forward_ms(e, big, iters)
            fn(e.h, buf, len(buf))
            lines = [ln.split() for ln in buf.value.decode().strip().splitlines()]
            if not lines:
                rep.add("profile fp16 b%d" % big, "no profile lines (CLIP_CUDA_PROFILE not honoured?)", "FAIL")
                lines = []
            total = sum(float(x[1]) for x in lines) or 1.0
            fwd = iters + 3  # time_forward runs 3 warm-ups + iters
            print(f"\nper-op breakdown, fp16 batch {big}, direct launches (ms per forward, share):")
            for name, ms, cnt in lines:
                print(f"  {name:16s} {float(ms) / fwd:8.3f} ms  {100 * float(ms) / total:5.1f}%  ({cnt} spans)")
            rep.add("profile fp16 b%d (ms/forward, share)" % big,
                    "; ".join(f"{x[0]} {float(x[1]) / fwd:.2f} {100 * float(x[1]) / total:.0f}%" for x in lines
                              if float(x[1]) > 0), "INFO")


def check_compile(rep, c, args):
    """PyTorch fp16 torch.compile on the same weights: run by gpu-check.sh last, on its own,
    only when time is left (compiling takes about a minute; each batch size compiles anew)."""
    if c.dev != "cuda":
        rep.add("torch.compile", "no GPU", "SKIP")
        return
    batches = (1024, 256)
    reps = int(math.ceil(max(batches) / len(c.px)))
    px = np.ascontiguousarray(np.concatenate([c.px] * reps, 0)[:max(batches)])
    ref16 = clip_ref.reference_model(c.cfg, c.tensors, torch.float16, "cuda")
    x = torch.from_numpy(px).to("cuda", torch.float16)
    t_start = time.time()
    try:
        comp = torch.compile(ref16)
        for n in batches:
            t0 = time.time()
            with torch.no_grad():
                comp(x[:n])
            took = time.time() - t0
            if took > args.compile_cap:
                rep.add(f"torch.compile b{n}", f"compile took {took:.0f}s > cap {args.compile_cap:.0f}s, not timed",
                        "SKIP")
                break
            ms = time_torch(c, comp, x[:n], args.iters)
            rep.add_speed(f"pytorch fp16 torch.compile b{n}", n / (ms / 1e3), f"{ms:.2f} ms (compile {took:.0f}s)")
            if time.time() - t_start > args.compile_cap:
                break
    except Exception as ex:
        rep.add("torch.compile", f"{type(ex).__name__}: {ex}"[:200], "SKIP")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", default=None, help="libclipengine.so (default: $CLIPENGINE_LIB)")
    ap.add_argument("--out", default="build-gpu/gpu-check", help="work dir (weights, table)")
    ap.add_argument("--table", default=None, help="append result rows here (tsv)")
    ap.add_argument("--dry-run", action="store_true", help="tiny config on the CPU")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (last)")
    ap.add_argument("--compile-only", action="store_true", help="setup, then only the torch.compile timing")
    ap.add_argument("--compile-cap", type=float, default=90.0)
    ap.add_argument("--skip", default="", help="comma list of stages to skip: cpu,u8,pixels,stages,images,text,speed,profile")
    ap.add_argument("--artifacts", default=None, help="directory for the arrays of failed comparisons")
    args = ap.parse_args()
    global ARTIFACTS
    ARTIFACTS = args.artifacts
    if args.lib:
        os.environ["CLIPENGINE_LIB"] = os.path.abspath(args.lib)
    os.makedirs(args.out, exist_ok=True)
    rep = Report(args.table)
    skip = set(filter(None, args.skip.split(",")))
    print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}, "
          f"library {ce.default_lib_path()}", flush=True)
    c = stage(rep, "setup", setup, rep, args)
    if c is None:
        return 1
    checks = (("cpu", check_cpu_engine, ()), ("u8", check_cpu_u8, ()), ("pixels", check_pixels, ()),
              ("stages", check_stages, ()), ("images", check_images, ()), ("text", check_text, ()),
              ("speed", check_speed, (args,)),
              ("profile", check_profile, ()))
    if args.compile_only:
        checks = ()
    if args.compile or args.compile_only:
        checks += (("compile", check_compile, (args,)),)
    for name, fn, a in checks:
        if name not in skip:
            stage(rep, name, fn, rep, c, *a)
    print("\n%-58s %s" % ("check", "result"))
    for check, value, status in rep.rows:
        print(f"{status:5s} {check:52s} {value}")
    if rep.speed:
        print("\n%-58s %12s  %s" % ("speed", "images/s", "note"))
        for cfg, ips, note in rep.speed:
            print(f"{cfg:58s} {ips:12.1f}  {note}")
    return 1 if any(s == "FAIL" for _, _, s in rep.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
