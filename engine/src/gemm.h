/* gemm.h: the matrix products of the CPU backend, in PyTorch Linear's layout (weights
   [out, in] row-major, so every product is A @ B^T). OpenBLAS's cblas_sgemm does the work
   when the library is built with CLIP_HAVE_OPENBLAS; otherwise a blocked C kernel,
   parallelised with OpenMP, does. */
#ifndef CLIP_GEMM_H
#define CLIP_GEMM_H

#include "clipengine.h" /* CLIP_API */

#ifdef __cplusplus
extern "C" {
#endif

/* Exported (CLIP_API) only so engine/tests/test_gemm.c can check the built path; not part
   of the public API. */

/* C (M,N) = A (M,K) @ B^T + bias, with B (N,K) row-major and bias (N) or NULL.
   `threads` >= 1 bounds the threads used for this call. */
CLIP_API void clip_sgemm_nt(int M, int N, int K, const float *A, const float *B, const float *bias,
                   float *C, int threads);

/* C (M,N) += A (M,K) @ B^T + bias: the residual-add form (C is read). */
CLIP_API void clip_sgemm_nt_acc(int M, int N, int K, const float *A, const float *B, const float *bias,
                       float *C, int threads);

/* Single-threaded strided product for small matrices (attention's per-head products),
   safe to call from several threads at once: C (M,N; ldc) = alpha * A (M,K; lda) @ op(B),
   op(B) = B^T with B (N,K; ldb) when trans_b, else B (K,N; ldb). C is overwritten. */
CLIP_API void clip_sgemm_small(int trans_b, int M, int N, int K, float alpha, const float *A,
                               int lda, const float *B, int ldb, float *C, int ldc);

/* "openblas" or "c": which implementation this build uses (for the backend's name). */
CLIP_API const char *clip_gemm_impl_name(void);

#ifdef __cplusplus
}
#endif
#endif /* CLIP_GEMM_H */
