/* gemm.c: C = A @ B^T (+ bias, optionally + C) for the CPU backend. With CLIP_HAVE_OPENBLAS
   the product goes to cblas_sgemm; without it a cache-blocked C kernel runs, split over
   OpenMP threads by output tiles. The C kernel is also what the GPU machine's CPU path
   uses, since that machine has no OpenBLAS. */
#include "gemm.h"

#include <stddef.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef CLIP_HAVE_OPENBLAS
#include <cblas.h>
#endif

/* Writes bias (or zeros) into every row of C, or adds bias to C when accumulating, so the
   product itself can always accumulate (beta = 1). */
static void prefill_rows(int M, int N, const float *bias, float *C, int accumulate, int threads) {
  if (accumulate && !bias) return;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if ((size_t)M * N > 65536)
#endif
  for (int i = 0; i < M; i++) {
    float *c = C + (size_t)i * N;
    if (accumulate) {
      for (int j = 0; j < N; j++) c[j] += bias[j];
    } else if (bias) {
      memcpy(c, bias, sizeof(float) * (size_t)N);
    } else {
      memset(c, 0, sizeof(float) * (size_t)N);
    }
  }
}

#ifdef CLIP_HAVE_OPENBLAS

const char *clip_gemm_impl_name(void) { return "openblas"; }

/* OpenBLAS runs single-threaded and the CPU backend's OpenMP threads each multiply one slice
   of the output. Letting OpenBLAS start its own pthreads instead made both thread pools
   busy-wait against each other between GEMMs and the element-wise OpenMP loops (measured:
   a B/32 batch took 1.5-2x longer on 2 cores). OpenBLAS's thread count is process-wide; it
   is only set when it differs. */
static void blas_single_threaded(void) {
  if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}

static void gemm_nt(int M, int N, int K, const float *A, const float *B, const float *bias,
                    float *C, int accumulate, int threads) {
  if (M <= 0 || N <= 0) return;
  if (threads < 1) threads = 1;
  blas_single_threaded();
  float beta = 1.0f;
  if (!accumulate && !bias) {
    beta = 0.0f; /* no prefill pass needed */
  } else {
    prefill_rows(M, N, bias, C, accumulate, threads);
  }
  if (K <= 0) {
    if (beta == 0.0f) prefill_rows(M, N, NULL, C, 0, threads);
    return;
  }
  /* Small products are not worth waking threads for. */
  if ((double)M * N * K < 2e6) threads = 1;
  /* Each thread packs all of the operand it does not split, so split the larger one: rows
     of C when A is the larger (M >= N), columns (rows of the weight B) otherwise. */
  const int split_rows = M >= N;
  const int len = split_rows ? M : N;
  if (threads > len) threads = len;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
  {
#ifdef _OPENMP
    const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
#else
    const int tid = 0, nt = 1;
#endif
    /* slices rounded to 8 rows/columns (whole kernel panels, 32-byte aligned columns)
       without unbalancing the common 400-row (8 x 50 tokens) case */
    int chunk = (len + nt - 1) / nt;
    chunk = (chunk + 7) / 8 * 8;
    const int lo = tid * chunk;
    const int hi = lo + chunk < len ? lo + chunk : len;
    if (lo < hi) {
      if (split_rows)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, hi - lo, N, K, 1.0f,
                    A + (size_t)lo * K, K, B, K, beta, C + (size_t)lo * N, N);
      else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, hi - lo, K, 1.0f, A, K,
                    B + (size_t)lo * K, K, beta, C + lo, N);
    }
  }
}

#else /* portable C kernel */

const char *clip_gemm_impl_name(void) { return "c"; }

/* Tile sizes: a thread owns an MB x NB tile of C; B's NB x KC slice is packed k-major
   (bp[k][j]) so the inner loop streams 16 contiguous floats of B per k and keeps a 4 x 16
   block of C in registers/L1. 128 x 64 floats = 32 KB of packed B fits in L1/L2. */
enum { MB = 64, NB = 64, KC = 128, MR = 4, NR = 16 };

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
/* 8 floats as one value: with AVX2/AVX-512 enabled the 4 x 16 block below becomes 8
   accumulator registers. Only used in functions compiled for those ISAs (the baseline
   SSE2 build splits 32-byte vectors badly), picked at run time by CPU features. */
typedef float vf8 __attribute__((vector_size(32)));
#define CLIP_GEMM_X86_DISPATCH 1
#define CLIP_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define CLIP_ALWAYS_INLINE inline
#endif

/* One MB x NB tile of C += A @ B^T. `vec` is a compile-time constant at each call site. */
static CLIP_ALWAYS_INLINE void tile_impl(int M, int N, int K, const float *A, const float *B,
                                         float *C, int m0, int n0, int vec) {
#ifdef CLIP_GEMM_X86_DISPATCH
  vf8 bpv[KC * NB / 8]; /* 32-byte aligned storage for the packed panel */
  float *bp = (float *)bpv;
#else
  float bp[KC * NB];
  (void)vec;
#endif
  const int mend = m0 + MB < M ? m0 + MB : M;
  const int nend = n0 + NB < N ? n0 + NB : N;
  for (int k0 = 0; k0 < K; k0 += KC) {
    const int kc = K - k0 < KC ? K - k0 : KC;
    /* pack B[n0..nend)[k0..k0+kc) transposed, zero-padded to NB columns */
    for (int j = 0; j < NB; j++) {
      const int col = n0 + j;
      if (col < nend) {
        const float *b = B + (size_t)col * K + k0;
        for (int k = 0; k < kc; k++) bp[k * NB + j] = b[k];
      } else {
        for (int k = 0; k < kc; k++) bp[k * NB + j] = 0.0f;
      }
    }
    for (int i = m0; i < mend; i += MR) {
      /* rows past the end re-read the last row; their results are dropped */
      const float *a[MR];
      for (int r = 0; r < MR; r++) a[r] = A + (size_t)(i + r < mend ? i + r : mend - 1) * K + k0;
      const int mr = mend - i < MR ? mend - i : MR;
      for (int j0 = 0; j0 < nend - n0; j0 += NR) {
        float acc[MR][NR];
#ifdef CLIP_GEMM_X86_DISPATCH
        if (vec) {
          vf8 c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0}, c30 = {0},
              c31 = {0};
          const vf8 *bv = (const vf8 *)(bp + j0);
          for (int k = 0; k < kc; k++) {
            const vf8 b0 = bv[k * (NB / 8)], b1 = bv[k * (NB / 8) + 1];
            c00 += a[0][k] * b0, c01 += a[0][k] * b1;
            c10 += a[1][k] * b0, c11 += a[1][k] * b1;
            c20 += a[2][k] * b0, c21 += a[2][k] * b1;
            c30 += a[3][k] * b0, c31 += a[3][k] * b1;
          }
          memcpy(acc[0], &c00, 32), memcpy(acc[0] + 8, &c01, 32);
          memcpy(acc[1], &c10, 32), memcpy(acc[1] + 8, &c11, 32);
          memcpy(acc[2], &c20, 32), memcpy(acc[2] + 8, &c21, 32);
          memcpy(acc[3], &c30, 32), memcpy(acc[3] + 8, &c31, 32);
        } else
#endif
        {
          for (int r = 0; r < MR; r++)
            for (int j = 0; j < NR; j++) acc[r][j] = 0.0f;
          const float *b = bp + j0;
          for (int k = 0; k < kc; k++) {
            const float *bk = b + (size_t)k * NB;
            for (int r = 0; r < MR; r++) {
              const float av = a[r][k];
              for (int j = 0; j < NR; j++) acc[r][j] += av * bk[j];
            }
          }
        }
        const int nr = nend - n0 - j0 < NR ? nend - n0 - j0 : NR;
        for (int r = 0; r < mr; r++) {
          float *c = C + (size_t)(i + r) * N + n0 + j0;
          for (int j = 0; j < nr; j++) c[j] += acc[r][j];
        }
      }
    }
  }
}

typedef void (*tile_fn)(int, int, int, const float *, const float *, float *, int, int);

static void tile_plain(int M, int N, int K, const float *A, const float *B, float *C, int m0,
                       int n0) {
  tile_impl(M, N, K, A, B, C, m0, n0, 0);
}

#ifdef CLIP_GEMM_X86_DISPATCH
__attribute__((target("avx2"))) static void tile_avx2(int M, int N, int K, const float *A,
                                                      const float *B, float *C, int m0, int n0) {
  tile_impl(M, N, K, A, B, C, m0, n0, 1);
}
__attribute__((target("avx512f"))) static void tile_avx512(int M, int N, int K, const float *A,
                                                          const float *B, float *C, int m0,
                                                          int n0) {
  tile_impl(M, N, K, A, B, C, m0, n0, 1);
}
#endif

static tile_fn pick_tile(void) {
#ifdef CLIP_GEMM_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return tile_avx512;
  if (__builtin_cpu_supports("avx2")) return tile_avx2;
#endif
  return tile_plain;
}

static void gemm_nt(int M, int N, int K, const float *A, const float *B, const float *bias,
                    float *C, int accumulate, int threads) {
  if (M <= 0 || N <= 0) return;
  if (threads < 1) threads = 1;
  prefill_rows(M, N, bias, C, accumulate, threads);
  if (K <= 0) return;
  const int tm = (M + MB - 1) / MB, tn = (N + NB - 1) / NB;
  const int tiles = tm * tn;
  const tile_fn tile = pick_tile();
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if (tiles > 1)
#endif
  for (int t = 0; t < tiles; t++) tile(M, N, K, A, B, C, (t / tn) * MB, (t % tn) * NB);
}

#endif

void clip_sgemm_small(int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float *C, int ldc) {
  if (M <= 0 || N <= 0) return;
#ifdef CLIP_HAVE_OPENBLAS
  if (K > 0) {
    blas_single_threaded();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha,
                A, lda, B, ldb, 0.0f, C, ldc);
    return;
  }
#endif
  for (int i = 0; i < M; i++) {
    const float *a = A + (size_t)i * lda;
    float *c = C + (size_t)i * ldc;
    if (trans_b) {
      /* four dot products at a time: one horizontal reduction per four outputs */
      int j = 0;
      for (; j + 4 <= N; j += 4) {
        const float *b0 = B + (size_t)j * ldb, *b1 = b0 + ldb, *b2 = b1 + ldb, *b3 = b2 + ldb;
        float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f, d3 = 0.0f;
#ifdef _OPENMP
#pragma omp simd reduction(+ : d0, d1, d2, d3)
#endif
        for (int k = 0; k < K; k++) {
          d0 += a[k] * b0[k];
          d1 += a[k] * b1[k];
          d2 += a[k] * b2[k];
          d3 += a[k] * b3[k];
        }
        c[j] = alpha * d0, c[j + 1] = alpha * d1, c[j + 2] = alpha * d2, c[j + 3] = alpha * d3;
      }
      for (; j < N; j++) {
        const float *b = B + (size_t)j * ldb;
        float d = 0.0f;
#ifdef _OPENMP
#pragma omp simd reduction(+ : d)
#endif
        for (int k = 0; k < K; k++) d += a[k] * b[k];
        c[j] = alpha * d;
      }
    } else {
      for (int j = 0; j < N; j++) c[j] = 0.0f;
      for (int k = 0; k < K; k++) {
        const float av = alpha * a[k];
        const float *b = B + (size_t)k * ldb;
#ifdef _OPENMP
#pragma omp simd
#endif
        for (int j = 0; j < N; j++) c[j] += av * b[j];
      }
    }
  }
}

void clip_sgemm_nt(int M, int N, int K, const float *A, const float *B, const float *bias,
                   float *C, int threads) {
  gemm_nt(M, N, K, A, B, bias, C, 0, threads);
}

void clip_sgemm_nt_acc(int M, int N, int K, const float *A, const float *B, const float *bias,
                       float *C, int threads) {
  gemm_nt(M, N, K, A, B, bias, C, 1, threads);
}
