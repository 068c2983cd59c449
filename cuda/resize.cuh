/* resize.cuh: CLIP preprocessing on the device for a chunk of RGB8 images of any sizes:
   Pillow's antialiased bicubic resize (its fixed-point coefficients, made on the host by
   clip_axis_plan_make), the torchvision center crop, /255 and the CLIP normalization.
   Only the crop window is computed: the horizontal pass for the crop's columns over the
   source rows the vertical pass reads, into a uint8 intermediate (as Pillow does), then the
   vertical pass for the crop's rows. */
#ifndef CLIP_CUDA_RESIZE_CUH
#define CLIP_CUDA_RESIZE_CUH
#include "common.cuh"

/* One image of a chunk; built on the host, uploaded in the staging buffer. Byte offsets are
   relative to the device staging buffer (src_off, *_b_off, *_kk_off) or the intermediate
   buffer (mid_off). */
typedef struct clip_resize_desc {
  int64_t src_off;  /* the uploaded source window: rows y0.., columns x0.., pitch src_w*3 */
  int64_t hb_off, hkk_off, vb_off, vkk_off; /* int32 (S,2), (S,hk), (S,2), (S,vk) */
  int64_t mid_off;  /* uint8 (ny, S, 3): horizontal-pass rows ylo .. ylo+ny-1 */
  int src_w, x0, y0;
  int hpass, vpass; /* 1: resample this axis; 0: the size is unchanged: copy */
  int hk, vk;       /* taps per output pixel */
  int ylo, ny;
  int cx, cy;       /* crop offsets in the resized image */
  int out_index;    /* position in the model input batch */
  int pad_;
} clip_resize_desc;

#define CLIP_RESIZE_PREC_BITS 22 /* CLIP_PRECISION_BITS */

__host__ __device__ __forceinline__ uint8_t clip_resize_clip8(int32_t acc) {
  const int32_t v = acc >> CLIP_RESIZE_PREC_BITS;
  return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Horizontal pass, one intermediate pixel idx = yy*S + j (source row ylo+yy, crop column j).
   Shared by the kernel and the host emulation in bench/cuda/resize_emu.cu. */
__host__ __device__ __forceinline__ void clip_resize_h_pixel(const clip_resize_desc &d,
                                                             const uint8_t *staging, uint8_t *mid,
                                                             int S, size_t idx) {
  const int yy = (int)(idx / S), j = (int)(idx % S);
  const uint8_t *row = staging + d.src_off + (size_t)(d.ylo + yy - d.y0) * ((size_t)d.src_w * 3);
  uint8_t *o = mid + d.mid_off + idx * 3;
  if (d.hpass) {
    const int32_t *hb = reinterpret_cast<const int32_t *>(staging + d.hb_off);
    const int32_t *k = reinterpret_cast<const int32_t *>(staging + d.hkk_off) + (size_t)j * d.hk;
    const int xmin = hb[2 * j], xn = hb[2 * j + 1];
    const uint8_t *p = row + (size_t)(xmin - d.x0) * 3;
    int32_t a0 = 1 << (CLIP_RESIZE_PREC_BITS - 1), a1 = a0, a2 = a0;
    for (int t = 0; t < xn; t++) {
      const int32_t w = k[t];
      a0 += (int32_t)p[3 * t] * w;
      a1 += (int32_t)p[3 * t + 1] * w;
      a2 += (int32_t)p[3 * t + 2] * w;
    }
    o[0] = clip_resize_clip8(a0);
    o[1] = clip_resize_clip8(a1);
    o[2] = clip_resize_clip8(a2);
  } else {
    const uint8_t *p = row + (size_t)(d.cx + j - d.x0) * 3;
    o[0] = p[0];
    o[1] = p[1];
    o[2] = p[2];
  }
}

/* Vertical pass, one crop pixel idx = i*S + j -> px[3]. */
__host__ __device__ __forceinline__ void clip_resize_v_pixel(const clip_resize_desc &d,
                                                             const uint8_t *staging,
                                                             const uint8_t *mid, int S, int idx,
                                                             uint8_t px[3]) {
  const int i = idx / S, j = idx % S;
  const uint8_t *m = mid + d.mid_off;
  const size_t mpitch = (size_t)S * 3;
  if (d.vpass) {
    const int32_t *vb = reinterpret_cast<const int32_t *>(staging + d.vb_off);
    const int32_t *k = reinterpret_cast<const int32_t *>(staging + d.vkk_off) + (size_t)i * d.vk;
    const int ymin = vb[2 * i], yn = vb[2 * i + 1];
    const uint8_t *p = m + (size_t)(ymin - d.ylo) * mpitch + (size_t)j * 3;
    int32_t a0 = 1 << (CLIP_RESIZE_PREC_BITS - 1), a1 = a0, a2 = a0;
    for (int t = 0; t < yn; t++) {
      const int32_t w = k[t];
      const uint8_t *q = p + (size_t)t * mpitch;
      a0 += (int32_t)q[0] * w;
      a1 += (int32_t)q[1] * w;
      a2 += (int32_t)q[2] * w;
    }
    px[0] = clip_resize_clip8(a0);
    px[1] = clip_resize_clip8(a1);
    px[2] = clip_resize_clip8(a2);
  } else {
    const uint8_t *q = m + (size_t)(d.cy + i - d.ylo) * mpitch + (size_t)j * 3;
    px[0] = q[0];
    px[1] = q[1];
    px[2] = q[2];
  }
}

/* descs: device pointer to n descriptors; staging: device staging base; mid: device
   intermediate base; max_mid_pixels: the largest ny*S in the chunk (sizes the grid);
   lut: device float (3, 256), the normalized value of each uint8 per channel (made on the
   host exactly as the CPU path makes it, so both give the same floats).
   Writes input (N, 3, S, S) in dtype dt at each desc's out_index, and, when u8out is not
   NULL, the uint8 crop to u8out[(out_index*S*S + i*S + j)*3 + c]. */
cudaError_t clip_resize_launch(const clip_resize_desc *descs, int n, const uint8_t *staging,
                               uint8_t *mid, int S, size_t max_mid_pixels, const float *lut,
                               void *input, clip_dtype dt, uint8_t *u8out, cudaStream_t stream);
#endif
