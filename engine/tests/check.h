/* check.h: the C tests' assertion macro: CHECK(cond, printf-args) counts every check and
   every failure (reported with file:line) without stopping the test. */
#ifndef CLIP_TESTS_CHECK_H
#define CLIP_TESTS_CHECK_H
#include <stdio.h>

static int failures, checks;

#define CHECK(cond, ...)                                                                       \
  do {                                                                                         \
    checks++;                                                                                  \
    if (!(cond)) {                                                                             \
      failures++;                                                                              \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                     \
      fprintf(stderr, __VA_ARGS__);                                                            \
      fputc('\n', stderr);                                                                     \
    }                                                                                          \
  } while (0)

#endif
