/* shim.c: the HDF5 calls behind package h5 (see shim.h). Every function returns a negative
 * value on failure after copying HDF5's error stack into err. */
#include "shim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ---- */

typedef struct {
  char *buf;
  size_t len, used;
} err_ctx;

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
  err_ctx *c = (err_ctx *)data;
  (void)n;
  if (c->used + 1 >= c->len) return 0;
  int w = snprintf(c->buf + c->used, c->len - c->used, "%s%s(): %s", c->used ? "; " : "",
                   e->func_name ? e->func_name : "?", e->desc ? e->desc : "?");
  if (w > 0) c->used += (size_t)w < c->len - c->used ? (size_t)w : c->len - c->used - 1;
  return 0;
}

/* fail records the current error stack (or msg when it is empty) into err. */
static int fail(const char *msg, char *err, size_t errlen) {
  if (err && errlen) {
    err_ctx c = {err, errlen, 0};
    err[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, &c);
    if (c.used == 0) snprintf(err, errlen, "%s", msg);
    H5Eclear2(H5E_DEFAULT);
  }
  return -1;
}

/* quiet stops HDF5 printing its error stack on stderr (the setting is per thread). */
static void quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* ---- types ---- */

static hid_t string_type(void) {
  hid_t t = H5Tcopy(H5T_C_S1);
  if (t < 0) return t;
  if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
    H5Tclose(t);
    return -1;
  }
  return t;
}

/* half_type is IEEE 754 binary16, little endian: what h5py reads as numpy float16. */
static hid_t half_type(void) {
  hid_t t = H5Tcopy(H5T_IEEE_F32LE);
  if (t < 0) return t;
  if (H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 15) < 0) {
    H5Tclose(t);
    return -1;
  }
  return t;
}

/* file_type and mem_type return a new type id the caller closes. */
static hid_t file_type(int kind) {
  switch (kind) {
  case H5S_KIND_FLOAT32: return H5Tcopy(H5T_IEEE_F32LE);
  case H5S_KIND_FLOAT16: return half_type();
  case H5S_KIND_INT64: return H5Tcopy(H5T_STD_I64LE);
  case H5S_KIND_STRING: return string_type();
  }
  return -1;
}

static hid_t mem_type(int kind) {
  switch (kind) {
  case H5S_KIND_FLOAT32: return H5Tcopy(H5T_NATIVE_FLOAT);
  case H5S_KIND_FLOAT16: return half_type();
  case H5S_KIND_INT64: return H5Tcopy(H5T_NATIVE_INT64);
  case H5S_KIND_STRING: return string_type();
  }
  return -1;
}

/* ---- files ---- */

hid_t h5s_file_create(const char *path, char *err, size_t errlen) {
  quiet();
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) return fail("H5Fcreate failed", err, errlen);
  return f;
}

hid_t h5s_file_open(const char *path, int write, char *err, size_t errlen) {
  quiet();
  hid_t f = H5Fopen(path, write ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return fail("H5Fopen failed", err, errlen);
  return f;
}

int h5s_file_close(hid_t f, char *err, size_t errlen) {
  quiet();
  if (H5Fclose(f) < 0) return fail("H5Fclose failed", err, errlen);
  return 0;
}

int h5s_exists(hid_t f, const char *name, char *err, size_t errlen) {
  quiet();
  htri_t r = H5Lexists(f, name, H5P_DEFAULT);
  if (r < 0) return fail("H5Lexists failed", err, errlen);
  return r > 0;
}

/* ---- datasets ---- */

static hid_t access_plist(size_t cache_bytes) {
  hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
  if (dapl < 0) return dapl;
  if (cache_bytes > 0 && H5Pset_chunk_cache(dapl, 12421, cache_bytes, 1.0) < 0) {
    H5Pclose(dapl);
    return -1;
  }
  return dapl;
}

hid_t h5s_dataset_create(hid_t f, const char *name, int kind, hsize_t rows, hsize_t cols, hsize_t chunk_rows,
                         int deflate, size_t cache_bytes, char *err, size_t errlen) {
  quiet();
  int rank = cols ? 2 : 1;
  hsize_t dims[2] = {rows, cols}, maxdims[2] = {H5S_UNLIMITED, cols}, chunk[2] = {chunk_rows ? chunk_rows : 1, cols};
  hid_t space = -1, type = -1, dcpl = -1, dapl = -1, d = -1;
  if ((space = H5Screate_simple(rank, dims, maxdims)) < 0) goto out;
  if ((type = file_type(kind)) < 0) goto out;
  if ((dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0) goto out;
  if (H5Pset_chunk(dcpl, rank, chunk) < 0) goto out;
  if (deflate > 0 && H5Pset_deflate(dcpl, (unsigned)deflate) < 0) goto out;
  if ((dapl = access_plist(cache_bytes)) < 0) goto out;
  d = H5Dcreate2(f, name, type, space, H5P_DEFAULT, dcpl, dapl);
out:
  if (d < 0) fail("H5Dcreate2 failed", err, errlen);
  if (dapl >= 0) H5Pclose(dapl);
  if (dcpl >= 0) H5Pclose(dcpl);
  if (type >= 0) H5Tclose(type);
  if (space >= 0) H5Sclose(space);
  return d < 0 ? -1 : d;
}

hid_t h5s_dataset_open(hid_t f, const char *name, size_t cache_bytes, int *kind, hsize_t *rows, hsize_t *cols,
                       size_t *elem, hsize_t *storage, char *err, size_t errlen) {
  quiet();
  hid_t dapl = -1, d = -1, type = -1, space = -1;
  int ok = 0;
  if ((dapl = access_plist(cache_bytes)) < 0) goto out;
  if ((d = H5Dopen2(f, name, dapl)) < 0) goto out;
  if ((type = H5Dget_type(d)) < 0 || (space = H5Dget_space(d)) < 0) goto out;
  size_t tsize = H5Tget_size(type);
  switch (H5Tget_class(type)) {
  case H5T_FLOAT:
    if (tsize != 2 && tsize != 4 && tsize != 8) {
      snprintf(err, errlen, "dataset %s holds %zu-byte floats; clipd reads 2, 4 or 8", name, tsize);
      goto out_msg;
    }
    *kind = tsize <= 2 ? H5S_KIND_FLOAT16 : H5S_KIND_FLOAT32;
    *elem = tsize;
    break;
  case H5T_INTEGER:
    if (tsize < 1 || tsize > 8) {
      snprintf(err, errlen, "dataset %s holds %zu-byte integers; clipd reads up to 8", name, tsize);
      goto out_msg;
    }
    *kind = H5S_KIND_INT64;
    *elem = tsize;
    break;
  case H5T_STRING:
    if (!H5Tis_variable_str(type)) {
      snprintf(err, errlen, "dataset %s holds fixed-length strings; clipd reads variable-length ones", name);
      goto out_msg;
    }
    *kind = H5S_KIND_STRING;
    *elem = 16; /* a global heap reference: length, collection address, index */
    break;
  default: snprintf(err, errlen, "dataset %s has an element type clipd does not read", name); goto out_msg;
  }
  hsize_t dims[2] = {0, 0};
  int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 1 || rank > 2) {
    snprintf(err, errlen, "dataset %s has %d dimensions, want 1 or 2", name, rank);
    goto out_msg;
  }
  if (H5Sget_simple_extent_dims(space, dims, NULL) < 0) goto out;
  *rows = dims[0];
  *cols = rank == 2 ? dims[1] : 0;
  if (rank == 2 && dims[1] == 0) {
    snprintf(err, errlen, "dataset %s has 0 columns", name);
    goto out_msg;
  }
  *storage = H5Dget_storage_size(d);
  ok = 1;
out:
  if (!ok) fail("H5Dopen2 failed", err, errlen);
out_msg:
  if (space >= 0) H5Sclose(space);
  if (type >= 0) H5Tclose(type);
  if (dapl >= 0) H5Pclose(dapl);
  if (!ok && d >= 0) {
    H5Dclose(d);
    d = -1;
  }
  return ok ? d : -1;
}

int h5s_dataset_close(hid_t d, char *err, size_t errlen) {
  quiet();
  if (H5Dclose(d) < 0) return fail("H5Dclose failed", err, errlen);
  return 0;
}

int h5s_dataset_set_rows(hid_t d, hsize_t rows, hsize_t cols, char *err, size_t errlen) {
  quiet();
  hsize_t dims[2] = {rows, cols};
  if (H5Dset_extent(d, dims) < 0) return fail("H5Dset_extent failed", err, errlen);
  return 0;
}

/* select makes the file and memory dataspaces of rows [start, start+n). */
static int select_rows(hid_t d, hsize_t start, hsize_t n, hsize_t cols, hid_t *fspace, hid_t *mspace) {
  int rank = cols ? 2 : 1;
  hsize_t off[2] = {start, 0}, cnt[2] = {n, cols};
  *fspace = H5Dget_space(d);
  if (*fspace < 0) return -1;
  if (H5Sselect_hyperslab(*fspace, H5S_SELECT_SET, off, NULL, cnt, NULL) < 0) return -1;
  *mspace = H5Screate_simple(rank, cnt, NULL);
  return *mspace < 0 ? -1 : 0;
}

static int transfer(hid_t d, int kind, hsize_t start, hsize_t n, hsize_t cols, void *buf, int write, char *err,
                    size_t errlen) {
  quiet();
  if (n == 0) return 0;
  hid_t fspace = -1, mspace = -1, type = -1;
  herr_t r = -1;
  if (select_rows(d, start, n, cols, &fspace, &mspace) < 0) goto out;
  if ((type = mem_type(kind)) < 0) goto out;
  r = write ? H5Dwrite(d, type, mspace, fspace, H5P_DEFAULT, buf) : H5Dread(d, type, mspace, fspace, H5P_DEFAULT, buf);
out:
  if (r < 0) fail(write ? "H5Dwrite failed" : "H5Dread failed", err, errlen);
  if (type >= 0) H5Tclose(type);
  if (mspace >= 0) H5Sclose(mspace);
  if (fspace >= 0) H5Sclose(fspace);
  return r < 0 ? -1 : 0;
}

int h5s_write(hid_t d, int kind, hsize_t start, hsize_t n, hsize_t cols, const void *buf, char *err, size_t errlen) {
  return transfer(d, kind, start, n, cols, (void *)buf, 1, err, errlen);
}

int h5s_read(hid_t d, int kind, hsize_t start, hsize_t n, hsize_t cols, void *buf, char *err, size_t errlen) {
  return transfer(d, kind, start, n, cols, buf, 0, err, errlen);
}

int h5s_write_strings(hid_t d, hsize_t start, hsize_t n, const char *packed, const size_t *offs, char *err,
                      size_t errlen) {
  if (n == 0) return 0;
  const char **ptrs = malloc(n * sizeof *ptrs);
  if (!ptrs) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  for (hsize_t i = 0; i < n; i++) ptrs[i] = packed + offs[i];
  int r = transfer(d, H5S_KIND_STRING, start, n, 0, (void *)ptrs, 1, err, errlen);
  free(ptrs);
  return r;
}

int h5s_read_strings(hid_t d, hsize_t start, hsize_t n, char **packed, size_t *offs, char *err, size_t errlen) {
  *packed = NULL;
  if (n == 0) return 0;
  char **ptrs = calloc(n, sizeof *ptrs);
  if (!ptrs) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  if (transfer(d, H5S_KIND_STRING, start, n, 0, ptrs, 0, err, errlen) < 0) {
    free(ptrs);
    return -1;
  }
  size_t total = 0;
  for (hsize_t i = 0; i < n; i++) total += (ptrs[i] ? strlen(ptrs[i]) : 0) + 1;
  char *out = malloc(total ? total : 1);
  int r = 0;
  if (!out) {
    snprintf(err, errlen, "out of memory");
    r = -1;
  } else {
    size_t at = 0;
    for (hsize_t i = 0; i < n; i++) {
      size_t l = ptrs[i] ? strlen(ptrs[i]) : 0;
      offs[i] = at;
      if (l) memcpy(out + at, ptrs[i], l);
      out[at + l] = 0;
      at += l + 1;
    }
    *packed = out;
  }
  hid_t type = string_type();
  hsize_t cnt = n;
  hid_t space = H5Screate_simple(1, &cnt, NULL);
  if (type >= 0 && space >= 0) H5Dvlen_reclaim(type, space, H5P_DEFAULT, ptrs);
  if (space >= 0) H5Sclose(space);
  if (type >= 0) H5Tclose(type);
  free(ptrs);
  return r;
}

void h5s_free(void *p) { free(p); }

/* ---- attributes ---- */

static int set_attr(hid_t obj, const char *name, hid_t type, const void *value, char *err, size_t errlen) {
  hid_t space = -1, a = -1;
  herr_t r = -1;
  if (H5Aexists(obj, name) > 0 && H5Adelete(obj, name) < 0) goto out;
  if ((space = H5Screate(H5S_SCALAR)) < 0) goto out;
  if ((a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT)) < 0) goto out;
  r = H5Awrite(a, type, value);
out:
  if (r < 0) fail("H5Awrite failed", err, errlen);
  if (a >= 0) H5Aclose(a);
  if (space >= 0) H5Sclose(space);
  return r < 0 ? -1 : 0;
}

int h5s_attr_set_string(hid_t obj, const char *name, const char *value, char *err, size_t errlen) {
  quiet();
  hid_t t = string_type();
  if (t < 0) return fail("H5Tcopy failed", err, errlen);
  int r = set_attr(obj, name, t, &value, err, errlen);
  H5Tclose(t);
  return r;
}

int h5s_attr_set_int(hid_t obj, const char *name, long long value, char *err, size_t errlen) {
  quiet();
  int64_t v = value;
  return set_attr(obj, name, H5T_NATIVE_INT64, &v, err, errlen);
}

/* bool_type is h5py's boolean: an int8 enum with FALSE = 0 and TRUE = 1. */
static hid_t bool_type(void) {
  hid_t t = H5Tenum_create(H5T_NATIVE_INT8);
  if (t < 0) return t;
  int8_t f = 0, tr = 1;
  if (H5Tenum_insert(t, "FALSE", &f) < 0 || H5Tenum_insert(t, "TRUE", &tr) < 0) {
    H5Tclose(t);
    return -1;
  }
  return t;
}

int h5s_attr_set_bool(hid_t obj, const char *name, int value, char *err, size_t errlen) {
  quiet();
  hid_t t = bool_type();
  if (t < 0) return fail("H5Tenum_create failed", err, errlen);
  int8_t v = value ? 1 : 0;
  int r = set_attr(obj, name, t, &v, err, errlen);
  H5Tclose(t);
  return r;
}

int h5s_attr_count(hid_t obj, char *err, size_t errlen) {
  quiet();
  H5O_info_t info;
  if (H5Oget_info2(obj, &info, H5O_INFO_NUM_ATTRS) < 0) return fail("H5Oget_info2 failed", err, errlen);
  return (int)info.num_attrs;
}

int h5s_attr_get(hid_t obj, int idx, char *name, size_t namelen, int *type, long long *ival, double *fval,
                 char **sval, char *err, size_t errlen) {
  quiet();
  *type = H5S_ATTR_OTHER;
  *sval = NULL;
  hid_t a = -1, t = -1, space = -1, mt = -1;
  int ok = 0;
  if ((a = H5Aopen_by_idx(obj, ".", H5_INDEX_NAME, H5_ITER_INC, (hsize_t)idx, H5P_DEFAULT, H5P_DEFAULT)) < 0) goto out;
  if (H5Aget_name(a, namelen, name) < 0) goto out;
  if ((t = H5Aget_type(a)) < 0 || (space = H5Aget_space(a)) < 0) goto out;
  if (H5Sget_simple_extent_npoints(space) != 1) {
    ok = 1; /* arrays are reported as "other" */
    goto out;
  }
  switch (H5Tget_class(t)) {
  case H5T_STRING:
    if (H5Tis_variable_str(t)) {
      char *s = NULL;
      if ((mt = string_type()) < 0 || H5Aread(a, mt, &s) < 0) goto out;
      *sval = strdup(s ? s : "");
      H5Dvlen_reclaim(mt, space, H5P_DEFAULT, &s);
    } else {
      size_t n = H5Tget_size(t);
      if (n > (1u << 20)) { /* a damaged file's claim: not read */
        ok = 1;
        goto out;
      }
      char *s = calloc(n + 1, 1);
      if (!s || H5Aread(a, t, s) < 0) {
        free(s);
        goto out;
      }
      *sval = s;
    }
    *type = H5S_ATTR_STRING;
    break;
  case H5T_INTEGER:
    if (H5Aread(a, H5T_NATIVE_LLONG, ival) < 0) goto out;
    *type = H5S_ATTR_INT;
    break;
  case H5T_FLOAT:
    if (H5Aread(a, H5T_NATIVE_DOUBLE, fval) < 0) goto out;
    *type = H5S_ATTR_FLOAT;
    break;
  case H5T_ENUM:
    if (H5Tget_size(t) == 1 && H5Tget_nmembers(t) == 2) {
      int8_t v = 0;
      if (H5Aread(a, t, &v) < 0) goto out;
      *ival = v;
      *type = H5S_ATTR_BOOL;
    }
    break;
  default: break;
  }
  ok = 1;
out:
  if (!ok) fail("reading an attribute failed", err, errlen);
  if (mt >= 0) H5Tclose(mt);
  if (space >= 0) H5Sclose(space);
  if (t >= 0) H5Tclose(t);
  if (a >= 0) H5Aclose(a);
  return ok ? 0 : -1;
}
