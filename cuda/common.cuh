/* common.cuh: what every CUDA op of libclipengine shares: the compute dtypes, float
   conversions usable from templates, and the dtype dispatch used by the launchers.
   Launchers never exit or print; they return the cudaError_t of their launch. */
#ifndef CLIP_CUDA_COMMON_CUH
#define CLIP_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

/* The element type of activations and GEMM weights (the engine's compute precision). */
typedef enum clip_dtype { CLIP_DT_F32 = 0, CLIP_DT_F16 = 1, CLIP_DT_BF16 = 2 } clip_dtype;

static inline size_t clip_dtype_size(clip_dtype t) { return t == CLIP_DT_F32 ? 4 : 2; }

__device__ __forceinline__ float clip_to_f(float x) { return x; }
__device__ __forceinline__ float clip_to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float clip_to_f(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T clip_from_f(float x);
template <> __device__ __forceinline__ float clip_from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __half clip_from_f<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 clip_from_f<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

/* Calls BODY with `T` bound to the C++ type of dtype DT. */
#define CLIP_DISPATCH_DTYPE(DT, ...)                                                           \
  do {                                                                                         \
    switch (DT) {                                                                              \
    case CLIP_DT_F32: { typedef float T; __VA_ARGS__; } break;                                 \
    case CLIP_DT_F16: { typedef __half T; __VA_ARGS__; } break;                                \
    case CLIP_DT_BF16: { typedef __nv_bfloat16 T; __VA_ARGS__; } break;                        \
    default: return cudaErrorInvalidValue;                                                     \
    }                                                                                          \
  } while (0)

static inline unsigned clip_ceil_div(size_t a, size_t b) { return (unsigned)((a + b - 1) / b); }

#endif /* CLIP_CUDA_COMMON_CUH */
