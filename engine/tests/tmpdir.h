/* tmpdir.h: a scratch directory for the C tests: made under $TMPDIR (else /tmp) with a
   unique name, removed with everything in it at the end; subdirectories and small files in
   it. */
#ifndef CLIP_TESTS_TMPDIR_H
#define CLIP_TESTS_TMPDIR_H
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

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

/* tmp_subdir makes the directory root/name and returns its path (valid for the next 7 calls);
   it aborts when it cannot. */
static const char *tmp_subdir(const char *root, const char *name) {
  static char path[8][700];
  static int next;
  char *p = path[next++ % 8];
  snprintf(p, sizeof path[0], "%s/%s", root, name);
  if (mkdir(p, 0755) != 0) {
    perror(p);
    abort();
  }
  return p;
}

/* tmp_write_file writes text to dir/file; it aborts when it cannot. */
static void tmp_write_file(const char *dir, const char *file, const char *text) {
  char p[800];
  snprintf(p, sizeof p, "%s/%s", dir, file);
  FILE *fp = fopen(p, "wb");
  if (!fp) {
    perror(p);
    abort();
  }
  fputs(text, fp);
  fclose(fp);
}

/* remove_tmp_root deletes root and everything below it. */
static void remove_tmp_root(const char *root) { nftw(root, tmp_rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

#endif
