/* shim.h: the few HDF5 operations clipd needs, as plain C functions with simple arguments.
 * HDF5's type constants are macros over globals that cgo cannot use, and its error stack is
 * per thread, so each function silences the automatic printing, does its work, and on
 * failure writes the error stack into err before returning, all within one cgo call. */
#ifndef CLIPD_H5_SHIM_H
#define CLIPD_H5_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <hdf5.h>

/* Element kinds of a dataset (the Go side mirrors them). */
enum { H5S_KIND_FLOAT32 = 1, H5S_KIND_FLOAT16 = 2, H5S_KIND_INT64 = 3, H5S_KIND_STRING = 4 };

/* Attribute value types returned by h5s_attr_get. */
enum { H5S_ATTR_OTHER = 0, H5S_ATTR_STRING = 1, H5S_ATTR_INT = 2, H5S_ATTR_FLOAT = 3, H5S_ATTR_BOOL = 4 };

hid_t h5s_file_create(const char *path, char *err, size_t errlen);
hid_t h5s_file_open(const char *path, int write, char *err, size_t errlen);
int h5s_file_close(hid_t f, char *err, size_t errlen);
int h5s_exists(hid_t f, const char *name, char *err, size_t errlen); /* 1, 0 or -1 */

/* cols 0: a 1-D dataset. rows is the initial size; the maximum is unlimited. */
hid_t h5s_dataset_create(hid_t f, const char *name, int kind, hsize_t rows, hsize_t cols, hsize_t chunk_rows,
                         int deflate, size_t cache_bytes, char *err, size_t errlen);
/* Also reports the bytes the dataset's elements take in the file (*elem: 16 for a
 * variable-length string's heap reference) and the bytes allocated for its data (*storage). */
hid_t h5s_dataset_open(hid_t f, const char *name, size_t cache_bytes, int *kind, hsize_t *rows, hsize_t *cols,
                       size_t *elem, hsize_t *storage, char *err, size_t errlen);
int h5s_dataset_close(hid_t d, char *err, size_t errlen);
int h5s_dataset_set_rows(hid_t d, hsize_t rows, hsize_t cols, char *err, size_t errlen);

/* Numeric rows [start, start+n) of a dataset of cols columns (0 for 1-D); buf holds the
 * dataset's kind in native order (float16 as IEEE half bits). */
int h5s_write(hid_t d, int kind, hsize_t start, hsize_t n, hsize_t cols, const void *buf, char *err, size_t errlen);
int h5s_read(hid_t d, int kind, hsize_t start, hsize_t n, hsize_t cols, void *buf, char *err, size_t errlen);

/* Strings: packed holds n NUL-terminated strings back to back; offs[i] is where string i starts. */
int h5s_write_strings(hid_t d, hsize_t start, hsize_t n, const char *packed, const size_t *offs, char *err,
                      size_t errlen);
/* Reads n strings into one malloc'ed block (*packed, free with h5s_free), offs as above. */
int h5s_read_strings(hid_t d, hsize_t start, hsize_t n, char **packed, size_t *offs, char *err, size_t errlen);
void h5s_free(void *p);

/* Scalar attributes on an object (a file id means its root group). */
int h5s_attr_set_string(hid_t obj, const char *name, const char *value, char *err, size_t errlen);
int h5s_attr_set_int(hid_t obj, const char *name, long long value, char *err, size_t errlen);
int h5s_attr_set_bool(hid_t obj, const char *name, int value, char *err, size_t errlen);
int h5s_attr_count(hid_t obj, char *err, size_t errlen);
/* Attribute idx in name order: its name (into name[namelen]) and value by type; *sval is
 * malloc'ed (free with h5s_free) for strings. */
int h5s_attr_get(hid_t obj, int idx, char *name, size_t namelen, int *type, long long *ival, double *fval,
                 char **sval, char *err, size_t errlen);

#endif
