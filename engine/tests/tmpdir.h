/* tmpdir.h: a scratch directory for the C tests: made under $TMPDIR (else /tmp) with a
   unique name, removed with everything in it at the end. */
#ifndef CLIP_TESTS_TMPDIR_H
#define CLIP_TESTS_TMPDIR_H
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

/* make_tmp_root fills root with a new directory "$TMPDIR/<name>_XXXXXX"; 0 on success. */
static int make_tmp_root(char *root, size_t len, const char *name) {
  const char *tmp = getenv("TMPDIR");
  snprintf(root, len, "%s/%s_XXXXXX", tmp && tmp[0] ? tmp : "/tmp", name);
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return -1;
  }
  return 0;
}

static int tmp_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* remove_tmp_root deletes root and everything below it. */
static void remove_tmp_root(const char *root) { nftw(root, tmp_rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

#endif
