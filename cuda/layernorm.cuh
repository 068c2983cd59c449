/* layernorm.cuh: LayerNorm with fp32 statistics, optionally fused with the residual add that
   precedes it (x += delta; out = LN(x)). */
#ifndef CLIP_CUDA_LAYERNORM_CUH
#define CLIP_CUDA_LAYERNORM_CUH
#include "common.cuh"

/* For r < rows, with row pointers x + r*x_stride, delta + r*delta_stride, out + r*out_stride
   (strides in elements, so the class-token rows of a (n, T, W) tensor are x_stride = T*W):
     if delta: x[r] += delta[r] (written back to x, fp32)
     out[r] = (x[r] - mean) / sqrt(var + eps) * gamma + beta
   x is float32; delta has dtype delta_dt; out has dtype out_dt (it may be x itself when
   out_dt is f32 and out_stride == x_stride: the normalization is then in place). */
cudaError_t clip_layernorm_launch(float *x, size_t x_stride, const void *delta, clip_dtype delta_dt,
                                  size_t delta_stride, const float *gamma, const float *beta,
                                  void *out, clip_dtype out_dt, size_t out_stride, int rows, int width,
                                  float eps, cudaStream_t stream);

#endif
