/* staging.cuh: pinned staging and the per-call uploads of the CUDA backend (staging.cu). */
#ifndef CLIP_CUDA_STAGING_CUH
#define CLIP_CUDA_STAGING_CUH
#include "backend.cuh"

/* One slot: pinned host bytes and a device buffer of `cap` bytes each. Release is safe on an
   empty slot and leaves the events alone. */
clip_status clip_staging_slot_alloc(clip_engine *e, staging_slot *sl, size_t cap);
void clip_staging_slot_release(staging_slot *sl);

/* Caller's float32 (n, 3, S, S) -> st->input in the compute dtype, in slot-sized chunks;
   queued on the streams (the forward on `compute` waits for it). */
clip_status clip_cuda_upload_pixels(clip_engine *e, cuda_state *st, const float *pixels, int n);

/* n raw images -> st->input (and, when u8out is a device pointer, their uint8 crops): plans
   and packing on the host pool, resize/crop/normalize on the device. Image k goes to input
   slot slots[k] (slots NULL: slot k). */
clip_status clip_cuda_preprocess_images(clip_engine *e, cuda_state *st, const clip_image *imgs,
                                        int n, uint8_t *u8out, const int *slots);

#endif /* CLIP_CUDA_STAGING_CUH */
