/* test_tokenizer.c: the tokenizer's C API on a hand-written vocabulary: the id layout
   (start, BPE, end, zeros) and the cut at the context length, merges.txt with and without
   its "#version" line and with CRLF, NUL bytes in the text, every argument and UTF-8 error,
   clip_tokenizer_open's folder rules and messages, vocabularies it refuses, and a piece of
   100,000 bytes. (The comparison with the Python reference on thousands of texts is
   cgo/engine/tokenizer_test.go.) */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "clipengine.h"
#include "tmpdir.h"

static char root[512];

/* bytes_to_unicode: the code point standing for byte b in vocab.json */
static unsigned byte_cp(int b) {
  int n = 0;
  for (int x = 0; x < 256; x++) {
    int printable = (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE;
    unsigned cp = printable ? (unsigned)x : (unsigned)(256 + n++);
    if (x == b) return cp;
  }
  return 0;
}

static void put_cp(FILE *f, unsigned cp) {
  if (cp == '"' || cp == '\\')
    fprintf(f, "\\%c", (char)cp);
  else if (cp < 0x80)
    fputc((int)cp, f);
  else
    fprintf(f, "%c%c", (char)(0xC0 | (cp >> 6)), (char)(0x80 | (cp & 0x3F)));
}

/* ids: byte b -> b, byte b with </w> -> 256 + b, then the merges' results from 512 on,
   then the two special tokens. skip_byte >= 0 leaves that byte's token out. */
enum { SOT = 600, EOT = 601, HELL = 514, HELLO_W = 515, LO = 516 };
static const char *merge_lines[] = {"h e", "he l", "hel l", "hell o</w>", "l o"};
static const char *merge_results[] = {"he", "hel", "hell", "hello</w>", "lo"};

static void write_vocab(const char *dir, int skip_byte, int nmerges) {
  char p[600];
  snprintf(p, sizeof p, "%s/vocab.json", dir);
  FILE *f = fopen(p, "w");
  fputc('{', f);
  for (int e = 0; e < 2; e++) {
    for (int b = 0; b < 256; b++) {
      if (b == skip_byte) continue;
      fputc('"', f);
      put_cp(f, byte_cp(b));
      fprintf(f, "%s\": %d, ", e ? "</w>" : "", e * 256 + b);
    }
  }
  for (int i = 0; i < nmerges; i++) fprintf(f, "\"%s\": %d, ", merge_results[i], 512 + i);
  fprintf(f, "\"<|startoftext|>\": %d, \"<|endoftext|>\": %d}", SOT, EOT);
  fclose(f);
}

static void write_merges(const char *dir, const char *header, const char *eol) {
  char p[600];
  snprintf(p, sizeof p, "%s/merges.txt", dir);
  FILE *f = fopen(p, "w");
  if (header) fprintf(f, "%s%s", header, eol);
  for (size_t i = 0; i < sizeof merge_lines / sizeof *merge_lines; i++)
    fprintf(f, "%s%s%s", merge_lines[i], eol, i == 1 ? eol : ""); /* and a blank line */
  fclose(f);
}

static char *folder(const char *name) {
  static char p[8][600];
  static int k;
  char *d = p[k++ % 8];
  snprintf(d, 600, "%s/%s", root, name);
  mkdir(d, 0755);
  return d;
}

static int tok(const clip_tokenizer *t, const char *s, size_t len, int32_t *ids, int ctx, int *n) {
  return clip_tokenize(t, s, len, ids, ctx, n);
}

static void check_hello(const clip_tokenizer *t, const char *what) {
  int32_t ids[77];
  int n = -1;
  CHECK(tok(t, "Hello", 5, ids, 77, &n) == CLIP_OK, "%s: tokenize", what);
  CHECK(n == 1 && ids[0] == SOT && ids[1] == HELLO_W && ids[2] == EOT && ids[3] == 0 && ids[76] == 0,
        "%s: \"Hello\" -> n %d ids %d %d %d %d", what, n, ids[0], ids[1], ids[2], ids[3]);
}

int main(void) {
  if (make_tmp_root(root, sizeof root, "clip_tokenizer")) return 1;
  char err[512], p1[700], p2[700];

  /* merges.txt with "#version", without it, and with CRLF line ends: the same tokenizer */
  const char *dirs[3] = {folder("v"), folder("nov"), folder("crlf")};
  write_vocab(dirs[0], -1, 5), write_merges(dirs[0], "#version: 0.2", "\n");
  write_vocab(dirs[1], -1, 5), write_merges(dirs[1], NULL, "\n");
  write_vocab(dirs[2], -1, 5), write_merges(dirs[2], "#version: 0.2", "\r\n");
  clip_tokenizer *t = NULL;
  for (int i = 0; i < 3; i++) {
    clip_tokenizer *u = NULL;
    clip_status s = clip_tokenizer_open(dirs[i], &u, err, sizeof err);
    CHECK(s == CLIP_OK && u, "open %s: %d %s", dirs[i], s, err);
    if (!u) continue;
    check_hello(u, dirs[i]);
    if (i == 0)
      t = u;
    else
      clip_tokenizer_destroy(u);
  }
  if (!t) {
    remove_tmp_root(root);
    fprintf(stderr, "%d of %d checks failed\n", failures, checks);
    return 1;
  }

  /* the layout: start, BPE ids, end, zeros; "hello" merges to one token, "lo" by rank */
  int32_t ids[77];
  int n;
  /* "lo" is one piece: l, o</w>; the merge "l o" makes "lo" (no </w>), which is not this
     pair, so it stays two tokens */
  CHECK(tok(t, "  HELLO\tlo  ", 12, ids, 77, &n) == CLIP_OK && n == 3 && ids[1] == HELLO_W &&
            ids[2] == 'l' && ids[3] == 256 + 'o' && ids[4] == EOT && ids[5] == 0,
        "\"  HELLO\\tlo  \": n %d ids %d %d %d %d", n, ids[1], ids[2], ids[3], ids[4]);
  CHECK(tok(t, "lol", 3, ids, 77, &n) == CLIP_OK && n == 2 && ids[1] == LO && ids[2] == 256 + 'l',
        "\"lol\": n %d ids %d %d", n, ids[1], ids[2]);
  /* NUL bytes are text: a, NUL (a piece of its own), b */
  CHECK(tok(t, "a\0b", 3, ids, 77, &n) == CLIP_OK && n == 3 && ids[1] == 256 + 'a' &&
            ids[2] == 256 + 0 && ids[3] == 256 + 'b',
        "\"a\\0b\": n %d ids %d %d %d", n, ids[1], ids[2], ids[3]);
  /* the special tokens in the text are their ids */
  CHECK(tok(t, "x<|endoftext|>", 14, ids, 77, &n) == CLIP_OK && n == 2 && ids[2] == EOT && ids[3] == EOT,
        "special token in the text: n %d ids %d %d %d", n, ids[1], ids[2], ids[3]);
  /* the empty text, and a NULL text of length 0 */
  CHECK(tok(t, "", 0, ids, 77, &n) == CLIP_OK && n == 0 && ids[0] == SOT && ids[1] == EOT && ids[2] == 0,
        "empty text");
  CHECK(tok(t, NULL, 0, ids, 77, NULL) == CLIP_OK && ids[1] == EOT, "NULL text of length 0");

  /* the cut keeps the end token last and reports the count before it */
  char longtext[401];
  for (int i = 0; i < 200; i++) longtext[2 * i] = 'a', longtext[2 * i + 1] = ' ';
  longtext[400] = 0;
  CHECK(tok(t, longtext, 400, ids, 77, &n) == CLIP_OK && n == 200 && ids[0] == SOT &&
            ids[75] == 256 + 'a' && ids[76] == EOT,
        "cut: n %d ids[75] %d ids[76] %d", n, ids[75], ids[76]);
  int32_t small[3];
  CHECK(tok(t, "a a a", 5, small, 3, &n) == CLIP_OK && n == 3 && small[0] == SOT &&
            small[1] == 256 + 'a' && small[2] == EOT,
        "context 3: %d %d %d", small[0], small[1], small[2]);
  CHECK(tok(t, "a a a", 5, small, 2, &n) == CLIP_OK && n == 3 && small[0] == SOT && small[1] == EOT,
        "context 2: %d %d", small[0], small[1]);

  /* a piece of 100,000 bytes: "hello" x 20,000 is hell o ... hell o hello</w> */
  size_t big = 100000;
  char *h = malloc(big);
  for (size_t i = 0; i < big; i++) h[i] = "hello"[i % 5];
  CHECK(tok(t, h, big, ids, 77, &n) == CLIP_OK && n == 2 * 19999 + 1 && ids[1] == HELL &&
            ids[2] == 'o' && ids[76] == EOT,
        "100,000-byte piece: n %d ids %d %d", n, ids[1], ids[2]);
  free(h);

  /* arguments */
  CHECK(tok(NULL, "a", 1, ids, 77, &n) == CLIP_ERR_INVALID_ARGUMENT, "NULL tokenizer");
  CHECK(tok(t, "a", 1, NULL, 77, &n) == CLIP_ERR_INVALID_ARGUMENT, "NULL ids");
  CHECK(tok(t, "a", 1, ids, 1, &n) == CLIP_ERR_INVALID_ARGUMENT, "context 1");
  CHECK(tok(t, NULL, 3, ids, 77, &n) == CLIP_ERR_INVALID_ARGUMENT, "NULL text of length 3");

  /* invalid UTF-8 is an error and writes nothing */
  static const char *bad[] = {"\xff", "\xc0\x80", "\xe0\x9f\xbf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                              "\xf5\x80\x80\x80", "\xe2\x82", "abc\x80", "\xc3(", "ok \xf0\x9f\x98"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    for (int k = 0; k < 77; k++) ids[k] = -7;
    n = 5;
    clip_status s = tok(t, bad[i], strlen(bad[i]), ids, 77, &n);
    CHECK(s == CLIP_ERR_INVALID_ARGUMENT && ids[0] == -7 && ids[76] == -7 && n == 0,
          "invalid UTF-8 #%zu: status %d ids[0] %d n %d", i, s, ids[0], n);
  }
  /* the longest valid forms are fine */
  CHECK(tok(t, "\xf4\x8f\xbf\xbf\xed\x9f\xbf\xc2\x80", 9, ids, 77, &n) == CLIP_OK, "U+10FFFF U+D7FF U+0080");
  clip_tokenizer_destroy(t);
  clip_tokenizer_destroy(NULL);

  /* clip_tokenizer_open: the folder of a weights file; missing files say which and where */
  snprintf(p1, sizeof p1, "%s/model.safetensors", dirs[1]);
  FILE *f = fopen(p1, "w");
  fclose(f);
  t = NULL;
  CHECK(clip_tokenizer_open(p1, &t, err, sizeof err) == CLIP_OK && t, "open beside %s: %s", p1, err);
  clip_tokenizer_destroy(t);
  const char *empty = folder("empty");
  t = (clip_tokenizer *)1;
  clip_status s = clip_tokenizer_open(empty, &t, err, sizeof err);
  CHECK(s == CLIP_ERR_IO && t == NULL && strstr(err, "no vocab.json beside the weights") &&
            strstr(err, "clipd weights fetch"),
        "empty folder: %d %s", s, err);
  const char *novocab = folder("nomerges");
  write_vocab(novocab, -1, 5);
  s = clip_tokenizer_open(novocab, &t, err, sizeof err);
  CHECK(s == CLIP_ERR_IO && strstr(err, "no merges.txt"), "no merges.txt: %d %s", s, err);
  snprintf(p1, sizeof p1, "%s/nothing-here", root);
  s = clip_tokenizer_open(p1, &t, err, sizeof err);
  CHECK(s == CLIP_ERR_IO && strstr(err, "nothing-here"), "missing path: %d %s", s, err);
  CHECK(clip_tokenizer_open(NULL, &t, err, sizeof err) == CLIP_ERR_INVALID_ARGUMENT, "NULL path");
  CHECK(clip_tokenizer_open(dirs[0], NULL, err, sizeof err) == CLIP_ERR_INVALID_ARGUMENT, "NULL out");
  CHECK(clip_tokenizer_create(NULL, "x", &t, NULL, 0) == CLIP_ERR_INVALID_ARGUMENT, "NULL vocab path");

  /* vocabularies it refuses */
  const char *nobyte = folder("nobyte");
  write_vocab(nobyte, 'q', 5), write_merges(nobyte, "#version: 0.2", "\n");
  s = clip_tokenizer_open(nobyte, &t, err, sizeof err);
  CHECK(s == CLIP_ERR_BAD_WEIGHTS && strstr(err, "lacks the byte token \"q\""), "no 'q': %d %s", s, err);
  const char *nores = folder("nores");
  write_vocab(nores, -1, 3), write_merges(nores, "#version: 0.2", "\n");
  s = clip_tokenizer_open(nores, &t, err, sizeof err);
  CHECK(s == CLIP_ERR_BAD_WEIGHTS && strstr(err, "merges \"hell o</w>\"") && strstr(err, "line 6"),
        "a merge's result missing: %d %s", s, err);
  snprintf(p1, sizeof p1, "%s/vocab.json", nores);
  snprintf(p2, sizeof p2, "%s/merges.txt", nores);
  f = fopen(p1, "w");
  fputs("{\"a\": 1.5}", f);
  fclose(f);
  s = clip_tokenizer_create(p1, p2, &t, err, sizeof err);
  CHECK(s == CLIP_ERR_BAD_WEIGHTS && strstr(err, "is not a token id"), "a fractional id: %d %s", s, err);
  f = fopen(p1, "w");
  fputs("[1, 2]", f);
  fclose(f);
  s = clip_tokenizer_create(p1, p2, &t, err, sizeof err);
  CHECK(s == CLIP_ERR_BAD_WEIGHTS && strstr(err, "not a JSON object"), "an array: %d %s", s, err);

  remove_tmp_root(root);
  if (failures) {
    fprintf(stderr, "%d of %d checks failed\n", failures, checks);
    return 1;
  }
  printf("test_tokenizer: %d checks passed\n", checks);
  return 0;
}
