/* safetensors.c: maps a .safetensors file and validates its header (see safetensors.h).
   The file is untrusted: lengths and offsets are checked against the real file size before
   they are used, so a corrupt or hostile file gives an error, never a read out of bounds or
   a huge allocation. Layout: u64 little-endian header length N, N bytes of JSON, then the
   data section that every tensor's data_offsets are relative to. */
#define _POSIX_C_SOURCE 200809L /* mmap, O_CLOEXEC */

#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_JSON_MAX_DEPTH 64

static clip_status st_error(char *err, size_t err_len, clip_status s, const char *path,
                            const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 5, 6)))
#endif
    ;

/* Every message starts with the file's path, so callers can prefix their own context. */
static clip_status st_error(char *err, size_t err_len, clip_status s, const char *path,
                            const char *fmt, ...) {
  if (!err || !err_len) return s;
  int n = snprintf(err, err_len, "%s: ", path);
  if (n >= 0 && (size_t)n < err_len) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, err_len - (size_t)n, fmt, ap);
    va_end(ap);
  }
  return s;
}

void clip_st_shape_string(const int64_t *shape, int ndim, char *buf, size_t len) {
  if (!buf || !len) return;
  size_t used = 0;
  buf[0] = 0;
  int n = snprintf(buf, len, "[");
  if (n < 0) return;
  used = (size_t)n;
  for (int i = 0; i < ndim && used < len; i++) {
    n = snprintf(buf + used, len - used, "%s%lld", i ? " " : "", (long long)shape[i]);
    if (n < 0) return;
    used += (size_t)n;
  }
  if (used < len) snprintf(buf + used, len - used, "]");
}

/* The format's dtypes and their element sizes (the sub-byte F4/F6 types are not accepted). */
static const struct {
  const char *name;
  size_t size;
  clip_st_dtype dtype;
} st_dtypes[] = {
    {"F32", 4, CLIP_ST_F32},       {"F16", 2, CLIP_ST_F16},       {"BF16", 2, CLIP_ST_BF16},
    {"F64", 8, CLIP_ST_OTHER},     {"I64", 8, CLIP_ST_OTHER},     {"U64", 8, CLIP_ST_OTHER},
    {"I32", 4, CLIP_ST_OTHER},     {"U32", 4, CLIP_ST_OTHER},     {"I16", 2, CLIP_ST_OTHER},
    {"U16", 2, CLIP_ST_OTHER},     {"I8", 1, CLIP_ST_OTHER},      {"U8", 1, CLIP_ST_OTHER},
    {"BOOL", 1, CLIP_ST_OTHER},    {"F8_E4M3", 1, CLIP_ST_OTHER}, {"F8_E5M2", 1, CLIP_ST_OTHER},
    {"F8_E8M0", 1, CLIP_ST_OTHER}, {"C64", 8, CLIP_ST_OTHER},
};

static int cmp_by_name(const void *a, const void *b) {
  return strcmp(((const clip_st_tensor *)a)->name, ((const clip_st_tensor *)b)->name);
}

static int cmp_by_begin(const void *a, const void *b) {
  const clip_st_tensor *x = *(const clip_st_tensor *const *)a;
  const clip_st_tensor *y = *(const clip_st_tensor *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

/* Fills t from one header entry; data_len is the size of the data section. */
static clip_status parse_entry(const char *path, const clip_json *e, uint64_t data_len,
                               clip_st_tensor *t, char *err, size_t err_len) {
  const char *name = e->key;
  if (strlen(name) != e->key_len)
    return st_error(err, err_len, CLIP_ERR_BAD_WEIGHTS, path, "a tensor name holds a NUL byte");
  t->name = name;
  if (e->type != CLIP_JSON_OBJECT)
    return st_error(err, err_len, CLIP_ERR_BAD_WEIGHTS, path,
                    "tensor " CLIP_ECHO_FMT ": header entry is not a JSON object", CLIP_ECHO(name));
  const clip_json *dtype = clip_json_get(e, "dtype");
  const clip_json *shape = clip_json_get(e, "shape");
  const clip_json *offsets = clip_json_get(e, "data_offsets");
  const char *missing = !dtype ? "dtype" : !shape ? "shape" : !offsets ? "data_offsets" : NULL;
  if (missing)
    return st_error(err, err_len, CLIP_ERR_BAD_WEIGHTS, path,
                    "tensor " CLIP_ECHO_FMT ": missing \"%s\"", CLIP_ECHO(name), missing);

  if (dtype->type != CLIP_JSON_STRING)
    return st_error(err, err_len, CLIP_ERR_BAD_WEIGHTS, path,
                    "tensor " CLIP_ECHO_FMT ": dtype is not a string", CLIP_ECHO(name));
  size_t k = 0, nd = sizeof st_dtypes / sizeof st_dtypes[0];
  while (k < nd && !(strlen(st_dtypes[k].name) == dtype->len &&
                     memcmp(st_dtypes[k].name, dtype->str, dtype->len) == 0))
    k++;
  if (k == nd)
    return st_error(err, err_len, CLIP_ERR_BAD_WEIGHTS, path,
                    "tensor " CLIP_ECHO_FMT " has unknown dtype \"%.32s\"", CLIP_ECHO(name),
                    dtype->str);
  snprintf(t->dtype_name, sizeof t->dtype_name, "%s", st_dtypes[k].name);
  t->dtype = st_dtypes[k].dtype;
  t->elem_size = st_dtypes[k].size;

  if (shape->type != CLIP_JSON_ARRAY)
    return st_error(err, err_len, CLIP_ERR_BAD_WEIGHTS, path,
                    "tensor " CLIP_ECHO_FMT ": shape is not an array", CLIP_ECHO(name));
  if (shape->count > CLIP_ST_MAX_DIMS)
    return st_error(err, err_len, CLIP_ERR_BAD_WEIGHTS, path,
                    "tensor " CLIP_ECHO_FMT ": shape has %zu dimensions (at most %d)",
                    CLIP_ECHO(name), shape->count, CLIP_ST_MAX_DIMS);
  /* numel * elem_size must fit in 64 bits; the data section bound below is the real limit. */
  uint64_t numel = 1;
  int overflow = 0, has_zero = 0;
  t->ndim = 0;
  for (const clip_json *d = shape->child; d; d = d->next) {
    if (d->type != CLIP_JSON_NUMBER || !d->is_integer || d->integer < 0)
      return st_error(err, err_len, CLIP_ERR_BAD_WEIGHTS, path,
                      "tensor " CLIP_ECHO_FMT
                      ": shape holds something other than a non-negative integer",
                      CLIP_ECHO(name));
    uint64_t dim = (uint64_t)d->integer;
    if (dim == 0) has_zero = 1;
    if (dim != 0 && numel > UINT64_MAX / dim) overflow = 1;
    if (!overflow) numel *= dim;
    t->shape[t->ndim++] = d->integer;
  }
  /* A zero dimension makes an empty tensor, however large the others are. */
  if (has_zero) {
    overflow = 0;
    numel = 0;
  }
  if (overflow || numel > UINT64_MAX / t->elem_size)
    return st_error(err, err_len, CLIP_ERR_BAD_WEIGHTS, path,
                    "tensor " CLIP_ECHO_FMT ": shape is too large", CLIP_ECHO(name));
  t->numel = numel;

  if (offsets->type != CLIP_JSON_ARRAY || offsets->count != 2 ||
      offsets->child->type != CLIP_JSON_NUMBER || !offsets->child->is_integer ||
      offsets->child->integer < 0 || offsets->child->next->type != CLIP_JSON_NUMBER ||
      !offsets->child->next->is_integer || offsets->child->next->integer < 0)
    return st_error(err, err_len, CLIP_ERR_BAD_WEIGHTS, path,
                    "tensor " CLIP_ECHO_FMT ": data_offsets is not two non-negative integers",
                    CLIP_ECHO(name));
  t->begin = (uint64_t)offsets->child->integer;
  t->end = (uint64_t)offsets->child->next->integer;
  if (t->begin > t->end)
    return st_error(err, err_len, CLIP_ERR_BAD_WEIGHTS, path,
                    "tensor " CLIP_ECHO_FMT ": data_offsets [%llu, %llu] end before they begin",
                    CLIP_ECHO(name), (unsigned long long)t->begin, (unsigned long long)t->end);
  if (t->end > data_len)
    return st_error(err, err_len, CLIP_ERR_BAD_WEIGHTS, path,
                    "tensor " CLIP_ECHO_FMT
                    ": data_offsets [%llu, %llu] are past the end of the file (data "
                    "section holds %llu bytes)",
                    CLIP_ECHO(name), (unsigned long long)t->begin, (unsigned long long)t->end,
                    (unsigned long long)data_len);
  if (t->end - t->begin != numel * t->elem_size) {
    char s[160];
    clip_st_shape_string(t->shape, t->ndim, s, sizeof s);
    return st_error(err, err_len, CLIP_ERR_BAD_WEIGHTS, path,
                    "tensor " CLIP_ECHO_FMT
                    ": data_offsets [%llu, %llu] hold %llu bytes, but shape %s of %s "
                    "needs %llu",
                    CLIP_ECHO(name), (unsigned long long)t->begin, (unsigned long long)t->end,
                    (unsigned long long)(t->end - t->begin), s, t->dtype_name,
                    (unsigned long long)(numel * t->elem_size));
  }
  return CLIP_OK;
}

/* Sorts by name (for lookup) and rejects duplicate names and overlapping byte ranges. */
static clip_status index_tensors(const char *path, clip_st_file *f, char *err, size_t err_len) {
  if (f->count == 0) return CLIP_OK;
  qsort(f->tensors, f->count, sizeof *f->tensors, cmp_by_name);
  for (size_t i = 1; i < f->count; i++)
    if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0)
      return st_error(err, err_len, CLIP_ERR_BAD_WEIGHTS, path,
                      "tensor " CLIP_ECHO_FMT " appears twice", CLIP_ECHO(f->tensors[i].name));
  clip_st_tensor **by_begin = (clip_st_tensor **)malloc(f->count * sizeof *by_begin);
  if (!by_begin)
    return st_error(err, err_len, CLIP_ERR_OUT_OF_MEMORY, path, "out of memory indexing %zu tensors",
                    f->count);
  size_t n = 0;
  for (size_t i = 0; i < f->count; i++)
    if (f->tensors[i].end > f->tensors[i].begin) by_begin[n++] = &f->tensors[i];
  qsort(by_begin, n, sizeof *by_begin, cmp_by_begin);
  clip_status s = CLIP_OK;
  for (size_t i = 1; i < n; i++) {
    const clip_st_tensor *a = by_begin[i - 1], *b = by_begin[i];
    if (b->begin < a->end) {
      s = st_error(err, err_len, CLIP_ERR_BAD_WEIGHTS, path,
                   "tensors " CLIP_ECHO_FMT " and " CLIP_ECHO_FMT
                   " overlap (data_offsets [%llu, %llu] and [%llu, %llu])",
                   CLIP_ECHO(a->name), CLIP_ECHO(b->name), (unsigned long long)a->begin,
                   (unsigned long long)a->end,
                   (unsigned long long)b->begin, (unsigned long long)b->end);
      break;
    }
  }
  free(by_begin);
  return s;
}

clip_status clip_st_open(const char *path, clip_st_file *f, char *err, size_t err_len) {
  memset(f, 0, sizeof *f);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return st_error(err, err_len, CLIP_ERR_IO, path, "cannot open: %s", strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return st_error(err, err_len, CLIP_ERR_IO, path, "cannot stat: %s", strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return st_error(err, err_len, CLIP_ERR_IO, path, "not a regular file");
  }
  uint64_t file_size = (uint64_t)st.st_size;
  if (file_size < 8) {
    close(fd);
    return st_error(err, err_len, CLIP_ERR_BAD_WEIGHTS, path,
                    "file is %llu bytes, too short for the 8-byte header length (truncated)",
                    (unsigned long long)file_size);
  }
  if (file_size > (uint64_t)SIZE_MAX) {
    close(fd);
    return st_error(err, err_len, CLIP_ERR_IO, path, "file is too large to map");
  }
  void *map = mmap(NULL, (size_t)file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  int map_errno = errno;
  close(fd); /* the mapping keeps the file alive */
  if (map == MAP_FAILED)
    return st_error(err, err_len, CLIP_ERR_IO, path, "cannot mmap: %s", strerror(map_errno));
  f->map = map;
  f->map_len = (size_t)file_size;

  const unsigned char *bytes = (const unsigned char *)map;
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; i--) header_len = header_len << 8 | bytes[i];
  clip_status s = CLIP_OK;
  /* Compared by subtraction so a header length near 2^64 cannot wrap around. */
  if (header_len > file_size - 8) {
    s = st_error(err, err_len, CLIP_ERR_BAD_WEIGHTS, path,
                 "header length %llu is past the end of the file (%llu bytes; truncated?)",
                 (unsigned long long)header_len, (unsigned long long)file_size);
    goto fail;
  }
  if (header_len > CLIP_ST_MAX_HEADER) {
    s = st_error(err, err_len, CLIP_ERR_BAD_WEIGHTS, path,
                 "header length %llu is larger than the format's limit of %llu bytes",
                 (unsigned long long)header_len, (unsigned long long)CLIP_ST_MAX_HEADER);
    goto fail;
  }
  char jerr[200];
  int js = clip_json_parse((const char *)bytes + 8, (size_t)header_len, ST_JSON_MAX_DEPTH,
                           &f->header, jerr, sizeof jerr);
  if (js == CLIP_JSON_NOMEM) {
    s = st_error(err, err_len, CLIP_ERR_OUT_OF_MEMORY, path, "out of memory parsing the header");
    goto fail;
  }
  if (js != CLIP_JSON_OK) {
    s = st_error(err, err_len, CLIP_ERR_BAD_WEIGHTS, path, "header is not valid JSON: %s", jerr);
    goto fail;
  }
  const clip_json *root = f->header.root;
  if (root->type != CLIP_JSON_OBJECT) {
    s = st_error(err, err_len, CLIP_ERR_BAD_WEIGHTS, path, "header is not a JSON object");
    goto fail;
  }

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_len = file_size - data_start;
  f->tensors = (clip_st_tensor *)calloc(root->count ? root->count : 1, sizeof *f->tensors);
  if (!f->tensors) {
    s = st_error(err, err_len, CLIP_ERR_OUT_OF_MEMORY, path, "out of memory for %zu tensors",
                 root->count);
    goto fail;
  }
  for (const clip_json *e = root->child; e; e = e->next) {
    /* Free-form metadata (string to string) that the format reserves; nothing we need. */
    if (e->key_len == 12 && memcmp(e->key, "__metadata__", 12) == 0) continue;
    clip_st_tensor *t = &f->tensors[f->count];
    s = parse_entry(path, e, data_len, t, err, err_len);
    if (s != CLIP_OK) goto fail;
    t->data = bytes + data_start + t->begin;
    f->count++;
  }
  s = index_tensors(path, f, err, err_len);
  if (s != CLIP_OK) goto fail;
  return CLIP_OK;

fail:
  clip_st_close(f);
  return s;
}

void clip_st_close(clip_st_file *f) {
  if (!f) return;
  if (f->map) munmap(f->map, f->map_len);
  free(f->tensors);
  clip_json_doc_free(&f->header);
  memset(f, 0, sizeof *f);
}

const clip_st_tensor *clip_st_find(const clip_st_file *f, const char *name) {
  size_t lo = 0, hi = f->count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(f->tensors[mid].name, name);
    if (c == 0) return &f->tensors[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}
