#!/usr/bin/python3
"""make_text_model: a tiny whole CLIP model (image and text towers, with its tokenizer's files)
for the end-to-end tests of `clipd embed --text-column`, and the reference text embeddings
of texts under it.

  make_text_model.py make OUT [--seed N] [--merges M]
      writes OUT/model.safetensors (OpenAI naming, f32): clip_ref.TINY_S's image tower and a
      text tower of context 77 whose vocabulary is exactly tokenizer_ref's seeded one (M
      merges: 512 + M + 2 ids), both random from --seed; OUT/open_clip_config.json (both
      towers); OUT/vocab.json and OUT/merges.txt (tokenizer_ref.py make-vocab).
  make_text_model.py embed OUT TEXTS.json EMB.npy
      the reference embeddings (float32 [n, embed_dim], not normalized) of the texts (a JSON
      list of strings) under OUT's model: tokenizer_ref's Tokenizer (the same algorithm as
      libclipengine's, id for id) to 77 ids, then clip_ref's encode_text in float64.

Needs Debian's /usr/bin/python3 with torch, numpy and python3-regex (scripts/install-deps.sh).
Everything comes from fixed seeds: the same arguments write the same files.
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import clip_ref  # noqa: E402
import tokenizer_ref  # noqa: E402


def make(out, seed, merges):
    n = tokenizer_ref.make_vocab(out, seed, merges)
    vocab_size = 512 + n + 2
    cfg = clip_ref.TINY_S
    vision = clip_ref.random_weights(cfg, seed)
    tcfg = clip_ref.TextConfig(77, vocab_size, 32, 2, 2, 64, cfg.embed_dim, cfg.quick_gelu)
    text = clip_ref.random_text_weights(tcfg, seed + 1)
    clip_ref.write_model(out, cfg, vision, naming="openai", dtype="f32", config_file=True, text=(tcfg, text))
    print(f"{out}: image tower {cfg}, text tower {tcfg}")


def embed(model, texts_json, out):
    with open(texts_json, encoding="utf-8") as f:
        texts = json.load(f)
    _, tensors = clip_ref.read_model(model)
    tcfg = clip_ref.read_text_config(model, tensors)
    tok = tokenizer_ref.Tokenizer(model)
    ids = np.array([tok.tokenize(t, tcfg.context_length)[0] for t in texts], np.int64)
    np.save(out, clip_ref.embed_text(tcfg, tensors, ids))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("make")
    a.add_argument("out")
    a.add_argument("--seed", type=int, default=23)
    a.add_argument("--merges", type=int, default=200)
    a = sub.add_parser("embed")
    a.add_argument("model")
    a.add_argument("texts")
    a.add_argument("out")
    args = ap.parse_args()
    if args.cmd == "make":
        make(args.out, args.seed, args.merges)
    else:
        embed(args.model, args.texts, args.out)


if __name__ == "__main__":
    main()
