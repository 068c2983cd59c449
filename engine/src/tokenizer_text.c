/* tokenizer_text.c: the text stage of the CLIP tokenizer, Python's behaviour code point for
   code point: strict UTF-8 decoding, unicodedata.normalize("NFC"), html.unescape (Python
   3.11's rules: numeric references, the HTML5 named entities with the longest-prefix rule for
   the legacy names without ';'), str.strip, regex's \s+ -> ' ', str.lower (full mappings and
   the final sigma), and the pre-tokenising pattern of OpenAI's SimpleTokenizer
     <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
   with IGNORECASE, as regex.findall runs it. The tables come from tokenizer_unicode.c. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "tokenizer_unicode.h"

/* ---- code point buffers ---- */

void clip_tok_cps_init(clip_tok_cps *b) {
  b->v = b->inline_v;
  b->n = 0;
  b->cap = CLIP_TOK_INLINE;
}

void clip_tok_cps_free(clip_tok_cps *b) {
  if (b->v != b->inline_v) free(b->v);
  clip_tok_cps_init(b);
}

static int reserve(clip_tok_cps *b, size_t need) {
  if (need <= b->cap) return 0;
  size_t cap = b->cap;
  while (cap < need) {
    if (cap > ((size_t)-1) / 8) return -1;
    cap *= 2;
  }
  uint32_t *v;
  if (b->v == b->inline_v) {
    v = malloc(cap * sizeof *v);
    if (v) memcpy(v, b->v, b->n * sizeof *v);
  } else {
    v = realloc(b->v, cap * sizeof *v);
  }
  if (!v) return -1;
  b->v = v;
  b->cap = cap;
  return 0;
}

static inline int push(clip_tok_cps *b, uint32_t c) {
  if (b->n == b->cap && reserve(b, b->n + 1)) return -1;
  b->v[b->n++] = c;
  return 0;
}

/* ---- UTF-8 ---- */

static int decode_utf8(const uint8_t *s, size_t len, clip_tok_cps *out, size_t *bad_at) {
  out->n = 0;
  if (reserve(out, len)) return CLIP_TOK_TEXT_NOMEM;
  uint32_t *o = out->v;
  size_t i = 0, n = 0;
  while (i < len) {
    uint8_t b = s[i];
    if (b < 0x80) {
      o[n++] = b;
      i++;
      continue;
    }
    uint32_t c;
    int k;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      c = b & 0x1F, k = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
      c = b & 0x0F, k = 2;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F; /* no surrogates */
    } else if (b >= 0xF0 && b <= 0xF4) {
      c = b & 0x07, k = 3;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    } else {
      *bad_at = i;
      return CLIP_TOK_TEXT_BAD_UTF8;
    }
    if (len - i <= (size_t)k) {
      *bad_at = i;
      return CLIP_TOK_TEXT_BAD_UTF8;
    }
    for (int j = 1; j <= k; j++) {
      uint8_t t = s[i + j];
      if (t < (j == 1 ? lo : 0x80) || t > (j == 1 ? hi : 0xBF)) {
        *bad_at = i;
        return CLIP_TOK_TEXT_BAD_UTF8;
      }
      c = (c << 6) | (t & 0x3F);
    }
    o[n++] = c;
    i += (size_t)k + 1;
  }
  out->n = n;
  return CLIP_TOK_TEXT_OK;
}

/* ---- NFC ---- */

#define SBASE 0xAC00u
#define LBASE 0x1100u
#define VBASE 0x1161u
#define TBASE 0x11A7u
#define LCOUNT 19u
#define VCOUNT 21u
#define TCOUNT 28u
#define NCOUNT (VCOUNT * TCOUNT)
#define SCOUNT (LCOUNT * NCOUNT)

static inline int ccc(uint32_t c) { return clip_tok_prop(c) >> 8; }

static int find_u32(const uint32_t *a, int n, uint32_t key) {
  int lo = 0, hi = n - 1;
  while (lo <= hi) {
    int mid = (lo + hi) >> 1;
    if (a[mid] < key)
      lo = mid + 1;
    else if (a[mid] > key)
      hi = mid - 1;
    else
      return mid;
  }
  return -1;
}

static uint32_t compose(uint32_t a, uint32_t b) {
  if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
    return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
  if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE &&
      b < TBASE + TCOUNT)
    return a + (b - TBASE);
  uint64_t key = (uint64_t)a << 21 | b;
  int lo = 0, hi = clip_tok_comp_count - 1;
  while (lo <= hi) {
    int mid = (lo + hi) >> 1;
    if (clip_tok_comp_pair[mid] < key)
      lo = mid + 1;
    else if (clip_tok_comp_pair[mid] > key)
      hi = mid - 1;
    else
      return clip_tok_comp_to[mid];
  }
  return 0;
}

/* in -> out = NFC(in). */
static int nfc(const clip_tok_cps *in, clip_tok_cps *out) {
  out->n = 0;
  /* canonical decomposition */
  for (size_t i = 0; i < in->n; i++) {
    uint32_t c = in->v[i];
    if (c >= SBASE && c < SBASE + SCOUNT) {
      uint32_t s = c - SBASE, t = s % TCOUNT;
      if (push(out, LBASE + s / NCOUNT) || push(out, VBASE + (s % NCOUNT) / TCOUNT)) return -1;
      if (t && push(out, TBASE + t)) return -1;
      continue;
    }
    int k = c >= 0xC0 ? find_u32(clip_tok_decomp_from, clip_tok_decomp_count, c) : -1;
    if (k < 0) {
      if (push(out, c)) return -1;
      continue;
    }
    uint32_t at = clip_tok_decomp_at[k];
    for (uint32_t j = 0; j < (at & 15); j++)
      if (push(out, clip_tok_decomp_pool[(at >> 4) + j])) return -1;
  }
  /* canonical ordering: stable sort of each run of non-starters by combining class */
  uint32_t *v = out->v;
  size_t n = out->n;
  for (size_t i = 1; i < n; i++) {
    int ci = ccc(v[i]);
    if (!ci) continue;
    size_t j = i;
    uint32_t c = v[i];
    while (j > 0 && ccc(v[j - 1]) > ci) {
      v[j] = v[j - 1];
      j--;
    }
    v[j] = c;
  }
  /* canonical composition */
  size_t w = 0;
  long starter = -1;
  int last_ccc = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t c = v[i];
    int cc = ccc(c);
    if (starter >= 0) {
      int adjacent = (long)w - 1 == starter;
      if (adjacent || (last_ccc != 0 && last_ccc < cc)) {
        uint32_t p = compose(v[starter], c);
        if (p) {
          v[starter] = p;
          continue;
        }
      }
    }
    if (cc == 0) starter = (long)w;
    last_ccc = cc;
    v[w++] = c;
  }
  out->n = w;
  return 0;
}

/* ---- html.unescape ---- */

static int entity_lookup(const uint32_t *s, size_t n) {
  char name[40];
  if (n == 0 || n >= sizeof name) return -1;
  for (size_t i = 0; i < n; i++) {
    if (s[i] >= 0x80) return -1;
    name[i] = (char)s[i];
  }
  name[n] = 0;
  int lo = 0, hi = clip_tok_entity_count - 1;
  while (lo <= hi) {
    int mid = (lo + hi) >> 1;
    int d = strcmp(clip_tok_entities[mid].name, name);
    if (d < 0)
      lo = mid + 1;
    else if (d > 0)
      hi = mid - 1;
    else
      return mid;
  }
  return -1;
}

static int push_entity(clip_tok_cps *out, int k) {
  if (push(out, clip_tok_entities[k].cp[0])) return -1;
  if (clip_tok_entities[k].cp[1] && push(out, clip_tok_entities[k].cp[1])) return -1;
  return 0;
}

static inline int is_digit(uint32_t c) { return c >= '0' && c <= '9'; }
static inline int hex_val(uint32_t c) {
  if (c >= '0' && c <= '9') return (int)(c - '0');
  if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
  if (c >= 'A' && c <= 'F') return (int)(c - 'A' + 10);
  return -1;
}

/* html._replace_charref for a numeric reference of value num (saturated above 0x10FFFF). */
static int push_charref(clip_tok_cps *out, uint32_t num) {
  int k = find_u32(clip_tok_charref_from, clip_tok_charref_count, num);
  if (k >= 0) return push(out, clip_tok_charref_to[k]);
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return push(out, 0xFFFD);
  if (find_u32(clip_tok_invalid_cp, clip_tok_invalid_cp_count, num) >= 0) return 0;
  return push(out, num);
}

/* out = html.unescape(in): re.sub of &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?) */
static int unescape(const clip_tok_cps *in, clip_tok_cps *out) {
  const uint32_t *s = in->v;
  size_t n = in->n;
  out->n = 0;
  if (reserve(out, n)) return -1; /* a reference never grows: no reallocation below */
  size_t i = 0;
  while (i < n) {
    uint32_t c = s[i];
    if (c != '&') {
      out->v[out->n++] = c;
      i++;
      continue;
    }
    size_t j = i + 1;
    if (j < n && s[j] == '#') {
      size_t k = j + 1;
      uint32_t num = 0;
      if (k < n && is_digit(s[k])) {
        for (; k < n && is_digit(s[k]); k++)
          num = num > 0x10FFFF ? num : num * 10 + (s[k] - '0');
      } else if (k + 1 < n && (s[k] == 'x' || s[k] == 'X') && hex_val(s[k + 1]) >= 0) {
        for (k++; k < n && hex_val(s[k]) >= 0; k++)
          num = num > 0x10FFFF ? num : num * 16 + (uint32_t)hex_val(s[k]);
      } else {
        out->v[out->n++] = c; /* "&#" without digits: no reference */
        i++;
        continue;
      }
      if (k < n && s[k] == ';') k++;
      if (push_charref(out, num)) return -1;
      i = k;
      continue;
    }
    size_t k = j;
    while (k < n && k - j < 32) {
      uint32_t d = s[k];
      if (d == '\t' || d == '\n' || d == '\f' || d == ' ' || d == '<' || d == '&' || d == '#' ||
          d == ';')
        break;
      k++;
    }
    if (k == j) {
      out->v[out->n++] = c;
      i++;
      continue;
    }
    if (k < n && s[k] == ';') k++;
    /* the whole name (with its ';'), else the longest prefix of 2+ characters */
    int e = entity_lookup(s + j, k - j);
    if (e >= 0) {
      if (push_entity(out, e)) return -1;
      i = k;
      continue;
    }
    size_t x;
    for (x = k - j - 1; x >= 2; x--) {
      e = entity_lookup(s + j, x);
      if (e >= 0) break;
    }
    if (e >= 0) {
      if (push_entity(out, e)) return -1;
      for (size_t m = j + x; m < k; m++)
        if (push(out, s[m])) return -1;
    } else {
      for (size_t m = i; m < k; m++)
        if (push(out, s[m])) return -1;
    }
    i = k;
  }
  return 0;
}

/* ---- whitespace and case ---- */

static inline int py_space(uint32_t c) { return (clip_tok_prop(c) & CLIP_TOK_PY_SPACE) != 0; }
static inline int re_space(uint32_t c) { return (clip_tok_prop(c) & CLIP_TOK_RE_SPACE) != 0; }

/* str.strip(), then regex.sub(r"\s+", " "), then str.strip(), in place. */
static void clean_whitespace(clip_tok_cps *b) {
  uint32_t *v = b->v;
  size_t lo = 0, hi = b->n;
  while (lo < hi && py_space(v[lo])) lo++;
  while (hi > lo && py_space(v[hi - 1])) hi--;
  size_t w = 0;
  for (size_t i = lo; i < hi;) {
    if (re_space(v[i])) {
      while (i < hi && re_space(v[i])) i++;
      v[w++] = ' ';
    } else {
      v[w++] = v[i++];
    }
  }
  size_t a = 0;
  while (a < w && py_space(v[a])) a++;
  while (w > a && py_space(v[w - 1])) w--;
  if (a) memmove(v, v + a, (w - a) * sizeof *v);
  b->n = w - a;
}

/* CPython's handle_capital_sigma: final when a cased letter precedes (skipping
   case-ignorables) and none follows (likewise). */
static uint32_t lower_sigma(const uint32_t *s, size_t n, size_t i) {
  size_t j = i;
  uint16_t p = 0;
  while (j > 0) {
    p = clip_tok_prop(s[j - 1]);
    if (!(p & CLIP_TOK_CASE_IGN)) break;
    j--;
  }
  int final = j > 0 && (p & CLIP_TOK_CASED);
  if (final) {
    for (j = i + 1; j < n; j++) {
      p = clip_tok_prop(s[j]);
      if (!(p & CLIP_TOK_CASE_IGN)) break;
    }
    final = j == n || !(p & CLIP_TOK_CASED);
  }
  return final ? 0x3C2 : 0x3C3;
}

/* out = in.lower() */
static int lower(const clip_tok_cps *in, clip_tok_cps *out) {
  out->n = 0;
  if (reserve(out, in->n)) return -1;
  for (size_t i = 0; i < in->n; i++) {
    uint32_t c = in->v[i];
    if (c < 0x80) {
      if (c >= 'A' && c <= 'Z') c += 32;
    } else if (c == 0x3A3) {
      c = lower_sigma(in->v, in->n, i);
    } else {
      int k = find_u32(clip_tok_lowerx_from, clip_tok_lowerx_count, c);
      if (k >= 0) {
        for (int j = 0; j < 3 && clip_tok_lowerx_to[3 * k + j]; j++)
          if (push(out, clip_tok_lowerx_to[3 * k + j])) return -1;
        continue;
      }
      k = find_u32(clip_tok_lower_from, clip_tok_lower_count, c);
      if (k >= 0) c = clip_tok_lower_to[k];
    }
    if (push(out, c)) return -1;
  }
  return 0;
}

int clip_tok_clean(const char *text, size_t len, clip_tok_cps *a, clip_tok_cps *b,
                   clip_tok_cps **result, size_t *bad_at) {
  clip_tok_cps *cur = a, *other = b, *t;
  int r = decode_utf8((const uint8_t *)text, len, cur, bad_at);
  if (r) return r;
  int unsafe = 0, amp = 0;
  for (size_t i = 0; i < cur->n; i++) {
    uint32_t c = cur->v[i];
    if (c == '&') amp = 1;
    if (c >= 0x80 && (clip_tok_prop(c) & CLIP_TOK_NFC_UNSAFE)) unsafe = 1;
  }
  /* ftfy.fix_text's last step (and all this implements of it): NFC */
  if (unsafe) {
    if (nfc(cur, other)) return CLIP_TOK_TEXT_NOMEM;
    t = cur, cur = other, other = t;
  }
  /* html.unescape(html.unescape(text)) */
  for (int pass = 0; amp && pass < 2; pass++) {
    if (unescape(cur, other)) return CLIP_TOK_TEXT_NOMEM;
    t = cur, cur = other, other = t;
  }
  clean_whitespace(cur);
  if (lower(cur, other)) return CLIP_TOK_TEXT_NOMEM;
  *result = other;
  return CLIP_TOK_TEXT_OK;
}

/* ---- the pre-tokenising pattern ---- */

/* Whether s[i..) starts with the ASCII literal lit under regex's IGNORECASE (letters match
   their case variants: U+017F long s matches 's', U+212A Kelvin 'k'). */
static int match_literal(const uint32_t *s, size_t n, size_t i, const char *lit) {
  for (; *lit; lit++, i++) {
    if (i >= n) return 0;
    uint32_t c = s[i], l = (uint8_t)*lit;
    if (c == l) continue;
    if (l >= 'a' && l <= 'z') {
      if (c == l - 32) continue;
      if (c >= 0x80) {
        int k = find_u32(clip_tok_fold_from, clip_tok_fold_count, c);
        if (k >= 0 && clip_tok_fold_to[k] == l) continue;
      }
    }
    return 0;
  }
  return 1;
}

static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};

int clip_tok_next_piece(const uint32_t *s, size_t n, size_t *pos, size_t *start, size_t *end) {
  size_t i = *pos;
  while (i < n) {
    uint32_t c = s[i];
    if (c == '<') {
      if (match_literal(s, n, i, "<|startoftext|>")) {
        *start = i, *end = *pos = i + 15;
        return 1;
      }
      if (match_literal(s, n, i, "<|endoftext|>")) {
        *start = i, *end = *pos = i + 13;
        return 1;
      }
    } else if (c == '\'') {
      for (size_t k = 0; k < sizeof contractions / sizeof *contractions; k++) {
        if (match_literal(s, n, i, contractions[k])) {
          size_t l = strlen(contractions[k]);
          *start = i, *end = *pos = i + l;
          return 1;
        }
      }
    }
    uint16_t p = clip_tok_prop(c);
    int cls = (p & CLIP_TOK_PAT_L) ? CLIP_TOK_PAT_L
              : (p & CLIP_TOK_PAT_N) ? CLIP_TOK_PAT_N
              : (p & CLIP_TOK_PAT_O) ? CLIP_TOK_PAT_O
                                     : 0;
    if (!cls) {
      i++; /* no alternative matches here (whitespace): findall moves on */
      continue;
    }
    size_t j = i + 1;
    if (cls != CLIP_TOK_PAT_N)
      while (j < n && (clip_tok_prop(s[j]) & cls)) j++;
    *start = i, *end = *pos = j;
    return 1;
  }
  *pos = n;
  return 0;
}
