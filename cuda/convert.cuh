/* convert.cuh: float32 -> compute dtype conversion (weights at create, pixels per call). */
#ifndef CLIP_CUDA_CONVERT_CUH
#define CLIP_CUDA_CONVERT_CUH
#include "common.cuh"

/* dst[i] = (dtype) src[i] for i < count; dst and src must not overlap unless equal and
   dtype is f32 (then it is a copy). */
cudaError_t clip_convert_launch(void *dst, clip_dtype dt, const float *src, size_t count,
                                cudaStream_t stream);

#endif
