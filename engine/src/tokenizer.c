/* tokenizer.c: CLIP's byte-level BPE tokenizer (the public clip_tokenizer_* / clip_tokenize
   calls): loads a Hugging Face vocab.json + merges.txt, and turns text into the 77 ids the
   text tower reads. The text clean-up and the pre-tokeniser live in tokenizer_text.c; here
   each piece's UTF-8 bytes are merged by rank exactly as SimpleTokenizer.bpe merges them
   (each round takes the lowest-ranked pair present and merges all its occurrences left to
   right), with a heap so that a very long piece costs n log n, not n^2. See clipengine.h
   for what is matched and where OpenAI's and Hugging Face's tokenizers differ. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clipengine.h"
#include "internal.h"
#include "json.h"
#include "tokenizer.h"

#define VOCAB_MAX_BYTES ((long)64 * 1024 * 1024)
#define MERGES_MAX_BYTES ((long)64 * 1024 * 1024)
#define EOW "</w>"
#define SOT "<|startoftext|>"
#define EOT "<|endoftext|>"

struct clip_tokenizer {
  /* symbols: byte strings, with or without the end-of-word mark */
  int32_t nsym, symcap;
  uint32_t *sym_off, *sym_len;
  uint8_t *sym_eow;
  int32_t *sym_id; /* vocabulary id, -1 when vocab.json has none */
  uint8_t *pool;
  size_t pool_n, pool_cap;
  int32_t *sym_slot; /* open addressing over symbols: symbol index or -1 */
  uint32_t sym_mask;
  int32_t base[256][2]; /* the symbol of byte b, without / with </w> */
  /* merges: (left symbol << 32 | right symbol) -> rank, result symbol */
  uint64_t *m_key;
  int32_t *m_rank, *m_res;
  uint32_t m_mask;
  int32_t sot, eot;
};

/* ---- bytes_to_unicode ---- */

/* GPT-2's reversible map from bytes to printable code points: the printable Latin-1 bytes
   map to themselves, the other 68 to U+0100.. in byte order. */
static void byte_map(uint32_t to_cp[256], int16_t from_cp[324]) {
  int n = 0;
  for (int i = 0; i < 324; i++) from_cp[i] = -1;
  for (int b = 0; b < 256; b++) {
    int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    to_cp[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
    from_cp[to_cp[b]] = (int16_t)b;
  }
}

/* ---- symbols ---- */

static uint32_t hash_bytes(const uint8_t *s, size_t n, int eow) {
  uint32_t h = 2166136261u ^ (uint32_t)eow;
  for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
  return h ^ (h >> 15);
}

/* The symbol of s (eow), created when new; -1 when out of memory or full. */
static int32_t sym_get(clip_tokenizer *t, const uint8_t *s, size_t n, int eow) {
  uint32_t h = hash_bytes(s, n, eow) & t->sym_mask;
  for (;; h = (h + 1) & t->sym_mask) {
    int32_t k = t->sym_slot[h];
    if (k < 0) break;
    if (t->sym_len[k] == n && t->sym_eow[k] == eow && !memcmp(t->pool + t->sym_off[k], s, n))
      return k;
  }
  if (t->nsym == t->symcap) return -1;
  if (t->pool_n + n > t->pool_cap) {
    size_t cap = t->pool_cap * 2 + n;
    uint8_t *p = realloc(t->pool, cap);
    if (!p) return -1;
    t->pool = p;
    t->pool_cap = cap;
  }
  int32_t k = t->nsym++;
  memcpy(t->pool + t->pool_n, s, n);
  t->sym_off[k] = (uint32_t)t->pool_n;
  t->sym_len[k] = (uint32_t)n;
  t->sym_eow[k] = (uint8_t)eow;
  t->sym_id[k] = -1;
  t->pool_n += n;
  t->sym_slot[h] = k;
  return k;
}

/* ---- merges ---- */

static inline uint32_t hash_pair(uint64_t key) {
  key *= 0x9E3779B97F4A7C15ull;
  return (uint32_t)(key >> 32);
}

static int merge_find(const clip_tokenizer *t, int32_t a, int32_t b, int32_t *rank, int32_t *res) {
  uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
  for (uint32_t h = hash_pair(key) & t->m_mask;; h = (h + 1) & t->m_mask) {
    if (t->m_rank[h] < 0) return 0;
    if (t->m_key[h] == key) {
      *rank = t->m_rank[h];
      *res = t->m_res[h];
      return 1;
    }
  }
}

/* Later duplicates take the pair's rank, as dict(zip(merges, range(len(merges)))) does. */
static void merge_put(clip_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t res) {
  uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
  uint32_t h = hash_pair(key) & t->m_mask;
  while (t->m_rank[h] >= 0 && t->m_key[h] != key) h = (h + 1) & t->m_mask;
  t->m_key[h] = key;
  t->m_rank[h] = rank;
  t->m_res[h] = res;
}

/* ---- loading ---- */

static clip_status read_all(const char *path, long max, char **out, size_t *len, char *err,
                            size_t err_len) {
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    clip_format_error(err, err_len, "tokenizer: cannot open %s: %s", path, strerror(errno));
    return CLIP_ERR_IO;
  }
  char *buf = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (n == cap) {
      if ((long)cap > max) {
        fclose(fp);
        free(buf);
        clip_format_error(err, err_len, "tokenizer: %s is larger than %ld bytes", path, max);
        return CLIP_ERR_BAD_WEIGHTS;
      }
      cap = cap ? cap * 2 : 1 << 20;
      char *p = realloc(buf, cap + 1);
      if (!p) {
        fclose(fp);
        free(buf);
        clip_format_error(err, err_len, "tokenizer: out of memory reading %s", path);
        return CLIP_ERR_OUT_OF_MEMORY;
      }
      buf = p;
    }
    size_t r = fread(buf + n, 1, cap - n, fp);
    n += r;
    if (r == 0) break;
  }
  int bad = ferror(fp);
  fclose(fp);
  if (bad) {
    free(buf);
    clip_format_error(err, err_len, "tokenizer: cannot read %s", path);
    return CLIP_ERR_IO;
  }
  if ((long)n > max) {
    free(buf);
    clip_format_error(err, err_len, "tokenizer: %s is larger than %ld bytes", path, max);
    return CLIP_ERR_BAD_WEIGHTS;
  }
  buf[n] = 0;
  *out = buf;
  *len = n;
  return CLIP_OK;
}

/* A vocabulary string (bytes_to_unicode characters, maybe ending in </w>) -> its bytes in
   out (room for len bytes) and eow. 0 when it holds a character outside the byte map (no
   text ever makes it). */
static int decode_token(const char *s, size_t len, const int16_t from_cp[324], uint8_t *out,
                        size_t *n, int *eow) {
  *eow = 0;
  if (len >= 4 && !memcmp(s + len - 4, EOW, 4)) {
    *eow = 1;
    len -= 4;
  }
  size_t i = 0, k = 0;
  while (i < len) {
    uint8_t b = (uint8_t)s[i];
    uint32_t c;
    if (b < 0x80) {
      c = b, i += 1;
    } else if ((b & 0xE0) == 0xC0 && i + 1 < len) {
      c = (uint32_t)(b & 0x1F) << 6 | ((uint8_t)s[i + 1] & 0x3F), i += 2;
    } else {
      return 0; /* three-byte characters and more lie outside the map (< U+0144) */
    }
    if (c >= 324 || from_cp[c] < 0) return 0;
    out[k++] = (uint8_t)from_cp[c];
  }
  *n = k;
  return k > 0;
}

static void tokenizer_free(clip_tokenizer *t) {
  if (!t) return;
  free(t->sym_off);
  free(t->sym_len);
  free(t->sym_eow);
  free(t->sym_id);
  free(t->pool);
  free(t->sym_slot);
  free(t->m_key);
  free(t->m_rank);
  free(t->m_res);
  free(t);
}

void clip_tokenizer_destroy(clip_tokenizer *t) { tokenizer_free(t); }

static uint32_t pow2_above(size_t n) {
  uint32_t c = 1024;
  while (c < n * 2) c *= 2;
  return c;
}

static int is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' ||
         (c >= 0x1C && c <= 0x1F);
}

static clip_status build(clip_tokenizer *t, const clip_json *vocab, const char *vocab_path,
                         char *merges, size_t merges_len, const char *merges_path, char *err,
                         size_t err_len) {
  uint32_t to_cp[256];
  int16_t from_cp[324];
  byte_map(to_cp, from_cp);

  size_t lines = 1;
  for (size_t i = 0; i < merges_len; i++) lines += merges[i] == '\n';
  size_t maxsym = 512 + vocab->count + 3 * lines;
  if (maxsym > 0x3FFFFFFF) {
    clip_format_error(err, err_len, "tokenizer: %s and %s are too large", vocab_path, merges_path);
    return CLIP_ERR_BAD_WEIGHTS;
  }
  t->symcap = (int32_t)maxsym;
  t->sym_off = malloc(maxsym * sizeof *t->sym_off);
  t->sym_len = malloc(maxsym * sizeof *t->sym_len);
  t->sym_eow = malloc(maxsym);
  t->sym_id = malloc(maxsym * sizeof *t->sym_id);
  uint32_t scap = pow2_above(maxsym);
  t->sym_slot = malloc(scap * sizeof *t->sym_slot);
  t->sym_mask = scap - 1;
  uint32_t mcap = pow2_above(lines);
  t->m_key = malloc(mcap * sizeof *t->m_key);
  t->m_rank = malloc(mcap * sizeof *t->m_rank);
  t->m_res = malloc(mcap * sizeof *t->m_res);
  t->m_mask = mcap - 1;
  t->pool_cap = 1 << 16;
  t->pool = malloc(t->pool_cap);
  if (!t->sym_off || !t->sym_len || !t->sym_eow || !t->sym_id || !t->sym_slot || !t->m_key ||
      !t->m_rank || !t->m_res || !t->pool)
    goto nomem;
  memset(t->sym_slot, 0xFF, scap * sizeof *t->sym_slot);
  memset(t->m_rank, 0xFF, mcap * sizeof *t->m_rank);

  for (int b = 0; b < 256; b++) {
    uint8_t byte = (uint8_t)b;
    for (int e = 0; e < 2; e++)
      if ((t->base[b][e] = sym_get(t, &byte, 1, e)) < 0) goto nomem;
  }

  /* vocab.json: token -> id (a later duplicate key wins, as in a Python dict) */
  t->sot = t->eot = -1;
  size_t maxkey = 0;
  for (const clip_json *m = vocab->child; m; m = m->next)
    if (m->key_len > maxkey) maxkey = m->key_len;
  uint8_t *tmp = malloc(maxkey + merges_len + 16);
  if (!tmp) goto nomem;
  for (const clip_json *m = vocab->child; m; m = m->next) {
    if (m->type != CLIP_JSON_NUMBER || !m->is_integer || m->integer < 0 ||
        m->integer > INT32_MAX) {
      clip_format_error(err, err_len, "tokenizer: %s: the value of \"%.*s\" is not a token id (a non-negative integer)",
                        vocab_path, (int)(m->key_len > 60 ? 60 : m->key_len), m->key);
      free(tmp);
      return CLIP_ERR_BAD_WEIGHTS;
    }
    int32_t id = (int32_t)m->integer;
    if (m->key_len == strlen(SOT) && !memcmp(m->key, SOT, m->key_len)) t->sot = id;
    if (m->key_len == strlen(EOT) && !memcmp(m->key, EOT, m->key_len)) t->eot = id;
    size_t n;
    int eow;
    if (!decode_token(m->key, m->key_len, from_cp, tmp, &n, &eow)) continue;
    int32_t k = sym_get(t, tmp, n, eow);
    if (k < 0) {
      free(tmp);
      goto nomem;
    }
    t->sym_id[k] = id;
  }
  if (t->sot < 0 || t->eot < 0) {
    free(tmp);
    clip_format_error(err, err_len, "tokenizer: %s has no %s token; it is not a CLIP vocabulary",
                      vocab_path, t->sot < 0 ? SOT : EOT);
    return CLIP_ERR_BAD_WEIGHTS;
  }
  for (int b = 0; b < 256; b++) {
    for (int e = 0; e < 2; e++) {
      if (t->sym_id[t->base[b][e]] < 0) {
        free(tmp);
        uint8_t u[4];
        int l = clip_utf8_put(to_cp[b], u);
        clip_format_error(err, err_len, "tokenizer: %s lacks the byte token \"%.*s%s\" (byte 0x%02x); it is not a byte-level BPE vocabulary",
                          vocab_path, l, (const char *)u, e ? EOW : "", b);
        return CLIP_ERR_BAD_WEIGHTS;
      }
    }
  }

  /* merges.txt: one "left right" pair a line, by rank; a first "#version" line is skipped */
  size_t pos = 0, line = 0;
  int32_t rank = 0;
  while (pos < merges_len) {
    size_t end = pos;
    while (end < merges_len && merges[end] != '\n') end++;
    line++;
    const char *s = merges + pos;
    size_t len = end - pos;
    pos = end + 1;
    if (line == 1 && len >= 8 && !memcmp(s, "#version", 8)) continue;
    const char *f[3];
    size_t fl[3];
    int nf = 0;
    for (size_t i = 0; i < len && nf < 3;) {
      while (i < len && is_ascii_space(s[i])) i++;
      if (i >= len) break;
      size_t st = i;
      while (i < len && !is_ascii_space(s[i])) i++;
      f[nf] = s + st;
      fl[nf++] = i - st;
    }
    if (nf != 2) continue; /* an empty line, or not a pair: never matches (as in Python) */
    size_t na, nb;
    int ea, eb;
    if (!decode_token(f[0], fl[0], from_cp, tmp, &na, &ea) || ea ||
        !decode_token(f[1], fl[1], from_cp, tmp + na, &nb, &eb)) {
      rank++;
      continue; /* pieces no text makes */
    }
    int32_t a = sym_get(t, tmp, na, 0), b = sym_get(t, tmp + na, nb, eb),
            r = sym_get(t, tmp, na + nb, eb);
    if (a < 0 || b < 0 || r < 0) {
      free(tmp);
      goto nomem;
    }
    if (t->sym_id[r] < 0) {
      free(tmp);
      clip_format_error(err, err_len, "tokenizer: %s line %zu merges \"%.*s %.*s\", but %s has no token \"%.*s%.*s\"; the two files do not belong together",
                        merges_path, line, (int)(fl[0] > 40 ? 40 : fl[0]), f[0], (int)(fl[1] > 40 ? 40 : fl[1]), f[1],
                        vocab_path, (int)(fl[0] > 40 ? 40 : fl[0]), f[0], (int)(fl[1] > 40 ? 40 : fl[1]), f[1]);
      return CLIP_ERR_BAD_WEIGHTS;
    }
    merge_put(t, a, b, rank++, r);
  }
  free(tmp);
  return CLIP_OK;
nomem:
  clip_format_error(err, err_len, "tokenizer: out of memory loading %s", vocab_path);
  return CLIP_ERR_OUT_OF_MEMORY;
}

clip_status clip_tokenizer_create(const char *vocab_json, const char *merges_txt,
                                  clip_tokenizer **out, char *err, size_t err_len) {
  if (err && err_len) err[0] = 0;
  if (!out) {
    clip_format_error(err, err_len, "clip_tokenizer_create: out is NULL");
    return CLIP_ERR_INVALID_ARGUMENT;
  }
  *out = NULL;
  if (!vocab_json || !*vocab_json || !merges_txt || !*merges_txt) {
    clip_format_error(err, err_len, "clip_tokenizer_create: the vocab.json and merges.txt paths are required");
    return CLIP_ERR_INVALID_ARGUMENT;
  }
  char *vtext = NULL, *mtext = NULL;
  size_t vlen, mlen;
  clip_status s = read_all(vocab_json, VOCAB_MAX_BYTES, &vtext, &vlen, err, err_len);
  if (s != CLIP_OK) return s;
  s = read_all(merges_txt, MERGES_MAX_BYTES, &mtext, &mlen, err, err_len);
  if (s != CLIP_OK) {
    free(vtext);
    return s;
  }
  clip_json_doc doc = {0};
  char jerr[160];
  int jr = clip_json_parse(vtext, vlen, 8, &doc, jerr, sizeof jerr);
  if (jr != CLIP_JSON_OK || doc.root->type != CLIP_JSON_OBJECT) {
    if (jr == CLIP_JSON_NOMEM) {
      clip_format_error(err, err_len, "tokenizer: out of memory parsing %s", vocab_json);
      s = CLIP_ERR_OUT_OF_MEMORY;
    } else {
      clip_format_error(err, err_len, "tokenizer: %s is not a JSON object of tokens and ids%s%s",
                        vocab_json, jr ? ": " : "", jr ? jerr : "");
      s = CLIP_ERR_BAD_WEIGHTS;
    }
    clip_json_doc_free(&doc);
    free(vtext);
    free(mtext);
    return s;
  }
  clip_tokenizer *t = calloc(1, sizeof *t);
  if (!t) {
    s = CLIP_ERR_OUT_OF_MEMORY;
    clip_format_error(err, err_len, "tokenizer: out of memory");
  } else {
    s = build(t, doc.root, vocab_json, mtext, mlen, merges_txt, err, err_len);
  }
  clip_json_doc_free(&doc);
  free(vtext);
  free(mtext);
  if (s != CLIP_OK) {
    tokenizer_free(t);
    return s;
  }
  *out = t;
  return CLIP_OK;
}

clip_status clip_tokenizer_open(const char *weights_path, clip_tokenizer **out, char *err,
                                size_t err_len) {
  if (err && err_len) err[0] = 0;
  if (!out) {
    clip_format_error(err, err_len, "clip_tokenizer_open: out is NULL");
    return CLIP_ERR_INVALID_ARGUMENT;
  }
  *out = NULL;
  if (!weights_path || !*weights_path) {
    clip_format_error(err, err_len, "clip_tokenizer_open: weights_path is empty");
    return CLIP_ERR_INVALID_ARGUMENT;
  }
  struct stat st;
  if (stat(weights_path, &st) != 0) {
    clip_format_error(err, err_len, "tokenizer: cannot open %s: %s", weights_path, strerror(errno));
    return CLIP_ERR_IO;
  }
  size_t n = strlen(weights_path);
  char *dir = malloc(n + 16), *v = malloc(n + 32), *m = malloc(n + 32);
  if (!dir || !v || !m) {
    free(dir), free(v), free(m);
    clip_format_error(err, err_len, "tokenizer: out of memory");
    return CLIP_ERR_OUT_OF_MEMORY;
  }
  memcpy(dir, weights_path, n + 1);
  if (!S_ISDIR(st.st_mode)) {
    char *slash = strrchr(dir, '/');
    if (!slash)
      strcpy(dir, ".");
    else if (slash == dir)
      dir[1] = 0;
    else
      *slash = 0;
  }
  sprintf(v, "%s/vocab.json", dir);
  sprintf(m, "%s/merges.txt", dir);
  clip_status s;
  if (stat(v, &st) != 0 || stat(m, &st) != 0) {
    clip_format_error(err, err_len, "tokenizer: no %s beside the weights in %s: `clipd weights fetch` downloads vocab.json and merges.txt with the weights, or copy both from the model's Hugging Face repository into that folder",
                      stat(v, &st) != 0 ? "vocab.json" : "merges.txt", dir);
    s = CLIP_ERR_IO;
  } else {
    s = clip_tokenizer_create(v, m, out, err, err_len);
  }
  free(dir), free(v), free(m);
  return s;
}

/* ---- BPE ---- */

typedef struct heap_item {
  int32_t rank, pos, left, right, res;
} heap_item;

/* The per-call working memory, on the stack for pieces up to INLINE_BYTES bytes. */
#define INLINE_BYTES 64
typedef struct bpe_work {
  int32_t *sym, *next, *prev;
  heap_item *heap, *pending;
  int32_t sym_i[INLINE_BYTES], next_i[INLINE_BYTES], prev_i[INLINE_BYTES];
  heap_item heap_i[3 * INLINE_BYTES], pending_i[2 * INLINE_BYTES];
  size_t cap;
  void *alloc;
} bpe_work;

static int work_reserve(bpe_work *w, size_t n) {
  if (n <= w->cap) return 0;
  free(w->alloc);
  w->alloc = NULL;
  size_t cap = n * 2;
  size_t bytes = cap * (3 * sizeof(int32_t) + sizeof(heap_item) * 5);
  char *p = malloc(bytes);
  if (!p) {
    w->cap = 0;
    return -1;
  }
  w->alloc = p;
  w->sym = (int32_t *)p;
  w->next = w->sym + cap;
  w->prev = w->next + cap;
  w->heap = (heap_item *)(w->prev + cap);
  w->pending = w->heap + 3 * cap; /* the heap holds at most n - 1 + 2 merges' pairs */
  w->cap = cap;
  return 0;
}

static inline int item_less(const heap_item *a, const heap_item *b) {
  return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(heap_item *h, size_t *n, heap_item x) {
  size_t i = (*n)++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!item_less(&x, &h[p])) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = x;
}

static heap_item heap_pop(heap_item *h, size_t *n) {
  heap_item top = h[0], x = h[--(*n)];
  size_t i = 0, m = *n;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= m) break;
    if (c + 1 < m && item_less(&h[c + 1], &h[c])) c++;
    if (!item_less(&h[c], &x)) break;
    h[i] = h[c];
    i = c;
  }
  if (m) h[i] = x;
  return top;
}

/* Merges the symbols of bytes[0..n) (the last with </w>); emit() receives the ids. */
typedef struct emitter {
  int32_t *ids;
  int room;    /* BPE ids that still fit */
  long count;  /* BPE ids in all */
} emitter;

static inline void emit(emitter *e, int32_t id) {
  if (e->count < e->room) e->ids[e->count] = id;
  e->count++;
}

static int bpe(const clip_tokenizer *t, const uint8_t *bytes, size_t n, bpe_work *w,
               emitter *e) {
  if (n == 1) {
    emit(e, t->sym_id[t->base[bytes[0]][1]]);
    return 0;
  }
  if (work_reserve(w, n)) return -1;
  int32_t *sym = w->sym, *next = w->next, *prev = w->prev;
  heap_item *heap = w->heap, *pending = w->pending;
  size_t hn = 0;
  for (size_t i = 0; i < n; i++) {
    sym[i] = t->base[bytes[i]][i == n - 1];
    next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    prev[i] = (int32_t)i - 1;
  }
  for (size_t i = 0; i + 1 < n; i++) {
    heap_item it = {0, (int32_t)i, sym[i], sym[i + 1], 0};
    if (merge_find(t, it.left, it.right, &it.rank, &it.res)) heap_push(heap, &hn, it);
  }
  /* Each round merges every occurrence of the lowest-ranked pair, leftmost first; the pairs
     a round makes join the heap after it, as Python recomputes its pairs per round. */
  while (hn) {
    int32_t r = heap[0].rank;
    size_t np = 0;
    while (hn && heap[0].rank == r) {
      heap_item it = heap_pop(heap, &hn);
      int32_t p = it.pos, q = next[p];
      if (sym[p] != it.left || q < 0 || sym[q] != it.right || prev[p] == -2) continue;
      sym[p] = it.res;
      next[p] = next[q];
      if (next[q] >= 0) prev[next[q]] = p;
      prev[q] = -2; /* gone */
      sym[q] = -1;
      if (prev[p] >= 0) pending[np++] = (heap_item){0, prev[p], sym[prev[p]], sym[p], 0};
      if (next[p] >= 0) pending[np++] = (heap_item){0, p, sym[p], sym[next[p]], 0};
    }
    for (size_t k = 0; k < np; k++) {
      heap_item it = pending[k];
      if (sym[it.pos] != it.left || next[it.pos] < 0 || sym[next[it.pos]] != it.right) continue;
      if (merge_find(t, it.left, it.right, &it.rank, &it.res)) heap_push(heap, &hn, it);
    }
  }
  for (int32_t p = 0; p >= 0; p = next[p]) emit(e, t->sym_id[sym[p]]);
  return 0;
}

clip_status clip_tokenize(const clip_tokenizer *t, const char *text, size_t len, int32_t *ids,
                          int context_length, int *n_tokens) {
  if (n_tokens) *n_tokens = 0;
  if (!t || !ids || context_length < 2 || (!text && len)) return CLIP_ERR_INVALID_ARGUMENT;
  clip_tok_cps a, b, *clean = NULL;
  clip_tok_cps_init(&a);
  clip_tok_cps_init(&b);
  size_t bad_at = 0;
  clip_status s = CLIP_OK;
  int r = clip_tok_clean(text ? text : "", len, &a, &b, &clean, &bad_at);
  if (r) {
    s = r == CLIP_TOK_TEXT_BAD_UTF8 ? CLIP_ERR_INVALID_ARGUMENT : CLIP_ERR_OUT_OF_MEMORY;
    goto done;
  }
  emitter e = {ids + 1, context_length - 2, 0};
  bpe_work w;
  w.sym = w.sym_i, w.next = w.next_i, w.prev = w.prev_i, w.heap = w.heap_i, w.pending = w.pending_i;
  w.cap = INLINE_BYTES;
  w.alloc = NULL;
  uint8_t piece_i[256], *piece = piece_i;
  size_t piece_cap = sizeof piece_i;
  size_t pos = 0, st, en;
  while (clip_tok_next_piece(clean->v, clean->n, &pos, &st, &en)) {
    if ((en - st) * 4 > piece_cap) {
      if (piece != piece_i) free(piece);
      piece_cap = (en - st) * 4;
      piece = malloc(piece_cap);
      if (!piece) {
        s = CLIP_ERR_OUT_OF_MEMORY;
        break;
      }
    }
    size_t n = 0;
    for (size_t i = st; i < en; i++) n += (size_t)clip_utf8_put(clean->v[i], piece + n);
    if (n == 15 && !memcmp(piece, SOT, 15)) {
      emit(&e, t->sot);
    } else if (n == 13 && !memcmp(piece, EOT, 13)) {
      emit(&e, t->eot);
    } else if (bpe(t, piece, n, &w, &e)) {
      s = CLIP_ERR_OUT_OF_MEMORY;
      break;
    }
  }
  if (piece != piece_i) free(piece);
  free(w.alloc);
  if (s == CLIP_OK) {
    int kept = e.count < e.room ? (int)e.count : e.room;
    ids[0] = t->sot;
    ids[1 + kept] = t->eot;
    for (int i = 2 + kept; i < context_length; i++) ids[i] = 0;
    if (n_tokens) *n_tokens = e.count > INT32_MAX ? INT32_MAX : (int)e.count;
  }
done:
  clip_tok_cps_free(&a);
  clip_tok_cps_free(&b);
  return s;
}
