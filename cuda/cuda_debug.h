/* cuda_debug.h: internal entry points of the CUDA backend for the GPU check and the tests
   (exported with CLIP_API, not part of the public contract). Each returns
   CLIP_ERR_UNSUPPORTED when the engine does not run on the CUDA backend. */
#ifndef CLIP_CUDA_DEBUG_H
#define CLIP_CUDA_DEBUG_H

#include "clipengine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The device's uint8 preprocessing (resize + center crop, before /255) of n images (n <=
   max_batch) -> out[n * S * S * 3], interleaved RGB like clip_preprocess_image_u8. */
CLIP_API clip_status clip_cuda_debug_preprocess_u8(clip_engine *e, const clip_image *imgs, int n,
                                                   uint8_t *out);

/* Runs the forward alone (no transfers) on the device input buffer as the last embed call
   left it, warmup + iters times for batch n, and returns the median per-forward time in ms
   from CUDA events. Call embed_pixels/embed_images with n real images first. */
CLIP_API clip_status clip_cuda_debug_time_forward(clip_engine *e, int n, int warmup, int iters,
                                                  float *median_ms);

/* With CLIP_CUDA_PROFILE=1 in the environment at create: per-op-class device time summed
   over the forwards since the last read, as text lines "name ms count\n" into buf; resets the
   sums. Without it: an empty string. */
CLIP_API clip_status clip_cuda_debug_profile(clip_engine *e, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* CLIP_CUDA_DEBUG_H */
