#!/usr/bin/env python3
"""make_golden: writes the committed forward-pass fixtures under testdata/golden/<name>/:
model.safetensors (+ its config file), meta.json (the config and how the file was written),
pixels.npy (normalized-pixel-like inputs, float32 [n,3,S,S]) and expected.npy (clip_ref's
VisionRef computed in float64 from the weights exactly as stored, float32 [n,E]); and the text
tower's under testdata/golden_text/<name>/: a whole tiny model (vision + text tower),
meta.json (both configs), tokens.npy (int32 [n,ctx], laid out as clip.tokenize does) and
expected_text.npy (clip_ref's TextRef in float64, float32 [n,E]).

Everything comes from fixed seeds; rerun with /usr/bin/python3 tests/reference/make_golden.py
[vision|text] (default both) after changing clip_ref's weights or configs. Kept tiny (well
under 0.5 MB in total).
"""
import dataclasses
import json
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clip_ref as R  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "testdata", "golden")
OUT_TEXT = os.path.join(ROOT, "testdata", "golden_text")

# name: (config, naming, dtype, write config file, weight seed, images)
GOLDENS = {
    # OpenAI naming + open_clip_config.json (head_width 16 -> 2 heads), fp32, QuickGELU
    "tiny_openai_quick_f32": (R.TINY_S, "openai", "f32", True, 101, 3),
    # Hugging Face naming + config.json: 3 heads of 16, exact GELU, eps 1e-6, patch 10, fp16
    "tiny_hf_erf_f16": (R.TINY_ERF, "hf", "f16", True, 102, 2),
    # OpenAI naming without any config file: the defaults (width/64 = 1 head, QuickGELU)
    "tiny_openai_noconfig_f16": (R.Config(24, 8, 64, 1, 1, 96, 8, True), "openai", "f16", False,
                                 103, 3),
}

_TINY_S_TEXT = R.TEXT_CONFIGS["tiny_s"]
# name: (vision config, text config, naming, dtype, weight seed, sequence lengths)
TEXT_GOLDENS = {
    # OpenAI naming + open_clip_config.json (text_cfg: 2 heads), fp32, QuickGELU
    "tiny_openai_quick_f32": (R.TINY_S, _TINY_S_TEXT, "openai", "f32", 201, [8, 2, 4, 6]),
    # Hugging Face naming + config.json text_config: exact GELU, eps 1e-6, fp16
    "tiny_hf_erf_f16": (R.with_gelu(R.TINY_S, False),
                        dataclasses.replace(_TINY_S_TEXT, quick_gelu=False, ln_eps=1e-6),
                        "hf", "f16", 202, [3, 8, 5]),
}


def fresh_dir(d):
    if os.path.isdir(d):
        shutil.rmtree(d)
    return d


def finish(d, name, meta, expected):
    """Writes meta.json, prints the golden's size and norms; returns its size in bytes."""
    meta = dict(meta, made_by="tests/reference/make_golden.py")
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
    size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
    print(f"{name}: {size / 1024:.0f} KB, |expected| = "
          f"{np.linalg.norm(expected, axis=1).round(3).tolist()}")
    return size


def write_text_goldens():
    """A real id 0 sits inside the last sequence of each (the padding id, as a word)."""
    total = 0
    for name, (cfg, tcfg, naming, dtype, seed, lengths) in TEXT_GOLDENS.items():
        d = fresh_dir(os.path.join(OUT_TEXT, name))
        stored = R.write_model(d, cfg, R.random_weights(cfg, seed), naming, dtype, True,
                               text=(tcfg, R.random_text_weights(tcfg, seed)))
        tokens = R.random_tokens(tcfg, lengths, seed + 1000, zero_inside=(len(lengths) - 1,))
        expected = R.embed_text(tcfg, stored, tokens, dtype=torch.float64)
        np.save(os.path.join(d, "tokens.npy"), tokens.astype(np.int32))
        np.save(os.path.join(d, "expected_text.npy"), expected.astype(np.float32))
        meta = {"config": dataclasses.asdict(cfg), "text_config": dataclasses.asdict(tcfg),
                "naming": naming, "dtype": dtype, "weight_seed": seed, "lengths": lengths}
        total += finish(d, name, meta, expected)
    print(f"total {total / 1024:.0f} KB in {OUT_TEXT}")


def main():
    torch.set_num_threads(2)
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    if which not in ("all", "vision", "text"):
        sys.exit("usage: make_golden.py [vision|text]")
    if which in ("all", "text"):
        write_text_goldens()
    if which == "text":
        return
    total = 0
    for name, (cfg, naming, dtype, config_file, seed, n) in GOLDENS.items():
        d = fresh_dir(os.path.join(OUT, name))
        stored = R.write_model(d, cfg, R.random_weights(cfg, seed), naming, dtype, config_file)
        pixels = R.random_pixels(cfg, n, seed + 1000)
        expected = R.embed(cfg, stored, pixels, dtype=torch.float64)
        np.save(os.path.join(d, "pixels.npy"), pixels)
        np.save(os.path.join(d, "expected.npy"), expected.astype(np.float32))
        meta = {"config": dataclasses.asdict(cfg), "naming": naming, "dtype": dtype,
                "config_file": config_file, "weight_seed": seed, "images": n}
        total += finish(d, name, meta, expected)
    print(f"total {total / 1024:.0f} KB in {OUT}")


if __name__ == "__main__":
    main()
