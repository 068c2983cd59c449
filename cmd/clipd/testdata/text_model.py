#!/usr/bin/python3
"""A tiny CLIP with both towers and a vocabulary, for the tests of `clipd embed-text` and of
`clipd search` with text queries, and their reference.

  text_model.py make DIR          DIR/model.safetensors (+ open_clip_config.json): the tiny_s
                                  vision tower of tests/reference/clip_ref.py and a text tower
                                  (context 16, width 32, 2 layers) whose ids are those of
                                  tokenizer_ref.py's seeded vocabulary, written beside it
                                  (vocab.json + merges.txt); fixed seeds.
  text_model.py embed DIR TEXT... JSON on stdout: per text the ids (tokenizer_ref.py), the BPE
                                  count before the cut, and clip_ref.TextRef's embedding in
                                  float64 (not normalized): the reference for clipd's.
"""
import dataclasses
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "tests", "reference"))

import numpy as np  # noqa: E402

import clip_ref  # noqa: E402
import tokenizer_ref  # noqa: E402

SEED = 5
CONTEXT = 16


def text_config(vocab_size):
    return clip_ref.TextConfig(CONTEXT, vocab_size, 32, 2, 2, 64, clip_ref.TINY_S.embed_dim, True)


def make(d):
    tokenizer_ref.make_vocab(d, 18, 400)
    with open(os.path.join(d, "vocab.json"), encoding="utf-8") as fh:
        vocab = json.load(fh)
    cfg = clip_ref.TINY_S
    tcfg = text_config(len(vocab))
    clip_ref.write_model(d, cfg, clip_ref.random_weights(cfg, SEED), "openai", "f32",
                         text=(tcfg, clip_ref.random_text_weights(tcfg, SEED)))


def embed(d, texts):
    cfg, tensors = clip_ref.read_model(d)
    with open(os.path.join(d, "vocab.json"), encoding="utf-8") as fh:
        tcfg = text_config(len(json.load(fh)))
    tok = tokenizer_ref.Tokenizer(d)
    ids, counts = zip(*(tok.tokenize(t, CONTEXT) for t in texts))
    out = clip_ref.embed_text(tcfg, tensors, np.array(ids, np.int64))
    json.dump({"tokens": [list(map(int, i)) for i in ids], "n": list(counts),
               "embeddings": out.astype(np.float64).tolist()}, sys.stdout)


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) >= 4 and sys.argv[1] == "embed":
        embed(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
