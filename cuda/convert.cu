/* convert.cu: float32 -> fp16 / bf16 / fp32 element conversion, grid-stride. */
#include "convert.cuh"

template <typename T>
__global__ void convert_kernel(T *dst, const float *src, size_t count) {
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
    dst[i] = clip_from_f<T>(src[i]);
}

cudaError_t clip_convert_launch(void *dst, clip_dtype dt, const float *src, size_t count,
                                cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  unsigned blocks = clip_ceil_div(count, 256);
  if (blocks > 65535u * 4u) blocks = 65535u * 4u; /* grid-stride covers the rest */
  CLIP_DISPATCH_DTYPE(dt, convert_kernel<T><<<blocks, 256, 0, stream>>>((T *)dst, src, count));
  return cudaGetLastError();
}
