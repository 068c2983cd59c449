#!/usr/bin/python3
"""Reference CLIP tokenizer for the tests, written from the documented algorithm of OpenAI's
SimpleTokenizer (clip/simple_tokenizer.py) with ftfy.fix_text replaced by NFC (ftfy is not
packaged in Debian 12; see the tokenizer section of engine/include/clipengine.h for what that
leaves out and how Hugging Face's tokenizers differ), plus a small seeded vocabulary and the
test cases libclipengine's tokenizer is compared with, id for id.

  tokenizer_ref.py make-vocab DIR [--seed S] [--merges N] [--shuffle] [--pad-to T]
      writes DIR/vocab.json and DIR/merges.txt: the 256 byte symbols, their </w> forms,
      up to N merges learnt (most frequent pair first) from a corpus made with seed S, then
      <|startoftext|> and <|endoftext|> with the two highest ids. --shuffle ranks the merges
      in a seeded random order (SimpleTokenizer's rounds then matter); --pad-to T adds filler
      merges of random tokens after the learnt ones up to T tokens (49408: CLIP's size).
  tokenizer_ref.py expect DIR OUT.jsonl [--seed S] [--count N] [--code-points K]
      writes the test cases (the hand-picked ones, N random texts and K texts each made of one
      code point, a seeded sample, -1 for all 1,112,064), one JSON object a line: {"hex": UTF-8 bytes in hex, "ctx": context length, "ids": [...], "n": BPE count,
      "bpe": all BPE ids (no cut)}
      or {"hex": ..., "ctx": ..., "error": "utf8"} for bytes that are not UTF-8.
  tokenizer_ref.py encode DIR TEXT...
      prints each text's 77 ids.

Needs Debian's /usr/bin/python3 (3.11) and python3-regex (scripts/install-deps.sh). The C
tables (engine/src/tokenizer_unicode.c) are generated from the same Python; `expect` refuses
to run when this Python's unicodedata or regex versions differ from the ones they record.
"""

import argparse
import html
import json
import os
import random
import re as stdre
import sys
import unicodedata

import regex

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE)


def byte_symbols():
    """GPT-2's bytes_to_unicode: printable Latin-1 bytes stay, the other 68 go to U+0100..."""
    keep = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


BYTE_SYM = byte_symbols()


def clean(text):
    text = unicodedata.normalize("NFC", text)  # ftfy.fix_text's normalisation, and no more
    text = html.unescape(html.unescape(text)).strip()
    text = regex.sub(r"\s+", " ", text).strip()
    return text.lower()


def pieces(text):
    return PATTERN.findall(clean(text))


def to_symbols(piece):
    syms = [BYTE_SYM[b] for b in piece.encode("utf-8")]
    syms[-1] += "</w>"
    return syms


def merge_word(syms, ranks):
    """Rounds: the lowest-ranked adjacent pair, all its occurrences merged left to right."""
    syms = list(syms)
    while len(syms) > 1:
        best = None
        for pair in zip(syms, syms[1:]):
            r = ranks.get(pair)
            if r is not None and (best is None or r < best[0]):
                best = (r, pair)
        if best is None:
            break
        a, b = best[1]
        out, i = [], 0
        while i < len(syms):
            if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                out.append(a + b)
                i += 2
            else:
                out.append(syms[i])
                i += 1
        syms = out
    return syms


class Tokenizer:
    def __init__(self, folder):
        with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as fh:
            self.vocab = json.load(fh)
        with open(os.path.join(folder, "merges.txt"), encoding="utf-8") as fh:
            lines = fh.read().split("\n")
        if lines and lines[0].startswith("#version"):
            lines = lines[1:]
        self.ranks = {}
        for rank, line in enumerate(lines):
            parts = tuple(line.split())
            if len(parts) == 2:
                self.ranks[parts] = rank

    def bpe_ids(self, text):
        ids = []
        for piece in pieces(text):
            if piece in (SOT, EOT):
                ids.append(self.vocab[piece])
                continue
            ids.extend(self.vocab[s] for s in merge_word(to_symbols(piece), self.ranks))
        return ids

    def tokenize(self, text, ctx=77):
        bpe = self.bpe_ids(text)
        ids = [self.vocab[SOT]] + bpe + [self.vocab[EOT]]
        if len(ids) > ctx:
            ids = ids[:ctx]
            ids[-1] = self.vocab[EOT]
        return ids + [0] * (ctx - len(ids)), len(bpe)


# ---- the seeded vocabulary ----

WORDS = ("a photo of the dog cat on in with and two man woman people sitting standing red "
         "blue green white black small large street table car bus train plane bird horse "
         "pizza plate food water beach city building sign tree grass field snow sky kitchen "
         "room bed boy girl child playing riding holding looking next to its it's there "
         "photograph picture painting illustration drawing close-up view night day café "
         "naïve résumé straße über déjà vu señor crème brûlée ångström zürich kyoto tokyo "
         "東京 日本 写真 猫 犬 中国 北京 한국 서울 사진 москва кошка собака αθήνα σκύλος "
         "😀 🐶 🐱 👍 ❤️ 1 2 3 10 100 2024 3.14 $5 #tag @user don't can't we're you've i'm "
         "we'll he'd !!! ... ?! -- () [] {} \"quote\" & < > / \\ | ~ ^ * + = % :) ;)").split()


def make_corpus(rng, n_lines=3000):
    lines = []
    for _ in range(n_lines):
        k = rng.randint(3, 14)
        words = [rng.choice(WORDS) for _ in range(k)]
        if rng.random() < 0.3:
            words.append(str(rng.randint(0, 99999)))
        lines.append(" ".join(words))
    return lines


def learn_merges(corpus, n_merges):
    freq = {}
    for line in corpus:
        for piece in pieces(line):
            if piece in (SOT, EOT):
                continue
            key = tuple(to_symbols(piece))
            freq[key] = freq.get(key, 0) + 1
    words = [(list(k), f) for k, f in sorted(freq.items())]
    known = set(BYTE_SYM.values()) | {s + "</w>" for s in BYTE_SYM.values()}
    merges = []
    while len(merges) < n_merges:
        counts = {}
        for syms, f in words:
            for pair in zip(syms, syms[1:]):
                counts[pair] = counts.get(pair, 0) + f
        # most frequent first, ties by the pair itself; a pair whose result already exists
        # (another split of the same string) is passed over so each token has one id
        order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        pick = next((p for p, _ in order if p[0] + p[1] not in known), None)
        if pick is None:
            break
        merges.append(pick)
        known.add(pick[0] + pick[1])
        words = [(merge_word_once(s, pick), f) for s, f in words]
    return merges


def merge_word_once(syms, pair):
    out, i = [], 0
    while i < len(syms):
        if i + 1 < len(syms) and syms[i] == pair[0] and syms[i + 1] == pair[1]:
            out.append(syms[i] + syms[i + 1])
            i += 2
        else:
            out.append(syms[i])
            i += 1
    return out


def make_vocab(folder, seed, n_merges, shuffle=False, pad_to=0):
    rng = random.Random(seed)
    merges = learn_merges(make_corpus(rng), n_merges)
    if pad_to:
        # CLIP's size (49,408 tokens) for timing: filler merges of random existing tokens,
        # ranked after the learnt ones
        tokens = list(BYTE_SYM.values()) + [a + b for a, b in merges]
        known = set(tokens) | {t + "</w>" for t in BYTE_SYM.values()}
        while 512 + len(merges) + 2 < pad_to:
            a, b = rng.choice(tokens), rng.choice(tokens)
            if rng.random() < 0.5:
                b += "</w>"
            if a + b not in known:
                merges.append((a, b))
                known.add(a + b)
                if not b.endswith("</w>") and len(a + b) < 8:  # words of CLIP's lengths
                    tokens.append(a + b)
    if shuffle:
        # ranks out of learning order: a pair that uses a merge's result may outrank that
        # merge, where merging one occurrence at a time and merging by rounds part ways
        rng.shuffle(merges)
        # and one such pair for sure: "xyxyz" is xy|xy|z</w> by rounds, xyx|y|z</w> by
        # merging one occurrence at a time
        front = [("xy", "x"), ("x", "y")]
        merges = front + [m for m in merges if m not in front and m[0] + m[1] not in ("xy", "xyx")]
    tokens = list(BYTE_SYM.values())
    tokens += [t + "</w>" for t in list(BYTE_SYM.values())]
    tokens += [a + b for a, b in merges]
    tokens += [SOT, EOT]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as fh:
        json.dump(vocab, fh, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as fh:
        fh.write("#version: 0.2\n")
        for a, b in merges:
            fh.write(f"{a} {b}\n")
    return len(merges)


# ---- the test cases ----

def hand_picked():
    s = [
        "", " ", "   \t\n  ", "a", "A", "a photo of a dog", "A PHOTO OF A DOG.",
        "Hello, World!!! How's it going?", "don't", "DON'T", "It'S", "they're we've I'm you'll he'd",
        "'s", "'", "''", "'''s", "x's't're've'm'll'd", "rock'n'roll", "'sa", "'ſ", "it'ſ", "'ſa",
        "don\u2019t", "\u2018quoted\u2019 \u201cdouble\u201d",
        "caf\u00e9", "cafe\u0301", "CAFE\u0301", "e\u0301\u0323", "e\u0323\u0301", "\u00e9\u0323",
        "\u1ec7", "e\u0302\u0323", "a\u0308\u0304", "\u212b", "A\u030a", "\u1e9b\u0323",
        "Ångström", "naïve", "Straße", "STRASSE", "\u1e9e", "İstanbul", "ISTANBUL", "\u0130",
        "ΣΑΣ", "ὈΔΥΣΣΕΎΣ", "Σ", "aΣ", "aΣb", "aΣ.", "a'Σ", "AΣ\u0345", "ΑΣ\u0300 Β",
        "\u01c5", "\u01c4", "\u1f88", "ﬁ ﬂ ﬀ", "Ⅻ Ⅷ ⅻ", "①②③", "²³¹", "٣٤٥", "१२३", "１２３",
        "ＡＢＣ ｆｕｌｌ", "\u3000leading ideographic space", "a\u00a0b", "a\u2003b", "a\u202fb",
        "a\u200bb", "a\ufeffb", "a\u180eb", "a\u2028b\u2029c", "a\x85b", "a\x1cb\x1dc\x1ed\x1f",
        "\x1c start", "end \x1f", "\x1c\x1d", "a\x0bb\x0cc\rd", "\x00", "a\x00b", "\x07bell\x7f",
        "tab\tseparated\tvalues", "line\nbreaks\r\nhere", "  multiple   spaces  ",
        "&amp;", "&amp;amp;", "&amp;amp;amp;", "&lt;b&gt;bold&lt;/b&gt;", "&#39;s", "&#x27;t",
        "&#X41;&#x42", "&#0;", "&#13;", "&#128;", "&#129;", "&#150;", "&#xD800;", "&#1114112;",
        "&#x110000;", "&#65534;", "&#xFFFF;", "&#11;", "&#1;x", "&#9;", "&#32;&#32;",
        "&#0000065;", "&#x000041;", "&notit;", "&notin;", "&ampfoo", "&AElig", "&AElig;x",
        "&#;", "&#x;", "&;", "&", "&&&", "&" + "a" * 40 + ";", "&" + "b" * 31 + "amp;",
        "&nbsp;", "x&nbsp;&nbsp;y", "&NotNestedGreaterGreater;", "&nvlt;", "&amp", "&ampamp;",
        "&lt", "&ltx", "&gt;&gt;", "AT&T", "R&D", "&amp;nbsp;", "&amp;#39;", "&#38;amp;",
        "&#x26;lt;", "&Amp;", "&AMP;", "&amp;#x26;amp;", "&\u00e9;", "&amp\u00e9",
        "&#12345678901234567890;", "&#x" + "f" * 30 + ";",
        "<|startoftext|>", "<|endoftext|>", "<|ENDOFTEXT|>", "<|ſtartoftext|>", "<|EndOfText|>",
        "x<|endoftext|>y", "!<|endoftext|>", "<|endoftext|><|startoftext|>", "<|endoftext",
        "<|end of text|>", "a photo <|endoftext|> of a dog",
        "\U0001F600", "\U0001F44D\U0001F3FD", "\U0001F468\u200d\U0001F469\u200d\U0001F467",
        "\U0001F3F3\ufe0f\u200d\U0001F308", "\U0001F1EF\U0001F1F5",
        "\U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F", "❤️", "☺︎",
        "東京タワーの写真", "我爱北京天安门", "한국어 문장입니다", "\u1100\u1161\u11a8",
        "\u1100\u1161 \u1100", "\uac00\u11a8", "مرحبا بالعالم", "שלום", "नमस्ते दुनिया", "ไทย",
        "Привет, мир!", "Ελληνικά", "𝐁𝐨𝐥𝐝 𝕕𝕠𝕦𝕓𝕝𝕖", "\U00010400\U00010428", "\U0001e030",
        "\U00031350", "\U0001b132", "\U0001d7ce\U0001d7cf", "ǅungla", "ŉ", "\u0345", "a\u0345",
        "3.14159", "1,000,000", "2024-01-01", "v1.2.3", "0x1F", "$100", "50%", "#hashtag",
        "@mention", "http://example.com/path?q=1&r=2", "user@example.com", "C++ and C#",
        "!!!???...", "---", "___", "(((nested)))", "\"quoted\"", "¿Qué?", "¡Hola!", "«guillemets»",
        "xyxyz", "xyxy", "XYXYXYZ", "a.b.c", "e.g.", "i.e.,", "...and", "end.", ":-)", "<3", "</w>", "a</w>", "x</w>y",
        "\u00ad", "soft\u00adhyphen", "\ufffd", "\uffff", "\U0010ffff", "\ue000",
        "a" * 200, "ab" * 150, "!" * 120, "猫" * 100, "1" * 100, "\U0001F600" * 80,
        " ".join(["word"] * 100), " ".join(f"w{i}" for i in range(90)),
        "a photo of " * 30, ("The quick brown fox jumps over the lazy dog. " * 10).strip(),
    ]
    return [x.encode("utf-8") for x in s]


INVALID = [b"\xff", b"\xfe", b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xed\xa0\x80",
           b"\xed\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80",
           b"\xe2\x82", b"abc\x80", b"\x80", b"caf\xe9", b"ok \xe2\x82\xac then \xe2\x82",
           b"\xf0\x9f\x98", b"a\xc3", b"\xc3\x28"]

FRAGMENTS = None


def fragments():
    global FRAGMENTS
    if FRAGMENTS is None:
        FRAGMENTS = [x.decode("utf-8") for x in hand_picked() if 0 < len(x) < 40] + WORDS
    return FRAGMENTS


RANGES = [(0x20, 0x7E), (0xA0, 0x17F), (0x180, 0x24F), (0x300, 0x36F), (0x370, 0x3FF),
          (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF),
          (0x1E00, 0x1FFF), (0x2000, 0x206F), (0x2070, 0x218F), (0x2460, 0x24FF),
          (0x3000, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFB00, 0xFB4F),
          (0xFE00, 0xFE6F), (0xFF00, 0xFFEF), (0x1D400, 0x1D7FF), (0x1F300, 0x1FAFF),
          (0xE0000, 0xE007F), (0x0, 0x1F), (0x80, 0x9F), (0x10000, 0x10FFFF)]
SEPS = [" ", " ", " ", "", "\t", "\n", "  ", "\u00a0", "\u3000", "-", ".", ",", "'", "&",
        "\u0301", "\u200d", "\x1c"]


def random_text(rng):
    parts = []
    for _ in range(rng.randint(1, 25)):
        r = rng.random()
        if r < 0.45:
            f = rng.choice(fragments())
            if rng.random() < 0.3:
                f = f.upper() if rng.random() < 0.5 else f.title()
        elif r < 0.8:
            lo, hi = rng.choice(RANGES)
            cs = []
            for _ in range(rng.randint(1, 8)):
                c = rng.randint(lo, hi)
                if not (0xD800 <= c <= 0xDFFF):
                    cs.append(chr(c))
            f = "".join(cs)
        elif r < 0.9:
            f = "&" + rng.choice(["amp;", "amp;amp;", "lt;", "gt", "#" + str(rng.randint(0, 70000)) + ";",
                                  "#x%x" % rng.randint(0, 0x11000), "nbsp;", "quot", "eacute;",
                                  "Eacute", "copy", "notit;", "hellip;", "#", "x"])
        else:
            f = rng.choice(["'s", "'S", "'t", "'re", "'VE", "'m", "'ll", "'D", "'x", "<|endoftext|>",
                            "<|startoftext|>", "Σ", "ΣΑΣ", "İ"])
        parts.append(f)
        parts.append(rng.choice(SEPS))
    text = "".join(parts)
    if rng.random() < 0.05:
        text = text * rng.randint(3, 10)
    return text.encode("utf-8")


def check_versions():
    path = os.path.join(ROOT, "engine", "src", "tokenizer_unicode.c")
    with open(path, encoding="utf-8") as fh:
        m = stdre.search(r'clip_tok_unicode_versions\[\] = "([^"]*)"', fh.read())
    want = m.group(1) if m else "?"
    have = f"python {sys.version.split()[0]} unicodedata {unicodedata.unidata_version} regex {regex.__version__}"
    # the micro version of Python does not change its Unicode data
    if want.split()[2:] != have.split()[2:]:
        sys.exit(f"tokenizer_ref.py: the C tables come from {want}, this is {have}: "
                 "run with Debian 12's /usr/bin/python3 and python3-regex")


def code_point_texts(rng, count):
    """Each code point in a text that reads its class, case (and the final sigma's context)
    and normalisation: c + "Σ" + c + "a" + c; count < 0 takes every code point, else a
    seeded sample of count."""
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    if count >= 0:
        cps = rng.sample(cps, count)
    return [f"{chr(c)}\u03a3{chr(c)}a{chr(c)}".encode("utf-8") for c in cps]


def expect(folder, out, seed, count, code_points):
    check_versions()
    tok = Tokenizer(folder)
    rng = random.Random(seed)
    cases = [(b, 77) for b in hand_picked()] + [(b, 77) for b in INVALID]
    cases += [(random_text(rng), 77) for _ in range(count)]
    cases += [(b, 77) for b in code_point_texts(rng, code_points)]
    # other context lengths: the cut keeps the end token wherever it falls
    cases += [(b"a photo of a dog on the beach", c) for c in (2, 3, 5, 8, 9, 200)]
    cases += [(b"", 2), (("\u732b" * 10).encode(), 4)]
    with open(out, "w", encoding="utf-8") as fh:
        for raw, ctx in cases:
            rec = {"hex": raw.hex(), "ctx": ctx}
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                rec["error"] = "utf8"
            else:
                rec["ids"], rec["n"] = tok.tokenize(text, ctx)
                rec["bpe"] = tok.bpe_ids(text)
            fh.write(json.dumps(rec) + "\n")
    return len(cases)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("make-vocab")
    a.add_argument("dir")
    a.add_argument("--seed", type=int, default=18)
    a.add_argument("--merges", type=int, default=400)
    a.add_argument("--shuffle", action="store_true", help="merges in a seeded random order")
    a.add_argument("--pad-to", type=int, default=0, help="add filler merges up to this many tokens")
    a = sub.add_parser("expect")
    a.add_argument("dir")
    a.add_argument("out")
    a.add_argument("--seed", type=int, default=18)
    a.add_argument("--count", type=int, default=3000)
    a.add_argument("--code-points", type=int, default=20000,
                   help="texts made of single code points: a seeded sample of this many; -1 for all")
    a = sub.add_parser("encode")
    a.add_argument("dir")
    a.add_argument("texts", nargs="+")
    args = ap.parse_args()
    if args.cmd == "make-vocab":
        n = make_vocab(args.dir, args.seed, args.merges, args.shuffle, args.pad_to)
        print(f"{args.dir}: {512 + n + 2} tokens, {n} merges")
    elif args.cmd == "expect":
        n = expect(args.dir, args.out, args.seed, args.count, args.code_points)
        print(f"{args.out}: {n} cases")
    else:
        tok = Tokenizer(args.dir)
        for t in args.texts:
            print(json.dumps(tok.tokenize(t)[0]))


if __name__ == "__main__":
    main()
