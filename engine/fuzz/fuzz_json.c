/* fuzz_json.c: libFuzzer harness for the JSON parser (json.c). Every input must parse or be
   refused without a sanitizer report; a parsed tree must be consistent: counts match the
   children, strings are NUL-terminated at their length, every member has a key, integers
   agree with their doubles, and nesting stays within the depth asked for. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define FUZZ_DEPTH 64

static void check(const clip_json *v, int depth, int in_object) {
  if (depth > FUZZ_DEPTH + 1) abort(); /* deeper than the parser was allowed to go */
  if (in_object != (v->key != NULL)) abort();
  if (v->key && v->key[v->key_len] != 0) abort();
  switch (v->type) {
  case CLIP_JSON_STRING:
    if (!v->str || v->str[v->len] != 0) abort();
    break;
  case CLIP_JSON_NUMBER:
    if (v->is_integer && (double)v->integer != v->number) abort();
    break;
  case CLIP_JSON_ARRAY:
  case CLIP_JSON_OBJECT: {
    size_t n = 0;
    for (const clip_json *c = v->child; c; c = c->next, n++)
      check(c, depth + 1, v->type == CLIP_JSON_OBJECT);
    if (n != v->count) abort();
    if (v->type == CLIP_JSON_OBJECT)
      for (const clip_json *c = v->child; c; c = c->next) {
        /* Lookup by a key without NULs finds a member with that key (the first of them). */
        if (strlen(c->key) != c->key_len) continue;
        const clip_json *m = clip_json_get(v, c->key);
        if (!m || strcmp(m->key, c->key) != 0) abort();
      }
    break;
  }
  case CLIP_JSON_NULL:
  case CLIP_JSON_BOOL:
    break;
  default:
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  clip_json_doc doc;
  char err[200];
  int s = clip_json_parse((const char *)data, size, FUZZ_DEPTH, &doc, err, sizeof err);
  if (s == CLIP_JSON_OK) {
    if (!doc.root) abort();
    check(doc.root, 0, 0);
    if (clip_json_get(doc.root, "dtype") && doc.root->type != CLIP_JSON_OBJECT) abort();
  } else {
    if (s != CLIP_JSON_SYNTAX && s != CLIP_JSON_NOMEM) abort();
    if (doc.root) abort(); /* "on failure doc is left empty" */
    if (!memchr(err, 0, sizeof err)) abort();
  }
  clip_json_doc_free(&doc);
  clip_json_doc_free(&doc); /* safe twice */
  return 0;
}
