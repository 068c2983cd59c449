/* tokenizer.h: the CLIP tokenizer's text stage (tokenizer_text.c), shared with the BPE stage
   and public API in tokenizer.c: UTF-8 in, the cleaned, lower-cased code points out, and the
   pre-tokeniser that cuts them into the pieces BPE encodes. */
#ifndef CLIP_TOKENIZER_H
#define CLIP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "utf8.h"

/* A growable code point buffer; the first CLIP_TOK_INLINE code points live inside it, so
   a caption needs no allocation. */
#define CLIP_TOK_INLINE 512
typedef struct clip_tok_cps {
  uint32_t *v;
  size_t n, cap;
  uint32_t inline_v[CLIP_TOK_INLINE];
} clip_tok_cps;

void clip_tok_cps_init(clip_tok_cps *b);
void clip_tok_cps_free(clip_tok_cps *b);

enum { CLIP_TOK_TEXT_OK = 0, CLIP_TOK_TEXT_BAD_UTF8 = 1, CLIP_TOK_TEXT_NOMEM = 2 };

/* SimpleTokenizer's clean-up of text[0..len) (strict UTF-8) into *out: NFC (in place of
   ftfy.fix_text), html.unescape twice, str.strip, \s+ -> ' ', str.strip, str.lower.
   a and b are the buffers it works in; *result is the one that holds the clean text. On
   CLIP_TOK_TEXT_BAD_UTF8, *bad_at is the offset of the first bad byte. */
int clip_tok_clean(const char *text, size_t len, clip_tok_cps *a, clip_tok_cps *b,
                   clip_tok_cps **result, size_t *bad_at);

/* The next piece of the pre-tokenising pattern in s[*pos..n) (findall's order): returns 1 and
   sets [*start, *end), advancing *pos past it, or 0 when no piece is left. */
int clip_tok_next_piece(const uint32_t *s, size_t n, size_t *pos, size_t *start, size_t *end);

#endif
