/* tokenizer_unicode.h: the Unicode and HTML tables the CLIP tokenizer reads (generated into
   tokenizer_unicode.c by tokenizer_unicode_gen.py from Python 3.11's unicodedata 14.0.0, str
   methods and html module, and python3-regex 2022.10.31's Unicode 15.0 classes), and the
   lookups over them. */
#ifndef CLIP_TOKENIZER_UNICODE_H
#define CLIP_TOKENIZER_UNICODE_H

#include <stdint.h>

/* Per-code-point flags (clip_tok_prop(cp) & 0xff); the canonical combining class is >> 8. */
enum {
  CLIP_TOK_PAT_L = 1,      /* regex [\p{L}] with IGNORECASE */
  CLIP_TOK_PAT_N = 2,      /* regex [\p{N}] with IGNORECASE */
  CLIP_TOK_PAT_O = 4,      /* regex [^\s\p{L}\p{N}] with IGNORECASE */
  CLIP_TOK_RE_SPACE = 8,   /* regex \s (whitespace_clean) */
  CLIP_TOK_PY_SPACE = 16,  /* str.isspace() (str.strip) */
  CLIP_TOK_CASED = 32,     /* Cased and not Case_Ignorable (CPython's final-sigma rule) */
  CLIP_TOK_CASE_IGN = 64,  /* Case_Ignorable */
  CLIP_TOK_NFC_UNSAFE = 128 /* NFC may change a text holding it (non-starter, decomposes
                               without recomposing, or may compose with what precedes it) */
};

extern const char clip_tok_unicode_versions[];
extern const uint16_t clip_tok_prop_stage1[];
extern const uint16_t clip_tok_prop_stage2[];
extern const uint32_t clip_tok_lower_from[], clip_tok_lower_to[];
extern const int clip_tok_lower_count;
extern const uint32_t clip_tok_lowerx_from[], clip_tok_lowerx_to[]; /* 3 per entry, 0-padded */
extern const int clip_tok_lowerx_count;
extern const uint32_t clip_tok_decomp_from[], clip_tok_decomp_at[], clip_tok_decomp_pool[];
extern const int clip_tok_decomp_count;
extern const uint64_t clip_tok_comp_pair[]; /* first << 21 | second, sorted */
extern const uint32_t clip_tok_comp_to[];
extern const int clip_tok_comp_count;
extern const uint32_t clip_tok_fold_from[];
extern const uint8_t clip_tok_fold_to[];
extern const int clip_tok_fold_count;

typedef struct clip_tok_entity {
  const char *name; /* without the '&'; sorted bytewise */
  uint32_t cp[2];   /* the replacement, one or two code points (0-padded) */
} clip_tok_entity;
extern const clip_tok_entity clip_tok_entities[];
extern const int clip_tok_entity_count;
extern const uint32_t clip_tok_charref_from[], clip_tok_charref_to[]; /* html's _invalid_charrefs */
extern const int clip_tok_charref_count;
extern const uint32_t clip_tok_invalid_cp[]; /* html's _invalid_codepoints, sorted */
extern const int clip_tok_invalid_cp_count;

static inline uint16_t clip_tok_prop(uint32_t cp) {
  if (cp >= 0x110000) return 0;
  return clip_tok_prop_stage2[((uint32_t)clip_tok_prop_stage1[cp >> 7] << 7) | (cp & 127)];
}

#endif
