#!/usr/bin/python3
"""Brute-force cosine scores with numpy, the reference search_test.go checks clipd's search
against: every row of FILE.h5's embeddings (read by h5py, in float64, rows normalized) against
every query of QUERIES.npy (normalized), written to OUT.npy as a (rows, queries) float32 array.
A row of zeros scores NaN.

usage: /usr/bin/python3 bruteforce.py FILE.h5 QUERIES.npy OUT.npy
"""
import sys

import h5py
import numpy as np


def main():
    path, queries, out = sys.argv[1:4]
    with h5py.File(path, "r") as f:
        emb = f["embeddings"][:].astype(np.float64)
    q = np.load(queries).astype(np.float64)
    q = q.reshape(-1, emb.shape[1])
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        scores = q @ emb.T
    np.save(out, np.ascontiguousarray(scores.T, dtype=np.float32))


if __name__ == "__main__":
    main()
