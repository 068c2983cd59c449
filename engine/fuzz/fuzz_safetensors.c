/* fuzz_safetensors.c: libFuzzer harness for the safetensors parser (safetensors.c). Each input
   is the whole file, written to a memfd that clip_st_open maps through /proc/self/fd. An
   accepted file must be what safetensors.h promises: every tensor inside the data section,
   sized by its shape and dtype, findable by name; a refused one leaves an empty struct and a
   message. */
#define _GNU_SOURCE /* memfd_create */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "safetensors.h"

static int fd = -1;
static char path[64];

/* write_input replaces the memfd's contents with data. */
static void write_input(const uint8_t *data, size_t size) {
  if (fd < 0) {
    fd = memfd_create("fuzz.safetensors", 0);
    if (fd < 0) abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  write_input(data, size);
  clip_st_file f;
  char err[512];
  err[0] = 0;
  clip_status s = clip_st_open(path, &f, err, sizeof err);
  if (s != CLIP_OK) {
    if (f.map || f.tensors || f.count || !err[0]) abort();
    return 0;
  }
  const unsigned char *base = (const unsigned char *)f.map;
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; i--) header_len = header_len << 8 | base[i];
  const unsigned char *data_start = base + 8 + header_len;
  volatile unsigned sum = 0;
  for (size_t i = 0; i < f.count; i++) {
    const clip_st_tensor *t = &f.tensors[i];
    if (t->ndim < 0 || t->ndim > CLIP_ST_MAX_DIMS || t->end < t->begin) abort();
    if (t->end - t->begin != t->numel * t->elem_size) abort();
    if (t->data != data_start + t->begin || data_start + t->end > base + f.map_len) abort();
    if (clip_st_find(&f, t->name) != t) abort();
    for (uint64_t k = 0; k < t->end - t->begin; k++) sum += t->data[k]; /* every byte readable */
    char shape[160];
    clip_st_shape_string(t->shape, t->ndim, shape, sizeof shape);
    if (!memchr(shape, 0, sizeof shape)) abort();
  }
  (void)sum;
  clip_st_close(&f);
  clip_st_close(&f); /* safe twice */
  return 0;
}
