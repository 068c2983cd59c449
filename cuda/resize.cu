/* resize.cu: the two resize passes of CLIP preprocessing, bit-exact with Pillow's 8-bit
   resampler (int32 accumulator seeded with 1 << (PRECISION_BITS-1), arithmetic shift right,
   clamp to 0..255) and thus with engine/src/preprocess.c. The per-pixel arithmetic lives in
   resize.cuh so the host emulation (bench/cuda/resize_emu.cu) runs the very same code. */
#include "resize.cuh"

/* grid (bx, n): intermediate rows of image blockIdx.y, one thread per (row, crop column). */
__global__ void resize_horizontal_kernel(const clip_resize_desc *__restrict__ descs,
                                         const uint8_t *__restrict__ staging, uint8_t *__restrict__ mid,
                                         int S) {
  const clip_resize_desc dsc = descs[blockIdx.y];
  const size_t total = (size_t)dsc.ny * S;
  for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
       idx += (size_t)gridDim.x * blockDim.x)
    clip_resize_h_pixel(dsc, staging, mid, S, idx);
}

/* grid (ceil(S*S/256), n): one thread per crop pixel (i, j), 3 channels; writes the
   normalized model input (and the uint8 crop when asked). */
template <typename T>
__global__ void resize_vertical_kernel(const clip_resize_desc *__restrict__ descs,
                                       const uint8_t *__restrict__ staging,
                                       const uint8_t *__restrict__ mid, int S,
                                       const float *__restrict__ lut, T *__restrict__ input,
                                       uint8_t *__restrict__ u8out) {
  const clip_resize_desc dsc = descs[blockIdx.y];
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= S * S) return;
  uint8_t px[3];
  clip_resize_v_pixel(dsc, staging, mid, S, idx, px);
  const size_t plane = (size_t)S * S;
  T *dst = input + (size_t)dsc.out_index * 3 * plane + idx;
#pragma unroll
  for (int c = 0; c < 3; c++) dst[c * plane] = clip_from_f<T>(lut[c * 256 + px[c]]);
  if (u8out) {
    uint8_t *u = u8out + ((size_t)dsc.out_index * plane + idx) * 3;
    u[0] = px[0];
    u[1] = px[1];
    u[2] = px[2];
  }
}

cudaError_t clip_resize_launch(const clip_resize_desc *descs, int n, const uint8_t *staging,
                               uint8_t *mid, int S, size_t max_mid_pixels, const float *lut,
                               void *input, clip_dtype dt, uint8_t *u8out, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (n > 65535) return cudaErrorInvalidValue;
  unsigned bx = clip_ceil_div(max_mid_pixels, 256);
  if (bx < 1) bx = 1;
  if (bx > 1024) bx = 1024; /* the kernel strides over the rest */
  resize_horizontal_kernel<<<dim3(bx, (unsigned)n), 256, 0, stream>>>(descs, staging, mid, S);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  const dim3 gv(clip_ceil_div((size_t)S * S, 256), (unsigned)n);
  CLIP_DISPATCH_DTYPE(dt, resize_vertical_kernel<T><<<gv, 256, 0, stream>>>(
                              descs, staging, mid, S, lut, (T *)input, u8out));
  return cudaGetLastError();
}
