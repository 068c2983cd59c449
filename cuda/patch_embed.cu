/* patch_embed.cu: im2col for the stride-P, kernel-P patch convolution (turned into one GEMM
   by the backend) and the token assembly that follows it. */
#include "patch_embed.cuh"

template <typename T>
__global__ void im2col_kernel(const T *__restrict__ px, T *__restrict__ col, int n, int S, int P,
                              int G) {
  const int K = 3 * P * P;
  const size_t total = (size_t)n * G * G * K;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
    const size_t row = e / K; /* image * G*G + patch */
    const int k = (int)(e % K);
    const int b = (int)(row / ((size_t)G * G));
    const int p = (int)(row % ((size_t)G * G));
    const int gy = p / G, gx = p % G;
    const int c = k / (P * P);
    const int r = k % (P * P);
    const int ky = r / P, kx = r % P;
    col[e] = px[(((size_t)b * 3 + c) * S + (size_t)gy * P + ky) * S + (size_t)gx * P + kx];
  }
}

cudaError_t clip_im2col_launch(const void *pixels, void *col, clip_dtype dt, int n, int S, int P,
                               cudaStream_t stream) {
  const int G = S / P;
  const size_t total = (size_t)n * G * G * 3 * P * P;
  if (total == 0) return cudaSuccess;
  unsigned blocks = clip_ceil_div(total, 256);
  if (blocks > 65535u * 8u) blocks = 65535u * 8u;
  CLIP_DISPATCH_DTYPE(dt, im2col_kernel<T><<<blocks, 256, 0, stream>>>((const T *)pixels, (T *)col,
                                                                        n, S, P, G));
  return cudaGetLastError();
}

template <typename T>
__global__ void assemble_kernel(const T *__restrict__ patches, const float *__restrict__ cls,
                                const float *__restrict__ pos, float *__restrict__ x, int n,
                                int tokens, int width) {
  const size_t total = (size_t)n * tokens * width;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
    const int w = (int)(e % width);
    const size_t bt = e / width;
    const int t = (int)(bt % tokens);
    const size_t b = bt / tokens;
    float v = t == 0 ? cls[w]
                     : clip_to_f(patches[(b * (tokens - 1) + (t - 1)) * (size_t)width + w]);
    x[e] = v + pos[(size_t)t * width + w];
  }
}

cudaError_t clip_assemble_tokens_launch(const void *patches, clip_dtype dt, const float *cls,
                                        const float *pos, float *x, int n, int tokens, int width,
                                        cudaStream_t stream) {
  const size_t total = (size_t)n * tokens * width;
  if (total == 0) return cudaSuccess;
  unsigned blocks = clip_ceil_div(total, 256);
  if (blocks > 65535u * 8u) blocks = 65535u * 8u;
  CLIP_DISPATCH_DTYPE(dt, assemble_kernel<T><<<blocks, 256, 0, stream>>>(
                              (const T *)patches, cls, pos, x, n, tokens, width));
  return cudaGetLastError();
}
