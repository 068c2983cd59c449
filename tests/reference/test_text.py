#!/usr/bin/env python3
"""test_text: the CPU backend's text tower (clip_engine_embed_tokens) against the independent
PyTorch reference (clip_ref.TextRef, openai/CLIP's encode_text in plain torch ops).

1. The reference itself: its plain-matmul attention under the causal mask equals
   torch.nn.MultiheadAttention with CLIP's attn_mask, and the inputs below are sensitive to
   what the engine could get wrong: dropping the causal mask, or pooling the last position
   instead of the end token (argmax), moves the reference's output far past the bounds.
2. Models written on the fly: tiny text towers in OpenAI naming (open_clip_config.json, or no
   config: heads = width/64, QuickGELU) and Hugging Face naming (config.json text_config), with
   QuickGELU and exact GELU, f32 / f16 / bf16 files, heads 1..4, LayerNorm eps 1e-5 and 1e-6;
   and a B/32-shaped text tower (context 77, vocabulary 49408, width 512, 12 layers, 8 heads,
   embed 512; beside a tiny vision tower of the same embed_dim) in OpenAI naming with QuickGELU
   and in Hugging Face naming with exact GELU. Token sequences as clip.tokenize lays them out,
   of varied lengths: the full 77 (end token last), start + end only, a sequence holding id 0
   as a real token; and batches of short sequences only (the engine then runs on the positions
   up to the batch's last end token).
3. The committed goldens (testdata/golden_text, make_golden.py): still what clip_ref computes,
   and what the engine computes.
4. The API around it: text info and probe equal the config, a sequence alone equals it inside
   a batch, 1 and 2 threads agree, ids outside the vocabulary and n > max_batch are refused
   naming the problem, a vision-only file loads and its text calls are CLIP_ERR_UNSUPPORTED
   saying it has no text tower.

Pass: cosine >= 0.99999 and max |engine - ref| <= 2e-6 * |ref| per sequence (the reference in
fp64, from the weights as stored).
Run: CLIPENGINE_LIB=build/lib/libclipengine.so /usr/bin/python3 tests/reference/test_text.py
"""
import dataclasses
import json
import os
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import clip_ref as R  # noqa: E402
import clipengine_ctypes as CE  # noqa: E402

# The checks, bounds and engine options of the vision tower's forward test, shared.
from test_forward import (COS_MIN, REL_MAXABS, ROOT, THREADS, check, compare, engine,  # noqa: E402
                          failures, rows)


def cos_rel(got, ref):
    """Per-row cosine and max |got - ref| / |ref|."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    norm = np.linalg.norm(ref, axis=1)
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * norm)
    return cos, np.abs(got - ref).max(axis=1) / norm


def lengths_for(tcfg):
    """Varied lengths (start and end tokens included): the whole context (end token last),
    start + end only, two in between; sequence 2 holds id 0 as a real token."""
    C = tcfg.context_length
    return [C, 2, max(4, C // 3), max(5, (2 * C) // 3)]


def text_case(tmp, label, vcfg, tcfg, naming, dtype, seed, config_file=True, vision_seed=None):
    """Writes the model, returns (dir, stored OpenAI-named tensors, tokens, fp64 reference)."""
    d = os.path.join(tmp, label.replace(" ", "_").replace("/", "_"))
    vis = R.random_weights(vcfg, seed if vision_seed is None else vision_seed)
    stored = R.write_model(d, vcfg, vis, naming, dtype, config_file,
                           text=(tcfg, R.random_text_weights(tcfg, seed)))
    toks = R.random_tokens(tcfg, lengths_for(tcfg), seed + 1, zero_inside=(2,))
    check(toks[0, -1] == tcfg.vocab_size - 1 and toks[1, 1] == tcfg.vocab_size - 1,
          f"{label}: tokens not laid out as intended")
    check(bool((toks[2, 1:lengths_for(tcfg)[2] - 1] == 0).any()), f"{label}: no real id 0")
    ref = R.embed_text(tcfg, stored, toks, dtype=torch.float64)
    return d, stored, toks, ref


def info_of(tcfg):
    return {"context_length": tcfg.context_length, "vocab_size": tcfg.vocab_size,
            "width": tcfg.width, "layers": tcfg.layers, "heads": tcfg.heads,
            "embed_dim": tcfg.embed_dim, "quick_gelu": int(tcfg.quick_gelu)}


# ---------------------------------------------------------------------------------------

def test_reference(tmp):
    """TextRef's masked attention == nn.MultiheadAttention with CLIP's mask; the inputs are
    sensitive to the mask and to the pooled position."""
    tcfg = R.TEXT_CONFIGS["tiny"]
    t = R.random_text_weights(tcfg, 5)
    m = R.text_reference_model(tcfg, t, dtype=torch.float64)

    def mha_attention(x, b, mask):
        W = tcfg.width
        mha = torch.nn.MultiheadAttention(W, tcfg.heads, batch_first=True).to(torch.float64)
        with torch.no_grad():
            mha.in_proj_weight.copy_(b.qkv_w)
            mha.in_proj_bias.copy_(b.qkv_b)
            mha.out_proj.weight.copy_(b.out_w)
            mha.out_proj.bias.copy_(b.out_b)
        return mha(x, x, x, need_weights=False, attn_mask=mask)[0]

    toks = R.random_tokens(tcfg, lengths_for(tcfg), 6, zero_inside=(2,))
    a = m(toks)
    b = m(toks, attention=mha_attention)
    err = (a - b).abs().max().item()
    print(f"reference masked attention vs nn.MultiheadAttention: max-abs {err:.2e}")
    check(err < 1e-10, f"reference attention differs from nn.MultiheadAttention by {err:.2e}")
    # What a wrong engine would compute is far outside the bounds on these inputs.
    cos, _ = cos_rel(m(toks, mask=False).numpy(), a.numpy())
    check(cos[1:].max() < 0.999, f"the inputs do not notice a missing causal mask (cos {cos})")
    last = m.ln_final_w.new_tensor(0)  # pooled at the last position instead of argmax
    with torch.no_grad():
        x = m.token_embedding[torch.from_numpy(toks.astype(np.int64))] + m.positional_embedding
        mask = m.causal_mask(x.dtype, x.device)
        for blk in m.blocks:
            x = x + m.attention(m._ln(x, blk.ln1_w, blk.ln1_b), blk, mask)
            x = x + m.mlp(m._ln(x, blk.ln2_w, blk.ln2_b), blk)
        last = m._ln(x[:, -1], m.ln_final_w, m.ln_final_b) @ m.text_projection
    cos, _ = cos_rel(last.numpy(), a.numpy())
    check(cos[0] > 0.999999 and cos[1:].max() < 0.999,
          f"pooling the last position should equal argmax only for the full sequence (cos {cos})")
    # Ids after the end token (padding) do not change the embedding (the mask is causal).
    padded = toks.copy()
    padded[1, 2:] = 7
    check(np.allclose(m(padded).numpy()[1], a.numpy()[1], rtol=0, atol=1e-12),
          "reference: ids after the end token changed the embedding")


def test_safetensors_roundtrip(tmp):
    """Both namings and the config files carry the text tower back to the same config."""
    vcfg = R.TINY
    for naming, dtype in (("openai", "f32"), ("hf", "bf16")):
        tcfg = R.TEXT_CONFIGS["tiny"]
        d = os.path.join(tmp, f"rt_{naming}")
        stored = R.write_model(d, vcfg, R.random_weights(vcfg, 3), naming, dtype,
                               text=(tcfg, R.random_text_weights(tcfg, 3)))
        _, back = R.read_model(d)
        check(R.read_text_config(d, back) == tcfg, f"{naming}: text config read back differs")
        bad = [k for k in stored if not torch.equal(stored[k], back[k])]
        check(not bad and set(back) == set(stored), f"text round trip {naming}: {bad[:3]}")


def test_tiny(tmp):
    tiny = R.TEXT_CONFIGS["tiny"]
    cases = [  # label, vision config, text config, naming, dtype, config file
        ("tiny openai f32 quick", R.TINY, tiny, "openai", "f32", True),
        ("tiny openai f16 erf", R.with_gelu(R.TINY, False),
         dataclasses.replace(tiny, quick_gelu=False), "openai", "f16", True),
        ("tiny openai f32 noconfig (quick, heads W/64)", R.TINY,
         dataclasses.replace(tiny, heads=1), "openai", "f32", False),
        ("tiny hf f32 quick heads 4", R.TINY, dataclasses.replace(tiny, heads=4), "hf", "f32", True),
        ("tiny hf bf16 erf", R.with_gelu(R.TINY, False),
         dataclasses.replace(tiny, quick_gelu=False), "hf", "bf16", True),
        ("tiny_erf hf f32 erf eps 1e-6 heads 3", R.TINY_ERF, R.TEXT_CONFIGS["tiny_erf"], "hf",
         "f32", True),
    ]
    for i, (label, vcfg, tcfg, naming, dtype, cf) in enumerate(cases):
        d, stored, toks, ref = text_case(tmp, label, vcfg, tcfg, naming, dtype, 40 + i, cf)
        check(CE.probe_text(d) == info_of(tcfg), f"{label}: probe {CE.probe_text(d)} != {info_of(tcfg)}")
        with engine(d, max_batch=len(toks)) as e:
            check(e.text_info() == info_of(tcfg), f"{label}: text info {e.text_info()}")
            out = e.embed_tokens(toks)
            compare(label, out, ref)
            # A batch without a full-length sequence runs on fewer positions: still exact.
            compare(label + " short batch", e.embed_tokens(toks[1:3]), ref[1:3])
            if i == 0:
                batch_and_threads(d, e, toks, out, label)
                bad_ids(e, toks, tcfg, label)


def batch_and_threads(d, e, toks, out, label):
    alone = np.concatenate([e.embed_tokens(toks[i:i + 1]) for i in range(len(toks))])
    err = np.abs(alone - out).max()
    check(err <= 1e-5 * np.abs(out).max(), f"{label}: batch vs single differ by {err:.2e}")
    with engine(d, threads=1, max_batch=len(toks)) as e1:
        err = np.abs(e1.embed_tokens(toks) - out).max()
    check(err <= 1e-5 * np.abs(out).max(), f"{label}: 1 vs 2 threads differ by {err:.2e}")
    check(np.array_equal(e.embed_tokens(toks), out), f"{label}: a repeated call differs")
    check(e.embed_tokens(toks[:0]).shape == (0, out.shape[1]), f"{label}: n=0")


def expect_error(what, fn, status, *subs):
    try:
        fn()
        check(False, f"{what}: accepted")
    except CE.ClipError as ex:
        check(ex.status == status and all(s in ex.message for s in subs),
              f"{what}: got {ex}, want status {status} with {subs}")


def bad_ids(e, toks, tcfg, label):
    t = toks.copy()
    t[2, 5] = tcfg.vocab_size
    expect_error(f"{label}: id = vocab_size", lambda: e.embed_tokens(t), -1,
                 "sequence 2 position 5", str(tcfg.vocab_size))
    t = toks.copy()
    t[1, 0] = -1
    expect_error(f"{label}: id -1", lambda: e.embed_tokens(t), -1, "sequence 1 position 0")
    expect_error(f"{label}: n > max_batch", lambda: e.embed_tokens(np.concatenate([toks, toks[:1]])),
                 -1, "max_batch")


def test_goldens():
    """The committed text goldens (testdata/golden_text, made by make_golden.py): clip_ref
    still computes expected_text.npy from the stored weights, and the engine matches it."""
    root = os.path.join(ROOT, "testdata", "golden_text")
    names = sorted(os.listdir(root))
    check(len(names) >= 2, f"expected >= 2 text goldens in {root}, found {names}")
    for name in names:
        d = os.path.join(root, name)
        with open(os.path.join(d, "meta.json")) as f:
            meta = json.load(f)
        tcfg = R.TextConfig(**meta["text_config"])
        toks = np.load(os.path.join(d, "tokens.npy"))
        expected = np.load(os.path.join(d, "expected_text.npy"))
        _, stored = R.read_model(d)
        check(R.read_text_config(d, stored) == tcfg, f"text golden {name}: config read back differs")
        again = R.embed_text(tcfg, stored, toks, dtype=torch.float64)
        check(np.abs(again - expected).max() <= 1e-6 * np.abs(expected).max(),
              f"text golden {name}: clip_ref no longer reproduces expected_text.npy")
        with engine(d, max_batch=len(toks)) as e:
            check(e.text_info() == info_of(tcfg), f"text golden {name}: info {e.text_info()}")
            compare(f"text golden {name}", e.embed_tokens(toks), expected)


def test_vision_only(tmp):
    d = os.path.join(tmp, "vision_only")
    R.write_model(d, R.TINY, R.random_weights(R.TINY, 2), "openai", "f32")
    expect_error("probe_text of a vision-only file", lambda: CE.probe_text(d), -6, "no text tower")
    tcfg = R.TEXT_CONFIGS["tiny"]
    with engine(d) as e:
        check(e.info["embed_dim"] == 32, "vision-only file: vision tower not loaded")
        expect_error("text_info of a vision-only file", e.text_info, -6, "no text tower")
        expect_error("embed_tokens of a vision-only file",
                     lambda: e.embed_tokens(R.random_tokens(tcfg, [3], 1)), -6, "no text tower")


def test_b32(tmp):
    """The B/32 text tower beside a one-block vision tower of the same embed_dim (the vision
    side is not under test here, and a B/32 vision tower would triple the file)."""
    vcfg = R.Config(32, 8, 64, 1, 1, 128, 512, True)
    cases = [("b32 text openai f32 quick", "openai", "f32", True),
             ("b32 text hf f16 erf", "hf", "f16", False)]
    for i, (label, naming, dtype, quick) in enumerate(cases):
        tcfg = dataclasses.replace(R.B32_TEXT, quick_gelu=quick)
        d, stored, toks, ref = text_case(tmp, label, R.with_gelu(vcfg, quick), tcfg, naming,
                                         dtype, 60 + i)
        del stored
        with engine(d, max_batch=len(toks)) as e:
            check(e.text_info() == info_of(tcfg), f"{label}: text info {e.text_info()}")
            compare(label + f" lengths {lengths_for(tcfg)}", e.embed_tokens(toks), ref)
            compare(label + f" lengths {lengths_for(tcfg)[1:3]}", e.embed_tokens(toks[1:3]), ref[1:3])
        os.remove(os.path.join(d, "model.safetensors"))


def main():
    torch.set_num_threads(THREADS)
    with tempfile.TemporaryDirectory(prefix="clip_text_") as tmp:
        test_reference(tmp)
        test_safetensors_roundtrip(tmp)
        test_goldens()
        test_vision_only(tmp)
        test_tiny(tmp)
        test_b32(tmp)
    print(f"\n{len(rows)} comparisons; bounds: cos >= {COS_MIN}, maxabs/|ref| <= {REL_MAXABS}")
    if failures:
        print(f"{len(failures)} FAILURES:\n  " + "\n  ".join(failures))
        return 1
    print("all ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
