/* gemm.cuh: the Linear layers through cuBLASLt: Y = X W^T (+ bias) with fp32 accumulation,
   one cached plan (descriptors + heuristic algorithm) per shape. */
#ifndef CLIP_CUDA_GEMM_CUH
#define CLIP_CUDA_GEMM_CUH
#include <cublasLt.h>

#include "common.cuh"
#include "internal.h"

#define CLIP_GEMM_CACHE 96

typedef struct clip_gemm_plan {
  int used;
  unsigned long stamp; /* last use, for eviction */
  clip_dtype dt;
  int rows, out, in; /* Y (rows, out) = X (rows, in) W^T, W (out, in) */
  size_t ldx, ldy;   /* row strides (elements) of X and Y */
  int bias;
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t a, b, d;
  cublasLtMatmulAlgo_t algo;
} clip_gemm_plan;

typedef struct clip_gemm_ctx {
  cublasLtHandle_t lt;
  void *workspace; /* device, 256-byte aligned */
  size_t workspace_bytes;
  clip_gemm_plan plan[CLIP_GEMM_CACHE];
  unsigned long clock;
} clip_gemm_ctx;

/* Creates the cuBLASLt handle; workspace is the caller's device buffer. */
clip_status clip_gemm_init(clip_engine *e, clip_gemm_ctx *g, void *workspace, size_t workspace_bytes);
void clip_gemm_destroy(clip_gemm_ctx *g);

/* Finds or makes the plan for this shape (descriptors, heuristic). Called at init for the
   max_batch shapes and lazily (host work only, no device allocation) for others. bias: the
   bias vector the plan's epilogue adds (NULL: no bias); the pointer itself is set per call. */
clip_status clip_gemm_plan_get(clip_engine *e, clip_gemm_ctx *g, clip_dtype dt, int rows, int out,
                               int in, size_t ldx, size_t ldy, const void *bias,
                               clip_gemm_plan **plan);

/* Y (rows, out; row stride ldy) = X (rows, in; row stride ldx) * W^T (+ bias[out]),
   W (out, in) row-major, all in dtype dt (bias too); fp32 accumulation. Pointers must be
   256-byte aligned (cuBLASLt's default heuristic assumption). */
clip_status clip_gemm(clip_engine *e, clip_gemm_ctx *g, clip_dtype dt, const void *X, size_t ldx,
                      const void *W, const void *bias, void *Y, size_t ldy, int rows, int out, int in,
                      cudaStream_t stream);
#endif
