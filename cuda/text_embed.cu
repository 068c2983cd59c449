/* text_embed.cu: the text tower's embedding lookup and end-token gather, one thread per
   element (memory-bound and small: a 77 x 512 sequence is 160 KB of fp32). */
#include "text_embed.cuh"

__global__ void text_embed_kernel(const int32_t *__restrict__ ids, const float *__restrict__ tok,
                                  const float *__restrict__ pos, float *__restrict__ x, int rows,
                                  int ctx, int tokens, int width) {
  const size_t total = (size_t)rows * width;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
    const int r = (int)(e / width), i = (int)(e % width);
    const int b = r / tokens, t = r % tokens;
    x[e] = tok[(size_t)ids[(size_t)b * ctx + t] * width + i] + pos[(size_t)t * width + i];
  }
}

template <typename T>
__global__ void text_gather_kernel(const float *__restrict__ x, const T *__restrict__ delta,
                                   const int32_t *__restrict__ eot, float *__restrict__ sel,
                                   int tokens, int width) {
  const int b = blockIdx.x;
  const size_t row = (size_t)b * tokens + eot[b];
  for (int i = threadIdx.x; i < width; i += blockDim.x)
    sel[(size_t)b * width + i] = x[row * width + i] + clip_to_f(delta[row * width + i]);
}

cudaError_t clip_text_embed_launch(const int32_t *ids, const float *tok, const float *pos, float *x,
                                   int n, int ctx, int tokens, int width, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (tokens <= 0 || tokens > ctx) return cudaErrorInvalidValue;
  const size_t total = (size_t)n * tokens * width;
  unsigned blocks = clip_ceil_div(total, 256);
  if (blocks > 65535u * 8u) blocks = 65535u * 8u;
  text_embed_kernel<<<blocks, 256, 0, stream>>>(ids, tok, pos, x, n * tokens, ctx, tokens, width);
  return cudaGetLastError();
}

cudaError_t clip_text_gather_launch(const float *x, const void *delta, clip_dtype dt,
                                    const int32_t *eot, float *sel, int n, int tokens, int width,
                                    cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  CLIP_DISPATCH_DTYPE(dt, text_gather_kernel<T><<<(unsigned)n, 256, 0, stream>>>(
                              x, (const T *)delta, eot, sel, tokens, width));
  return cudaGetLastError();
}
