/* resize_plan.cuh: host side of the device preprocessing: per image, the torchvision
   geometry, Pillow's coefficient tables for the crop window (clip_axis_plan_make_range), the
   source window the two passes read, and its packing into the pinned staging buffer. */
#ifndef CLIP_CUDA_RESIZE_PLAN_CUH
#define CLIP_CUDA_RESIZE_PLAN_CUH
#include "internal.h"
#include "resize.cuh"

typedef struct clip_image_plan {
  clip_resize_desc d;
  clip_axis_plan hp, vp;
  size_t src_bytes;  /* source window in the staging buffer (16-byte padded) */
  size_t plan_bytes; /* coefficient tables in the staging buffer */
  size_t mid_bytes;  /* horizontal-pass rows in the intermediate buffer */
} clip_image_plan;

/* Plans image `index` (its position in the batch) for output size S. On failure returns the
   status and a message in err; nothing is left allocated. */
clip_status clip_image_plan_make(const clip_image *im, int index, int S, clip_image_plan *p,
                                 char *err, size_t err_len);
void clip_image_plan_free(clip_image_plan *p);

/* Copies the source window and the tables into host + *off (advancing it by
   src_bytes + plan_bytes) and assigns the intermediate at *mid_off (advancing it by
   mid_bytes); fills the descriptor's offsets. */
void clip_image_plan_pack(const clip_image *im, clip_image_plan *p, int S, uint8_t *host,
                          size_t *off, size_t *mid_off);

/* The tables part of clip_image_plan_pack, for a source already on the device (decoded
   there): copies the tables into host + *off (advancing it by plan_bytes), assigns the
   intermediate at *mid_off; the caller sets d.src_off / x0 / src_w for its source. */
void clip_image_plan_pack_tables(clip_image_plan *p, int S, uint8_t *host, size_t *off,
                                 size_t *mid_off);
#endif
