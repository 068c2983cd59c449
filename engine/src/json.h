/* json.h: a small, strict JSON (RFC 8259) parser for the safetensors header and the model
   config files. It reads only the bytes it is given (no NUL terminator needed), limits nesting
   depth, rejects anything RFC 8259 rejects (trailing commas, comments, bad escapes, invalid
   UTF-8, leading zeros, trailing garbage) and builds a read-only tree owned by one document. */
#ifndef CLIP_JSON_H
#define CLIP_JSON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum clip_json_type {
  CLIP_JSON_NULL,
  CLIP_JSON_BOOL,
  CLIP_JSON_NUMBER,
  CLIP_JSON_STRING,
  CLIP_JSON_ARRAY,
  CLIP_JSON_OBJECT
} clip_json_type;

typedef struct clip_json clip_json;
struct clip_json {
  clip_json_type type;
  int boolean;      /* BOOL: 0 or 1 */
  double number;    /* NUMBER: the value as a double */
  int is_integer;   /* NUMBER: written without fraction/exponent and fits int64 */
  int64_t integer;  /* NUMBER: exact value when is_integer */
  const char *str;  /* STRING: decoded UTF-8, NUL-terminated; may hold NULs, so use len */
  size_t len;
  const char *key;  /* member name when this value sits in an object, else NULL */
  size_t key_len;
  clip_json *child; /* ARRAY/OBJECT: first element or member, in document order */
  clip_json *next;  /* next sibling */
  size_t count;     /* ARRAY/OBJECT: number of elements or members */
};

struct clip_json_block;

/* A parsed document: every node and string lives in `blocks`, freed together. */
typedef struct clip_json_doc {
  clip_json *root;
  struct clip_json_block *blocks;
} clip_json_doc;

enum { CLIP_JSON_OK = 0, CLIP_JSON_SYNTAX = 1, CLIP_JSON_NOMEM = 2 };

/* Parses text[0..len) as one JSON value. max_depth bounds array/object nesting (the parser
   recurses once per level). Returns CLIP_JSON_OK, or CLIP_JSON_SYNTAX with "at byte N: ..."
   in err, or CLIP_JSON_NOMEM; on failure doc is left empty. */
int clip_json_parse(const char *text, size_t len, int max_depth, clip_json_doc *doc, char *err,
                    size_t err_len);
void clip_json_doc_free(clip_json_doc *doc); /* empty or parsed; safe twice */

/* First member of object `obj` named `key` (NULL if obj is not an object or has none). */
const clip_json *clip_json_get(const clip_json *obj, const char *key);

#ifdef __cplusplus
}
#endif
#endif /* CLIP_JSON_H */
