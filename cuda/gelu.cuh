/* gelu.cuh: the MLP activation, in place, after the fc1 GEMM's bias epilogue. */
#ifndef CLIP_CUDA_GELU_CUH
#define CLIP_CUDA_GELU_CUH
#include "common.cuh"

/* h[i] = act(h[i]) for i < count; act = x*sigmoid(1.702x) when quick, else the exact
   0.5x(1+erf(x/sqrt2)). h must be 16-byte aligned (a cudaMalloc'd buffer). */
cudaError_t clip_gelu_launch(void *h, clip_dtype dt, size_t count, int quick, cudaStream_t stream);
#endif
