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

/* The vectorised form: each thread moves one 16-byte piece of a pixel row. A row y of
   channel c of image b holds G patches side by side; its piece at x (16-byte aligned, never
   straddling a patch when P is a multiple of the piece) lands contiguously in the column
   row of patch (y/P, x/P) at offset c*P*P + (y%P)*P + x%P. 32-bit index math throughout
   (n*3*S rows fit easily); the generic kernel above does 64-bit divisions per element,
   which made it several times slower than its bytes. */
template <typename T>
__global__ void im2col_vec_kernel(const T *__restrict__ px, T *__restrict__ col, int rows, int S,
                                  int P, int G) {
  constexpr int V = 16 / sizeof(T); /* elements per 16-byte piece */
  const int per_row = S / V;
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= rows * per_row) return;
  const int row = idx / per_row, x = (idx % per_row) * V;
  const int y = row % S, c = (row / S) % 3, b = row / (3 * S);
  const int patch = b * G * G + (y / P) * G + x / P;
  const int k = c * P * P + (y % P) * P + x % P;
  const uint4 v = *reinterpret_cast<const uint4 *>(px + (size_t)row * S + x);
  *reinterpret_cast<uint4 *>(col + (size_t)patch * 3 * P * P + k) = v;
}

cudaError_t clip_im2col_launch(const void *pixels, void *col, clip_dtype dt, int n, int S, int P,
                               cudaStream_t stream) {
  const int G = S / P;
  const size_t total = (size_t)n * G * G * 3 * P * P;
  if (total == 0) return cudaSuccess;
  const int V = (int)(16 / clip_dtype_size(dt));
  const size_t pieces = (size_t)n * 3 * S * (S / V);
  if (S % P == 0 && P % V == 0 && S % V == 0 && pieces < (size_t)1 << 31 &&
      ((uintptr_t)pixels & 15u) == 0 && ((uintptr_t)col & 15u) == 0) {
    const int rows = n * 3 * S;
    const unsigned blocks = clip_ceil_div(pieces, 256);
    CLIP_DISPATCH_DTYPE(dt, im2col_vec_kernel<T><<<blocks, 256, 0, stream>>>(
                                (const T *)pixels, (T *)col, rows, S, P, G));
    return cudaGetLastError();
  }
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
