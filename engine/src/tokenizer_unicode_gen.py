#!/usr/bin/python3
"""Generates engine/src/tokenizer_unicode.c: the Unicode and HTML tables of the CLIP tokenizer
(tokenizer.c), taken from the very Python the reference tokenizer runs on, so that every code
point is classed, lower-cased, normalised and unescaped as Python does it:

  - the pre-tokenising classes: whether a code point matches [\\p{L}], [\\p{N}] and
    [^\\s\\p{L}\\p{N}] of the `regex` module with IGNORECASE (what SimpleTokenizer's pattern
    uses), and `regex`'s \\s (whitespace_clean's pattern);
  - str.isspace() (str.strip), str.lower() (full mappings: U+0130 becomes two code points),
    and the Cased / Case_Ignorable properties CPython's lower() uses for the final sigma,
    derived from lower() itself;
  - canonical decompositions, combining classes and primary composites (NFC) from unicodedata;
  - html.unescape's named entities (html.entities.html5) and its numeric-reference rules;
  - the code points that `regex` matches to an ASCII letter under IGNORECASE (U+017F long s
    matches `s`), for the literal parts of the pattern.

Run with Debian 12's /usr/bin/python3 (3.11, unicodedata 14.0.0) and python3-regex 2022.10.31
(its own Unicode 15.0 tables): `/usr/bin/python3 engine/src/tokenizer_unicode_gen.py`. The
versions go into the generated file; tests/reference/tokenizer_ref.py refuses to compare
against a Python whose versions differ.
"""

import html
import html.entities
import os
import sys
import unicodedata

import regex

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tokenizer_unicode.c")
MAXCP = 0x110000
SHIFT = 7  # two-stage tables: blocks of 128 code points

# flag bits (tokenizer_unicode.h)
F_PAT_L, F_PAT_N, F_PAT_O, F_RE_SPACE, F_PY_SPACE, F_CASED, F_CASE_IGN, F_NFC_UNSAFE = (
    1, 2, 4, 8, 16, 32, 64, 128)


def chars():
    for cp in range(MAXCP):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        yield cp, chr(cp)


def sigma_final(s):
    return s.lower()[-1] == "\u03c2" if s.endswith("\u03a3") else None


def main():
    pat_l = regex.compile(r"[\p{L}]", regex.IGNORECASE)
    pat_n = regex.compile(r"[\p{N}]", regex.IGNORECASE)
    pat_o = regex.compile(r"[^\s\p{L}\p{N}]", regex.IGNORECASE)
    re_s = regex.compile(r"\s")

    # Second code points of primary composites (and Hangul V/T jamo) may join the code point
    # before them: a text holding one needs the full NFC pass.
    comp = {}
    for cp, c in chars():
        d = unicodedata.decomposition(c)
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        if len(parts) == 2 and unicodedata.normalize("NFC", c) == c:
            comp[(parts[0], parts[1])] = cp
    seconds = {b for (_, b) in comp}
    seconds.update(range(0x1161, 0x1176))  # Hangul V
    seconds.update(range(0x11A8, 0x11C3))  # Hangul T

    props = [0] * MAXCP  # flags | ccc << 8
    lower1 = []  # (cp, lower cp)
    lowerx = []  # (cp, [lower cps]) with more than one code point
    decomp = []  # (cp, [NFD cps]), Hangul syllables excluded (algorithmic)
    for cp, c in chars():
        f = 0
        if pat_l.fullmatch(c):
            f |= F_PAT_L
        if pat_n.fullmatch(c):
            f |= F_PAT_N
        if pat_o.fullmatch(c):
            f |= F_PAT_O
        if re_s.fullmatch(c):
            f |= F_RE_SPACE
        if c.isspace():
            f |= F_PY_SPACE
        # CPython's final-sigma rule reads Cased and Case_Ignorable; lower() reveals both:
        # "A" c "Σ" ends in ς iff c is ignorable or cased; c "Σ" iff c is cased and not
        # ignorable; "AΣ" c keeps ς iff c is ignorable or not cased.
        t1 = sigma_final("A" + c + "\u03a3")
        t2 = sigma_final(c + "\u03a3")
        t3 = ("A\u03a3" + c).lower()[1] == "\u03c2"
        ign = t1 and t3
        if ign:
            f |= F_CASE_IGN
        elif t2:
            f |= F_CASED
        ccc = unicodedata.combining(c)
        if ccc or unicodedata.normalize("NFC", c) != c or cp in seconds:
            f |= F_NFC_UNSAFE
        props[cp] = f | (ccc << 8)
        lo = c.lower()
        if lo != c:
            if len(lo) == 1:
                lower1.append((cp, ord(lo)))
            else:
                lowerx.append((cp, [ord(x) for x in lo]))
        if not (0xAC00 <= cp <= 0xD7A3):
            nfd = unicodedata.normalize("NFD", c)
            if nfd != c:
                decomp.append((cp, [ord(x) for x in nfd]))
    # The sigma itself: its own mapping is context-dependent and done in code.
    assert (0x3A3, 0x3C3) in lower1

    fold = []  # non-ASCII code points regex matches to an ASCII letter under IGNORECASE
    for cp, c in chars():
        if cp < 128:
            continue
        for letter in "abcdefghijklmnopqrstuvwxyz":
            if regex.fullmatch(letter, c, regex.IGNORECASE):
                fold.append((cp, ord(letter)))

    # two-stage table
    blocks, index, stage1 = [], {}, []
    for b in range(MAXCP >> SHIFT):
        blk = tuple(props[b << SHIFT:(b + 1) << SHIFT])
        if blk not in index:
            index[blk] = len(blocks)
            blocks.append(blk)
        stage1.append(index[blk])

    ents = sorted(html.entities.html5.items(), key=lambda kv: kv[0].encode())
    inv_refs = sorted(html._invalid_charrefs.items())
    inv_cps = sorted(html._invalid_codepoints)

    o = []
    w = o.append
    w("/* tokenizer_unicode.c: GENERATED by engine/src/tokenizer_unicode_gen.py; do not edit.")
    w(f"   Python {sys.version.split()[0]}, unicodedata {unicodedata.unidata_version}, "
      f"regex {regex.__version__} (python3-regex 2022.10.31, Unicode 15.0). */")
    w('#include "tokenizer_unicode.h"\n')
    w(f'const char clip_tok_unicode_versions[] = "python {sys.version.split()[0]} unicodedata '
      f'{unicodedata.unidata_version} regex {regex.__version__}";\n')

    def arr(ctype, name, vals, per=16):
        w(f"const {ctype} {name}[{len(vals)}] = {{")
        for i in range(0, len(vals), per):
            w("  " + ", ".join(str(v) for v in vals[i:i + per]) + ",")
        w("};\n")

    arr("uint16_t", "clip_tok_prop_stage1", stage1)
    arr("uint16_t", "clip_tok_prop_stage2", [v for blk in blocks for v in blk])
    arr("uint32_t", "clip_tok_lower_from", [a for a, _ in lower1], 12)
    arr("uint32_t", "clip_tok_lower_to", [b for _, b in lower1], 12)
    w(f"const int clip_tok_lower_count = {len(lower1)};\n")
    assert len(lowerx) >= 1 and all(len(v) <= 3 for _, v in lowerx)
    arr("uint32_t", "clip_tok_lowerx_from", [a for a, _ in lowerx], 12)
    arr("uint32_t", "clip_tok_lowerx_to", [x for _, v in lowerx for x in (v + [0, 0, 0])[:3]], 12)
    w(f"const int clip_tok_lowerx_count = {len(lowerx)};\n")
    pool, offs = [], []
    for cp, v in decomp:
        assert len(v) <= 15
        offs.append(len(pool) << 4 | len(v))
        pool.extend(v)
    arr("uint32_t", "clip_tok_decomp_from", [a for a, _ in decomp], 12)
    arr("uint32_t", "clip_tok_decomp_at", offs, 12)
    arr("uint32_t", "clip_tok_decomp_pool", pool, 12)
    w(f"const int clip_tok_decomp_count = {len(decomp)};\n")
    pairs = sorted(comp.items())
    arr("uint64_t", "clip_tok_comp_pair", [f"{a << 21 | b}u" for (a, b), _ in pairs], 8)
    arr("uint32_t", "clip_tok_comp_to", [c for _, c in pairs], 12)
    w(f"const int clip_tok_comp_count = {len(pairs)};\n")
    arr("uint32_t", "clip_tok_fold_from", [a for a, _ in fold])
    arr("uint8_t", "clip_tok_fold_to", [b for _, b in fold])
    w(f"const int clip_tok_fold_count = {len(fold)};\n")

    w(f"const clip_tok_entity clip_tok_entities[{len(ents)}] = {{")
    for name, val in ents:
        cps = [ord(x) for x in val] + [0]
        assert len(val) <= 2
        w(f'  {{"{name}", {{{cps[0]}u, {cps[1]}u}}}},')
    w("};\n")
    w(f"const int clip_tok_entity_count = {len(ents)};\n")
    arr("uint32_t", "clip_tok_charref_from", [a for a, _ in inv_refs])
    arr("uint32_t", "clip_tok_charref_to", [ord(b) for _, b in inv_refs])
    w(f"const int clip_tok_charref_count = {len(inv_refs)};\n")
    arr("uint32_t", "clip_tok_invalid_cp", inv_cps, 10)
    w(f"const int clip_tok_invalid_cp_count = {len(inv_cps)};")

    with open(OUT, "w") as fh:
        fh.write("\n".join(o) + "\n")
    print(f"wrote {OUT}: {len(blocks)} blocks, {len(lower1)}+{len(lowerx)} lower, "
          f"{len(decomp)} decompositions, {len(pairs)} composites, {len(ents)} entities, "
          f"fold {fold}")


if __name__ == "__main__":
    main()
