/* safetensors.h: maps a .safetensors file read-only and indexes its tensors (name, dtype,
   shape, bytes). The header is validated in full before anything is handed out: every
   tensor's bytes lie inside the file, match its shape and dtype, and overlap no other. */
#ifndef CLIP_SAFETENSORS_H
#define CLIP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "clipengine.h"
#include "json.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CLIP_ST_MAX_DIMS 8

/* A string from the file that a message echoes (a tensor name can be megabytes): its first
   CLIP_ECHO_MAX bytes, then "..." when it is longer, so that the rest of the message still
   fits the caller's buffer. Use CLIP_ECHO_FMT in the format and CLIP_ECHO(s) as its
   arguments. */
#define CLIP_ECHO_MAX 160
#define CLIP_ECHO_FMT "%.*s%s"
#define CLIP_ECHO(s) \
  clip_echo_len(s), (s), (strnlen((s), CLIP_ECHO_MAX + 1) > CLIP_ECHO_MAX ? "..." : "")
static inline int clip_echo_len(const char *s) {
  size_t n = strnlen(s, CLIP_ECHO_MAX + 1);
  return (int)(n > CLIP_ECHO_MAX ? CLIP_ECHO_MAX : n);
}
/* The reference implementation refuses headers past 100 MB; so do we, which also bounds
   what the JSON tree can cost. */
#define CLIP_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

/* The element types the engine converts; every other dtype of the format is CLIP_ST_OTHER
   (sized and bounds-checked, but not convertible). */
typedef enum clip_st_dtype { CLIP_ST_F32, CLIP_ST_F16, CLIP_ST_BF16, CLIP_ST_OTHER } clip_st_dtype;

typedef struct clip_st_tensor {
  const char *name;           /* NUL-terminated, owned by the file's header document */
  char dtype_name[16];        /* as written in the header, e.g. "F16" */
  clip_st_dtype dtype;
  size_t elem_size;           /* bytes per element */
  int ndim;                   /* 0 for a scalar */
  int64_t shape[CLIP_ST_MAX_DIMS];
  uint64_t numel;
  uint64_t begin, end;        /* data_offsets, relative to the data section */
  const unsigned char *data;  /* into the mapping; NOT aligned: read with memcpy */
} clip_st_tensor;

typedef struct clip_st_file {
  void *map;
  size_t map_len;
  clip_json_doc header;
  clip_st_tensor *tensors; /* sorted by name (byte order) */
  size_t count;
} clip_st_file;

/* Maps and validates `path`. Errors: CLIP_ERR_IO (cannot open/stat/map),
   CLIP_ERR_BAD_WEIGHTS (malformed file), CLIP_ERR_OUT_OF_MEMORY; the message in err starts
   with "<path>: ". On failure *f is left empty. */
clip_status clip_st_open(const char *path, clip_st_file *f, char *err, size_t err_len);
/* Unmaps and frees; empty or open; safe twice. */
void clip_st_close(clip_st_file *f);
/* The tensor named `name`, or NULL. */
const clip_st_tensor *clip_st_find(const clip_st_file *f, const char *name);
/* Writes "[d0 d1 ...]" into buf. */
void clip_st_shape_string(const int64_t *shape, int ndim, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* CLIP_SAFETENSORS_H */
