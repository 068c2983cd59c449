#!/usr/bin/env python3
"""compare_outputs: are two clipd output files the same in every dataset?

Usage: /usr/bin/python3 tests/reference/compare_outputs.py A.h5 B.h5

Compares every dataset's shape, dtype and bytes (not the run-time attributes `created` and
`clipd_version`; the other attributes must match too). Prints one line per difference and
exits 1 if there is any, else prints what matched and exits 0.
"""
import sys

import h5py
import numpy as np

SKIP_ATTRS = {"created", "clipd_version"}


def main(a_path, b_path):
    a, b = h5py.File(a_path, "r"), h5py.File(b_path, "r")
    diffs = []
    if sorted(a.keys()) != sorted(b.keys()):
        diffs.append(f"datasets differ: {sorted(a.keys())} vs {sorted(b.keys())}")
    rows = 0
    for name in sorted(set(a.keys()) & set(b.keys())):
        x, y = a[name], b[name]
        if x.shape != y.shape or x.dtype != y.dtype:
            diffs.append(f"{name}: {x.shape} {x.dtype} vs {y.shape} {y.dtype}")
            continue
        xv, yv = x[()], y[()]
        same = np.array_equal(xv, yv) if xv.dtype.kind != "O" else list(xv) == list(yv)
        if not same:
            diffs.append(f"{name}: values differ")
        rows = max(rows, x.shape[0] if x.shape else 0)
    for k in sorted((set(a.attrs) | set(b.attrs)) - SKIP_ATTRS):
        va, vb = a.attrs.get(k), b.attrs.get(k)
        if not (va is not None and vb is not None and np.array_equal(np.asarray(va), np.asarray(vb))):
            diffs.append(f"attribute {k}: {va!r} vs {vb!r}")
    for d in diffs:
        print(d)
    if diffs:
        return 1
    print(f"same: {len(a.keys())} datasets ({', '.join(sorted(a.keys()))}), up to {rows} rows, "
          f"{len(set(a.attrs) - SKIP_ATTRS)} attributes")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
