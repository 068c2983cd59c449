/* test_gemm.c: checks C = A @ B^T (+ bias, + C) of engine/src/gemm.c against a naive
   double-precision loop, for both implementations: the one the library was built with
   (OpenBLAS when found) and the portable C kernel, compiled here from the same source with
   CLIP_HAVE_OPENBLAS undefined. Odd sizes exercise the tile edges. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h" /* the library's exported clip_sgemm_nt / _acc (built path) */

/* The fallback under other names, so it can sit beside the library's symbols. */
#undef CLIP_HAVE_OPENBLAS
#define clip_sgemm_nt fallback_sgemm_nt
#define clip_sgemm_nt_acc fallback_sgemm_nt_acc
#define clip_gemm_impl_name fallback_gemm_impl_name
#define clip_sgemm_small fallback_sgemm_small
#include "../src/gemm.c"
#undef clip_sgemm_nt
#undef clip_sgemm_nt_acc
#undef clip_gemm_impl_name
#undef clip_sgemm_small

typedef void (*gemm_fn)(int, int, int, const float *, const float *, const float *, float *, int);

/* The C kernel with one particular tile variant forced (the library picks the widest the
   CPU has, so the others would go untested): the same tiling loop as gemm_nt, one thread. */
static tile_fn forced_tile;
static void forced_gemm(int M, int N, int K, const float *A, const float *B, const float *bias,
                        float *C, int accumulate) {
  prefill_rows(M, N, bias, C, accumulate, 1);
  if (K <= 0) return;
  const int tn = (N + NB - 1) / NB, tiles = ((M + MB - 1) / MB) * tn;
  for (int t = 0; t < tiles; t++) forced_tile(M, N, K, A, B, C, (t / tn) * MB, (t % tn) * NB);
}
static void forced_set(int M, int N, int K, const float *A, const float *B, const float *bias,
                       float *C, int threads) {
  forced_gemm(M, N, K, A, B, bias, C, 0);
}
static void forced_acc(int M, int N, int K, const float *A, const float *B, const float *bias,
                       float *C, int threads) {
  forced_gemm(M, N, K, A, B, bias, C, 1);
}

static unsigned long long rng_state = 88172645463325252ULL;
static float frand(void) { /* xorshift64 -> uniform [-1, 1) */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (float)((rng_state >> 40) / (double)(1ULL << 24) * 2.0 - 1.0);
}

static int failures = 0;

/* Runs one case; returns the max abs error relative to sum_k |a||b| (the fp32 error scale). */
static void check(const char *impl, gemm_fn fn, int accumulate, int M, int N, int K, int with_bias,
                  int threads) {
  float *A = malloc(sizeof(float) * (size_t)(M * K + 1));
  float *B = malloc(sizeof(float) * (size_t)(N * K + 1));
  float *bias = malloc(sizeof(float) * (size_t)(N + 1));
  float *C = malloc(sizeof(float) * (size_t)(M * N + 1));
  float *C0 = malloc(sizeof(float) * (size_t)(M * N + 1));
  for (int i = 0; i < M * K; i++) A[i] = frand();
  for (int i = 0; i < N * K; i++) B[i] = frand();
  for (int i = 0; i < N; i++) bias[i] = frand();
  /* C starts as garbage (non-accumulating must overwrite it) or as the residual */
  for (int i = 0; i < M * N; i++) C0[i] = C[i] = accumulate ? frand() : 1e30f;
  fn(M, N, K, A, B, with_bias ? bias : NULL, C, threads);
  double worst = 0;
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double s = 0, mag = 1e-30;
      for (int k = 0; k < K; k++) {
        s += (double)A[i * K + k] * B[j * K + k];
        mag += fabs((double)A[i * K + k] * B[j * K + k]);
      }
      if (with_bias) s += bias[j], mag += fabs(bias[j]);
      if (accumulate) s += C0[i * N + j], mag += fabs(C0[i * N + j]);
      double err = fabs(s - C[i * N + j]) / mag;
      if (!(err <= worst)) worst = err; /* NaN propagates into worst */
    }
  /* fp32 rounding gives ~1e-7 of the magnitude; any indexing or tiling bug gives ~1e-1 */
  double bound = 2e-6;
  int ok = worst <= bound;
  if (!ok) failures++;
  printf("%-8s %-3s M=%4d N=%4d K=%4d bias=%d threads=%d  rel err %.2e (bound %.1e) %s\n", impl,
         accumulate ? "acc" : "set", M, N, K, with_bias, threads, worst, bound, ok ? "ok" : "FAIL");
  free(A), free(B), free(bias), free(C), free(C0);
}

int main(void) {
  static const int shapes[][3] = {{1, 1, 1},   {3, 5, 7},    {4, 16, 128}, {17, 33, 129},
                                  {65, 70, 300}, {100, 64, 64}, {50, 97, 256}, {129, 130, 31},
                                  {8, 512, 768}};
  const struct { const char *name; gemm_fn set, acc; } impls[] = {
      {clip_gemm_impl_name(), clip_sgemm_nt, clip_sgemm_nt_acc},
      {"c-kernel", fallback_sgemm_nt, fallback_sgemm_nt_acc},
  };
  printf("library GEMM: %s\n", clip_gemm_impl_name());
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int im = 0; im < 2; im++)
      for (int acc = 0; acc < 2; acc++)
        for (int bias = 0; bias < 2; bias++)
          check(impls[im].name, acc ? impls[im].acc : impls[im].set, acc, shapes[s][0],
                shapes[s][1], shapes[s][2], bias, 1 + ((int)s + bias) % 2);

  /* every tile variant of the C kernel this CPU can run */
  struct { const char *name; tile_fn fn; int ok; } tiles[] = {
      {"plain", tile_plain, 1},
#ifdef CLIP_GEMM_X86_DISPATCH
      {"avx2", tile_avx2, __builtin_cpu_supports("avx2")},
      {"avx512", tile_avx512, __builtin_cpu_supports("avx512f")},
#endif
  };
  for (size_t v = 0; v < sizeof tiles / sizeof tiles[0]; v++) {
    if (!tiles[v].ok) {
      printf("tile %s: not supported by this CPU, skipped\n", tiles[v].name);
      continue;
    }
    forced_tile = tiles[v].fn;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
      for (int acc = 0; acc < 2; acc++)
        check(tiles[v].name, acc ? forced_acc : forced_set, acc, shapes[s][0], shapes[s][1],
              shapes[s][2], 1, 1);
  }

  /* the strided small product used by attention, both forms, against the naive loop */
  {
    enum { M = 13, N = 11, K = 9, LDA = 20, LDB = 17, LDC = 15 };
    float A[M * LDA], Bt[N * LDB], Bn[K * LDB], Cs[M * LDC];
    for (int i = 0; i < M * LDA; i++) A[i] = frand();
    for (int i = 0; i < N * LDB; i++) Bt[i] = frand();
    for (int i = 0; i < K * LDB; i++) Bn[i] = frand();
    for (int v = 0; v < 4; v++) {
      const int tr = v & 1;
      const char *impl = v < 2 ? clip_gemm_impl_name() : "c-kernel";
      for (int i = 0; i < M * LDC; i++) Cs[i] = 7.0f; /* padding must stay untouched */
      (v < 2 ? clip_sgemm_small : fallback_sgemm_small)(tr, M, N, K, 0.5f, A, LDA, tr ? Bt : Bn,
                                                        LDB, Cs, LDC);
      double worst = 0;
      int pad_ok = 1;
      for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
          double ref = 0;
          for (int k = 0; k < K; k++)
            ref += (double)A[i * LDA + k] * (tr ? Bt[j * LDB + k] : Bn[k * LDB + j]);
          ref *= 0.5;
          double err = fabs(ref - Cs[i * LDC + j]);
          if (!(err <= worst)) worst = err;
        }
        for (int j = N; j < LDC; j++) pad_ok &= Cs[i * LDC + j] == 7.0f;
      }
      int ok = worst < 1e-5 && pad_ok;
      if (!ok) failures++;
      printf("%-8s small trans_b=%d strided: max err %.2e, padding %s %s\n", impl, tr, worst, pad_ok ? "kept" : "OVERWRITTEN", ok ? "ok" : "FAIL");
    }
  }
  /* K = 0: the product is empty, the result is bias (or C + bias) */
  float C[6] = {9, 9, 9, 9, 9, 9}, bias[3] = {1, 2, 3};
  fallback_sgemm_nt(2, 3, 0, NULL, NULL, bias, C, 1);
  if (C[0] != 1 || C[5] != 3) {
    printf("K=0 set: got %g %g, want 1 3\n", C[0], C[5]);
    failures++;
  }
  clip_sgemm_nt_acc(2, 3, 0, NULL, NULL, bias, C, 1);
  if (C[0] != 2 || C[5] != 6) {
    printf("K=0 acc: got %g %g, want 2 6\n", C[0], C[5]);
    failures++;
  }
  if (failures) {
    printf("%d failures\n", failures);
    return 1;
  }
  printf("all ok\n");
  return 0;
}
