/* gemm.cu: cuBLASLt matmuls for the Linear layers. Row-major Y = X W^T is computed as the
   column-major Y^T (out, rows) = W (in, out)^T * X^T (in, rows): A = W with TRANSA = T,
   B = X untransposed, D = Y. The bias epilogue adds bias[out] to every row of Y (cuBLASLt
   broadcasts along D's columns; D's rows are Y's features). Plans are cached per shape. */
#include <stdio.h>
#include <string.h>

#include "gemm.cuh"

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

#define LT_TRY(e, call)                                                                       \
  do {                                                                                        \
    cublasStatus_t st_ = (call);                                                              \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                         \
      return clip_set_error((e), st_ == CUBLAS_STATUS_ALLOC_FAILED ? CLIP_ERR_OUT_OF_MEMORY    \
                                                                   : CLIP_ERR_BACKEND,        \
                            "%s:%d: %s failed: %s (%d)", base_name(__FILE__), __LINE__, #call, \
                            cublasLtGetStatusString(st_), (int)st_);                          \
  } while (0)

static cudaDataType_t cuda_type(clip_dtype dt) {
  switch (dt) {
  case CLIP_DT_F16: return CUDA_R_16F;
  case CLIP_DT_BF16: return CUDA_R_16BF;
  default: return CUDA_R_32F;
  }
}

static const char *dt_name(clip_dtype dt) {
  return dt == CLIP_DT_F16 ? "fp16" : dt == CLIP_DT_BF16 ? "bf16" : "fp32";
}

clip_status clip_gemm_init(clip_engine *e, clip_gemm_ctx *g, void *workspace, size_t workspace_bytes) {
  memset(g, 0, sizeof *g);
  LT_TRY(e, cublasLtCreate(&g->lt));
  g->workspace = workspace;
  g->workspace_bytes = workspace_bytes;
  return CLIP_OK;
}

static void plan_release(clip_gemm_plan *p) {
  if (p->d) cublasLtMatrixLayoutDestroy(p->d);
  if (p->b) cublasLtMatrixLayoutDestroy(p->b);
  if (p->a) cublasLtMatrixLayoutDestroy(p->a);
  if (p->desc) cublasLtMatmulDescDestroy(p->desc);
  memset(p, 0, sizeof *p);
}

void clip_gemm_destroy(clip_gemm_ctx *g) {
  for (int i = 0; i < CLIP_GEMM_CACHE; i++)
    if (g->plan[i].used || g->plan[i].desc) plan_release(&g->plan[i]);
  if (g->lt) cublasLtDestroy(g->lt);
  g->lt = NULL;
}

/* Builds descriptors and asks the heuristic for the best algorithm; on failure the partially
   built plan is released by the caller. */
static clip_status plan_build(clip_engine *e, clip_gemm_ctx *g, clip_gemm_plan *p, const void *bias) {
  const cudaDataType_t t = cuda_type(p->dt);
  LT_TRY(e, cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const int32_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
  LT_TRY(e, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof opT));
  LT_TRY(e, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof opN));
  const cublasLtEpilogue_t epi = p->bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
  LT_TRY(e, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
  if (bias) /* the heuristic sees a real bias pointer, as at run time */
    LT_TRY(e, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                             sizeof bias));
  /* A = W stored column-major as (in, out), ld = in; op(A) = W^T... as seen by cuBLASLt
     op(A) is (out, in) = m x k. */
  LT_TRY(e, cublasLtMatrixLayoutCreate(&p->a, t, (uint64_t)p->in, (uint64_t)p->out, (int64_t)p->in));
  /* B = X stored column-major as (in, rows), ld = ldx: k x n. */
  LT_TRY(e, cublasLtMatrixLayoutCreate(&p->b, t, (uint64_t)p->in, (uint64_t)p->rows, (int64_t)p->ldx));
  /* D = Y stored column-major as (out, rows), ld = ldy: m x n. C uses the same layout. */
  LT_TRY(e, cublasLtMatrixLayoutCreate(&p->d, t, (uint64_t)p->out, (uint64_t)p->rows, (int64_t)p->ldy));

  cublasLtMatmulPreference_t pref = NULL;
  LT_TRY(e, cublasLtMatmulPreferenceCreate(&pref));
  uint64_t ws = g->workspace_bytes;
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                           &ws, sizeof ws);
  cublasLtMatmulHeuristicResult_t res;
  memset(&res, 0, sizeof res);
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic(g->lt, p->desc, p->a, p->b, p->d, p->d, pref, 1, &res, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS)
    return clip_set_error(e, CLIP_ERR_BACKEND,
                          "%s:%d: cublasLtMatmulAlgoGetHeuristic (%s, rows %d, out %d, in %d, bias %d) "
                          "failed: %s (%d)",
                          base_name(__FILE__), __LINE__, dt_name(p->dt), p->rows, p->out, p->in,
                          p->bias, cublasLtGetStatusString(st), (int)st);
  if (found < 1 || res.state != CUBLAS_STATUS_SUCCESS)
    return clip_set_error(e, CLIP_ERR_BACKEND,
                          "%s:%d: cuBLASLt has no algorithm for %s GEMM rows %d, out %d, in %d, "
                          "ldx %zu, ldy %zu, bias %d",
                          base_name(__FILE__), __LINE__, dt_name(p->dt), p->rows, p->out, p->in,
                          p->ldx, p->ldy, p->bias);
  p->algo = res.algo;
  return CLIP_OK;
}

clip_status clip_gemm_plan_get(clip_engine *e, clip_gemm_ctx *g, clip_dtype dt, int rows, int out,
                               int in, size_t ldx, size_t ldy, const void *bias_ptr,
                               clip_gemm_plan **plan) {
  const int bias = bias_ptr ? 1 : 0;
  int free_slot = -1, oldest = 0;
  for (int i = 0; i < CLIP_GEMM_CACHE; i++) {
    clip_gemm_plan *p = &g->plan[i];
    if (!p->used) {
      if (free_slot < 0) free_slot = i;
      continue;
    }
    if (p->dt == dt && p->rows == rows && p->out == out && p->in == in && p->ldx == ldx &&
        p->ldy == ldy && p->bias == bias) {
      p->stamp = ++g->clock;
      *plan = p;
      return CLIP_OK;
    }
    if (p->stamp < g->plan[oldest].stamp || !g->plan[oldest].used) oldest = i;
  }
  const int slot = free_slot >= 0 ? free_slot : oldest;
  clip_gemm_plan *p = &g->plan[slot];
  if (p->used || p->desc) plan_release(p);
  p->dt = dt;
  p->rows = rows;
  p->out = out;
  p->in = in;
  p->ldx = ldx;
  p->ldy = ldy;
  p->bias = bias;
  clip_status s = plan_build(e, g, p, bias_ptr);
  if (s != CLIP_OK) {
    plan_release(p);
    return s;
  }
  p->used = 1;
  p->stamp = ++g->clock;
  *plan = p;
  return CLIP_OK;
}

clip_status clip_gemm(clip_engine *e, clip_gemm_ctx *g, clip_dtype dt, const void *X, size_t ldx,
                      const void *W, const void *bias, void *Y, size_t ldy, int rows, int out, int in,
                      cudaStream_t stream) {
  if (rows <= 0) return CLIP_OK;
  clip_gemm_plan *p = NULL;
  clip_status s = clip_gemm_plan_get(e, g, dt, rows, out, in, ldx, ldy, bias, &p);
  if (s != CLIP_OK) return s;
  if (bias)
    LT_TRY(e, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                             sizeof bias));
  const float alpha = 1.0f, beta = 0.0f;
  LT_TRY(e, cublasLtMatmul(g->lt, p->desc, &alpha, W, p->a, X, p->b, &beta, Y, p->d, Y, p->d, &p->algo,
                           g->workspace, g->workspace_bytes, stream));
  return CLIP_OK;
}
