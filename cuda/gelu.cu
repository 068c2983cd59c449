/* gelu.cu: QuickGELU / exact GELU in place. cuBLASLt has no QuickGELU epilogue and its GELU
   epilogue's formula is not documented, so the activation is this memory-bound pass with
   16-byte loads and stores; math in fp32. */
#include "gelu.cuh"

__device__ __forceinline__ float act(float x, int quick) {
  return quick ? x / (1.f + __expf(-1.702f * x)) : 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
}

template <typename T>
__global__ void gelu_vec_kernel(T *h, size_t nvec, int quick) {
  constexpr int V = 16 / sizeof(T);
  uint4 *p = reinterpret_cast<uint4 *>(h);
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < nvec; i += stride) {
    uint4 raw = p[i];
    T *v = reinterpret_cast<T *>(&raw);
#pragma unroll
    for (int k = 0; k < V; k++) v[k] = clip_from_f<T>(act(clip_to_f(v[k]), quick));
    p[i] = raw;
  }
}

template <typename T>
__global__ void gelu_tail_kernel(T *h, size_t begin, size_t count, int quick) {
  size_t i = begin + (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < count) h[i] = clip_from_f<T>(act(clip_to_f(h[i]), quick));
}

cudaError_t clip_gelu_launch(void *h, clip_dtype dt, size_t count, int quick, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  CLIP_DISPATCH_DTYPE(dt, {
    const size_t V = 16 / sizeof(T);
    const size_t nvec = count / V;
    if (nvec) {
      unsigned blocks = clip_ceil_div(nvec, 256);
      if (blocks > 65535u * 8u) blocks = 65535u * 8u;
      gelu_vec_kernel<T><<<blocks, 256, 0, stream>>>((T *)h, nvec, quick);
    }
    const size_t done = nvec * V;
    if (done < count)
      gelu_tail_kernel<T><<<clip_ceil_div(count - done, 256), 256, 0, stream>>>((T *)h, done, count,
                                                                                 quick);
  });
  return cudaGetLastError();
}
