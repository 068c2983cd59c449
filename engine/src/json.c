/* json.c: the strict, bounded JSON parser declared in json.h. Used on untrusted bytes (a
   safetensors header is whatever the file says), so every read is checked against the
   buffer's length and nesting is limited before it can exhaust the stack. */
#include "json.h"
#include "utf8.h"

#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- allocation: nodes and strings come from a chain of blocks, freed at once ---- */

struct clip_json_block {
  struct clip_json_block *next;
  size_t used, cap;
  max_align_t data[]; /* max_align_t elements keep every carved piece aligned */
};

#define JSON_BLOCK_BYTES ((size_t)64 * 1024)

static void *doc_alloc(clip_json_doc *doc, size_t n) {
  const size_t align = _Alignof(max_align_t);
  if (n > SIZE_MAX - align) return NULL;
  n = (n + align - 1) / align * align;
  struct clip_json_block *b = doc->blocks;
  if (!b || b->cap - b->used < n) {
    size_t cap = n > JSON_BLOCK_BYTES ? n : JSON_BLOCK_BYTES;
    if (cap > SIZE_MAX - sizeof *b) return NULL;
    b = (struct clip_json_block *)malloc(sizeof *b + cap);
    if (!b) return NULL;
    b->used = 0;
    b->cap = cap;
    b->next = doc->blocks;
    doc->blocks = b;
  }
  void *p = (char *)b->data + b->used;
  b->used += n;
  return p;
}

void clip_json_doc_free(clip_json_doc *doc) {
  if (!doc) return;
  struct clip_json_block *b = doc->blocks;
  while (b) {
    struct clip_json_block *next = b->next;
    free(b);
    b = next;
  }
  doc->blocks = NULL;
  doc->root = NULL;
}

/* ---- the parser ---- */

typedef struct json_parser {
  const unsigned char *s;
  size_t len, pos;
  int max_depth;
  clip_json_doc *doc;
  char *err;
  size_t err_len;
  int status; /* CLIP_JSON_OK until the first error */
} json_parser;

static void *fail(json_parser *p, int status, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Records the first error only: later ones are consequences of it. Returns NULL so callers
   can `return fail(...)`. */
static void *fail(json_parser *p, int status, const char *fmt, ...) {
  if (p->status != CLIP_JSON_OK) return NULL;
  p->status = status;
  if (p->err && p->err_len) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(p->err, p->err_len, "at byte %zu: %s", p->pos, msg);
  }
  return NULL;
}

static void *nomem(json_parser *p) { return fail(p, CLIP_JSON_NOMEM, "out of memory"); }

static void skip_ws(json_parser *p) {
  while (p->pos < p->len) {
    unsigned char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

static clip_json *new_node(json_parser *p, clip_json_type type) {
  clip_json *v = (clip_json *)doc_alloc(p->doc, sizeof *v);
  if (!v) return nomem(p);
  memset(v, 0, sizeof *v);
  v->type = type;
  return v;
}

/* Describes the byte at pos for error messages. */
static const char *here(json_parser *p, char buf[16]) {
  if (p->pos >= p->len) return "end of input";
  unsigned char c = p->s[p->pos];
  if (c >= 0x20 && c < 0x7f)
    snprintf(buf, 16, "'%c'", c);
  else
    snprintf(buf, 16, "byte 0x%02x", c);
  return buf;
}

static int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Reads the 4 hex digits after "\u" at pos; -1 on error. */
static long read_hex4(json_parser *p) {
  if (p->len - p->pos < 4) return -1;
  long v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hex_value(p->s[p->pos + i]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  p->pos += 4;
  return v;
}

/* Length of the well-formed UTF-8 sequence starting at s[0] (n bytes available), or 0.
   Rejects overlong forms, surrogates and code points past U+10FFFF. */
static size_t utf8_sequence(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (n < need) return 0;
  if (s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < need; i++)
    if (s[i] < 0x80 || s[i] > 0xBF) return 0;
  return need;
}

/* Parses a string at pos (which holds '"'), decoding escapes into doc memory. */
static int parse_string(json_parser *p, const char **out, size_t *out_len) {
  size_t start = ++p->pos; /* past the opening quote */
  /* First find the closing quote so the decoded copy can be sized: decoding never grows
     the text (an escape of k bytes decodes to at most k bytes). */
  size_t end = start;
  for (;;) {
    if (end >= p->len) {
      p->pos = end;
      fail(p, CLIP_JSON_SYNTAX, "unterminated string");
      return 0;
    }
    unsigned char c = p->s[end];
    if (c == '"') break;
    end += c == '\\' ? 2 : 1;
  }
  char *dst = (char *)doc_alloc(p->doc, end - start + 1);
  if (!dst) {
    nomem(p);
    return 0;
  }
  size_t n = 0;
  while (p->pos < end) {
    unsigned char c = p->s[p->pos];
    if (c < 0x20) {
      fail(p, CLIP_JSON_SYNTAX, "control character 0x%02x in a string", c);
      return 0;
    }
    if (c >= 0x80) {
      size_t k = utf8_sequence(p->s + p->pos, end - p->pos);
      if (k == 0) {
        fail(p, CLIP_JSON_SYNTAX, "invalid UTF-8 in a string");
        return 0;
      }
      memcpy(dst + n, p->s + p->pos, k);
      n += k;
      p->pos += k;
      continue;
    }
    if (c != '\\') {
      dst[n++] = (char)c;
      p->pos++;
      continue;
    }
    p->pos++; /* the byte after '\\' is < end: the scan above stepped over it */
    unsigned char e = p->s[p->pos++];
    switch (e) {
    case '"': dst[n++] = '"'; break;
    case '\\': dst[n++] = '\\'; break;
    case '/': dst[n++] = '/'; break;
    case 'b': dst[n++] = '\b'; break;
    case 'f': dst[n++] = '\f'; break;
    case 'n': dst[n++] = '\n'; break;
    case 'r': dst[n++] = '\r'; break;
    case 't': dst[n++] = '\t'; break;
    case 'u': {
      long cp = read_hex4(p);
      if (cp < 0 || p->pos > end) {
        fail(p, CLIP_JSON_SYNTAX, "bad \\u escape (want 4 hex digits)");
        return 0;
      }
      if (cp >= 0xDC00 && cp <= 0xDFFF) {
        fail(p, CLIP_JSON_SYNTAX, "lone low surrogate \\u%04lX", (unsigned long)cp);
        return 0;
      }
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        long lo = -1;
        if (end - p->pos >= 6 && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u') {
          p->pos += 2;
          lo = read_hex4(p);
        }
        if (lo < 0xDC00 || lo > 0xDFFF) {
          fail(p, CLIP_JSON_SYNTAX, "high surrogate \\u%04lX not followed by a low one",
               (unsigned long)cp);
          return 0;
        }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      }
      n += (size_t)clip_utf8_put((uint32_t)cp, (uint8_t *)dst + n);
      break;
    }
    default:
      p->pos--;
      fail(p, CLIP_JSON_SYNTAX, "bad escape '\\%c'", e >= 0x20 && e < 0x7f ? e : '?');
      return 0;
    }
  }
  dst[n] = 0;
  p->pos = end + 1; /* past the closing quote */
  *out = dst;
  *out_len = n;
  return 1;
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static clip_json *parse_number(json_parser *p) {
  size_t start = p->pos;
  int negative = 0, integral = 1, overflow = 0;
  uint64_t mag = 0;
  if (p->pos < p->len && p->s[p->pos] == '-') {
    negative = 1;
    p->pos++;
  }
  if (p->pos >= p->len || !is_digit(p->s[p->pos])) return fail(p, CLIP_JSON_SYNTAX, "bad number");
  if (p->s[p->pos] == '0') {
    p->pos++;
    if (p->pos < p->len && is_digit(p->s[p->pos]))
      return fail(p, CLIP_JSON_SYNTAX, "number with a leading zero");
  } else {
    while (p->pos < p->len && is_digit(p->s[p->pos])) {
      unsigned d = p->s[p->pos++] - '0';
      if (mag > (UINT64_MAX - d) / 10)
        overflow = 1;
      else
        mag = mag * 10 + d;
    }
  }
  if (p->pos < p->len && p->s[p->pos] == '.') {
    integral = 0;
    p->pos++;
    if (p->pos >= p->len || !is_digit(p->s[p->pos]))
      return fail(p, CLIP_JSON_SYNTAX, "bad number: no digit after '.'");
    while (p->pos < p->len && is_digit(p->s[p->pos])) p->pos++;
  }
  if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
    integral = 0;
    p->pos++;
    if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
    if (p->pos >= p->len || !is_digit(p->s[p->pos]))
      return fail(p, CLIP_JSON_SYNTAX, "bad number: no digit in the exponent");
    while (p->pos < p->len && is_digit(p->s[p->pos])) p->pos++;
  }

  clip_json *v = new_node(p, CLIP_JSON_NUMBER);
  if (!v) return NULL;
  if (integral && !overflow &&
      (negative ? mag <= (uint64_t)INT64_MAX + 1 : mag <= (uint64_t)INT64_MAX)) {
    v->is_integer = 1;
    v->integer = negative ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag)
                          : (int64_t)mag;
  }
  /* strtod needs a NUL-terminated copy, and reads the decimal point of the current locale:
     a host program may have called setlocale, so swap '.' for that locale's point. */
  size_t n = p->pos - start;
  char small[64];
  char *buf = n < sizeof small ? small : (char *)malloc(n + 1);
  if (!buf) return nomem(p);
  memcpy(buf, p->s + start, n);
  buf[n] = 0;
  const char *point = localeconv()->decimal_point;
  if (point && point[0] && point[0] != '.' && !point[1]) {
    char *dot = strchr(buf, '.');
    if (dot) *dot = point[0];
  }
  v->number = strtod(buf, NULL);
  if (buf != small) free(buf);
  return v;
}

static int match_literal(json_parser *p, const char *word) {
  size_t n = strlen(word);
  if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) return 0;
  p->pos += n;
  return 1;
}

static clip_json *parse_value(json_parser *p, int depth);

static clip_json *parse_container(json_parser *p, int depth, int is_object) {
  if (depth >= p->max_depth)
    return fail(p, CLIP_JSON_SYNTAX, "nesting deeper than %d levels", p->max_depth);
  clip_json *v = new_node(p, is_object ? CLIP_JSON_OBJECT : CLIP_JSON_ARRAY);
  if (!v) return NULL;
  const char close = is_object ? '}' : ']';
  p->pos++; /* past '[' or '{' */
  skip_ws(p);
  if (p->pos < p->len && p->s[p->pos] == (unsigned char)close) {
    p->pos++;
    return v;
  }
  clip_json **tail = &v->child;
  for (;;) {
    const char *key = NULL;
    size_t key_len = 0;
    char what[16];
    skip_ws(p);
    if (is_object) {
      if (p->pos >= p->len || p->s[p->pos] != '"')
        return fail(p, CLIP_JSON_SYNTAX, "expected a member name, found %s", here(p, what));
      if (!parse_string(p, &key, &key_len)) return NULL;
      skip_ws(p);
      if (p->pos >= p->len || p->s[p->pos] != ':')
        return fail(p, CLIP_JSON_SYNTAX, "expected ':', found %s", here(p, what));
      p->pos++;
    }
    clip_json *item = parse_value(p, depth + 1);
    if (!item) return NULL;
    item->key = key;
    item->key_len = key_len;
    *tail = item;
    tail = &item->next;
    v->count++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ',') {
      p->pos++;
      continue;
    }
    if (p->pos < p->len && p->s[p->pos] == (unsigned char)close) {
      p->pos++;
      return v;
    }
    return fail(p, CLIP_JSON_SYNTAX, "expected ',' or '%c', found %s", close, here(p, what));
  }
}

static clip_json *parse_value(json_parser *p, int depth) {
  char what[16];
  skip_ws(p);
  if (p->pos >= p->len) return fail(p, CLIP_JSON_SYNTAX, "expected a value, found end of input");
  unsigned char c = p->s[p->pos];
  if (c == '{') return parse_container(p, depth, 1);
  if (c == '[') return parse_container(p, depth, 0);
  if (c == '"') {
    clip_json *v = new_node(p, CLIP_JSON_STRING);
    if (!v) return NULL;
    if (!parse_string(p, &v->str, &v->len)) return NULL;
    return v;
  }
  if (c == '-' || is_digit(c)) return parse_number(p);
  if (match_literal(p, "true") || match_literal(p, "false")) {
    clip_json *v = new_node(p, CLIP_JSON_BOOL);
    if (v) v->boolean = c == 't';
    return v;
  }
  if (match_literal(p, "null")) return new_node(p, CLIP_JSON_NULL);
  return fail(p, CLIP_JSON_SYNTAX, "expected a value, found %s", here(p, what));
}

int clip_json_parse(const char *text, size_t len, int max_depth, clip_json_doc *doc, char *err,
                    size_t err_len) {
  if (err && err_len) err[0] = 0;
  doc->root = NULL;
  doc->blocks = NULL;
  json_parser p;
  memset(&p, 0, sizeof p);
  p.s = (const unsigned char *)text;
  p.len = text ? len : 0;
  p.max_depth = max_depth > 0 ? max_depth : 1;
  p.doc = doc;
  p.err = err;
  p.err_len = err_len;
  clip_json *root = parse_value(&p, 0);
  if (root) {
    skip_ws(&p);
    if (p.pos != p.len) {
      char what[16];
      fail(&p, CLIP_JSON_SYNTAX, "unexpected %s after the value", here(&p, what));
      root = NULL;
    }
  }
  if (!root) {
    clip_json_doc_free(doc);
    return p.status != CLIP_JSON_OK ? p.status : CLIP_JSON_SYNTAX;
  }
  doc->root = root;
  return CLIP_JSON_OK;
}

const clip_json *clip_json_get(const clip_json *obj, const char *key) {
  if (!obj || obj->type != CLIP_JSON_OBJECT || !key) return NULL;
  size_t n = strlen(key);
  for (const clip_json *m = obj->child; m; m = m->next)
    if (m->key_len == n && memcmp(m->key, key, n) == 0) return m;
  return NULL;
}
