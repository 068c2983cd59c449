/* preprocess.c: CLIP's image preprocessing on the CPU, bit-exact with what PIL + torchvision
   produce for an RGB image: Resize(size, BICUBIC) with Pillow's antialiased fixed-point
   resampler, CenterCrop(size), ToTensor, Normalize(CLIP mean, std). Also builds the exact
   per-axis coefficient tables (clip_axis_plan) the CUDA backend uploads, so the GPU resize
   equals this one bit for bit.

   Only the centre-crop window of the resized image is ever computed: every output pixel of
   Pillow's two passes depends only on its own coefficient row, so skipping the cropped-away
   pixels changes nothing, and extreme aspect ratios (10x4000 -> 89600x224) stay cheap. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"


const float clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
const float clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

/* ---- geometry (torchvision Resize(int) + CenterCrop) ---- */

/* Python's int(round(d / 2.0)) for an integer d >= 0: halves go to the even neighbour. */
static int half_to_even_half(long long d) {
  long long q = d / 2;
  if ((d & 1) && (q & 1)) q++;
  return (int)q;
}

/* The resized long side in 64 bits: int(size * long / short) computed as Python does (exact
   integer product, one correctly rounded double division, truncation). */
static long long resized_long_side(int size, int long_side, int short_side) {
  double v = (double)((long long)size * long_side) / (double)short_side;
  return (long long)v;
}

void clip_resize_geometry(int w, int h, int size, int *rw, int *rh, int *crop_x, int *crop_y) {
  long long lw, lh;
  if (w <= h) {
    lw = size;
    lh = resized_long_side(size, h, w);
  } else {
    lh = size;
    lw = resized_long_side(size, w, h);
  }
  /* Saturate rather than wrap; clip_preprocess_image_u8 rejects such images before use. */
  if (lw > INT_MAX) lw = INT_MAX;
  if (lh > INT_MAX) lh = INT_MAX;
  if (rw) *rw = (int)lw;
  if (rh) *rh = (int)lh;
  if (crop_x) *crop_x = half_to_even_half(lw - size);
  if (crop_y) *crop_y = half_to_even_half(lh - size);
}

/* ---- Pillow's bicubic coefficients ---- */

/* The coefficient doubles must round exactly as Pillow's x86-64 build rounds them, so no
   multiply-add may be fused into an FMA here (GCC fuses by default where the target has
   FMA, e.g. aarch64; clang honours the standard pragma). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#define CLIP_NO_FMA
#elif defined(__GNUC__)
#define CLIP_NO_FMA __attribute__((optimize("fp-contract=off")))
#else
#define CLIP_NO_FMA
#endif

/* Pillow's bicubic kernel (a = -0.5), with its exact order of operations: the tables must
   match Pillow's doubles bit for bit before they are rounded to fixed point. */
CLIP_NO_FMA static double bicubic_kernel(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

void clip_axis_plan_free(clip_axis_plan *p) {
  if (!p) return;
  free(p->bounds);
  free(p->kk);
  memset(p, 0, sizeof *p);
}

CLIP_NO_FMA clip_status clip_axis_plan_make_range(int in_size, int out_size, int out_first,
                                                  int out_count, clip_axis_plan *p) {
  if (!p) return CLIP_ERR_INVALID_ARGUMENT;
  memset(p, 0, sizeof *p);
  if (in_size <= 0 || out_size <= 0 || out_first < 0 || out_count <= 0 ||
      out_first > out_size - out_count)
    return CLIP_ERR_INVALID_ARGUMENT;

  /* Pillow: scale = in/out; when shrinking, the kernel is stretched by the scale
     (antialiasing), so the support and the tap count grow with it. */
  const double scale = (double)in_size / (double)out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = 2.0 * filterscale;
  const double inv_filterscale = 1.0 / filterscale; /* Pillow multiplies by the reciprocal */
  if (ceil(support) > (double)(INT_MAX / 2 - 1)) return CLIP_ERR_INVALID_ARGUMENT;
  const int ksize = (int)ceil(support) * 2 + 1;

  p->bounds = (int *)malloc((size_t)out_count * 2 * sizeof(int));
  p->kk = (int32_t *)malloc((size_t)out_count * (size_t)ksize * sizeof(int32_t));
  double *w = (double *)malloc((size_t)ksize * sizeof(double));
  if (!p->bounds || !p->kk || !w) {
    free(w);
    clip_axis_plan_free(p);
    return CLIP_ERR_OUT_OF_MEMORY;
  }
  p->in_size = in_size;
  p->out_size = out_count;
  p->ksize = ksize;

  for (int i = 0; i < out_count; i++) {
    const int xx = out_first + i;
    const double center = (xx + 0.5) * scale;
    /* Truncating casts, as in Pillow ("round the value" by adding 0.5 first). */
    int xmin = (int)(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = (int)(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    int n = xmax - xmin;
    if (n > ksize) n = ksize; /* cannot happen; keeps the table in bounds regardless */
    if (n < 1) n = 1;         /* likewise: every output reads at least its nearest pixel */

    double ww = 0.0;
    for (int t = 0; t < n; t++) {
      w[t] = bicubic_kernel(((double)(t + xmin) - center + 0.5) * inv_filterscale);
      ww += w[t];
    }
    int32_t *k = p->kk + (size_t)i * ksize;
    for (int t = 0; t < n; t++) {
      double v = ww != 0.0 ? w[t] / ww : w[t];
      /* Pillow's normalize_coeffs_8bpc: round half away from zero to 22 fraction bits. */
      v *= (double)(1 << CLIP_PRECISION_BITS);
      k[t] = (int32_t)(v < 0 ? v - 0.5 : v + 0.5);
    }
    for (int t = n; t < ksize; t++) k[t] = 0; /* unused taps stay zero for the GPU kernel */
    p->bounds[2 * i] = xmin;
    p->bounds[2 * i + 1] = n;
  }
  free(w);
  return CLIP_OK;
}

clip_status clip_axis_plan_make(int in_size, int out_size, clip_axis_plan *p) {
  return clip_axis_plan_make_range(in_size, out_size, 0, out_size, p);
}

/* ---- the two resampling passes ---- */

/* Pillow's clip8 of an accumulator seeded with 1 << 21: shift out the fraction bits, clamp.
   Negative sums clamp to 0 (Pillow's table does the same for its arithmetic shift). */
static inline uint8_t clip8_fixed(int32_t v) {
  if (v < 0) return 0;
  v >>= CLIP_PRECISION_BITS;
  return (uint8_t)(v > 255 ? 255 : v);
}

#define ROW_BLOCK 8 /* source rows the horizontal pass processes together */

/* Rows are processed in blocks of ROW_BLOCK, transposed into `tile` as int32 [col][chan][row]
   so that one coefficient multiplies a contiguous vector of 3*ROW_BLOCK values: the tap loop
   then vectorizes, while each sum keeps Pillow's exact integer arithmetic (the products and
   sums fit in int32: |coefficients| sum to at most ~1.25 * 2^22). The hot loops are also
   built for AVX2, picked at load time; integer math makes both versions give equal bytes. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CLIP_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define CLIP_MULTIVERSION
#endif

/* Horizontal pass: source rows [0, nrows) (src points at the first one) -> dst rows of
   hp->out_size pixels. Columns [col_first, col_first + ncols) are the ones hp reads. */
CLIP_MULTIVERSION
static void resample_horizontal(const uint8_t *src, size_t src_stride, int nrows,
                                const clip_axis_plan *hp, int col_first, int ncols,
                                int32_t *tile, uint8_t *dst, size_t dst_stride) {
  const int lanes = 3 * ROW_BLOCK;
  const size_t nvals = (size_t)ncols * 3;
  for (int r0 = 0; r0 < nrows; r0 += ROW_BLOCK) {
    const int rb = nrows - r0 < ROW_BLOCK ? nrows - r0 : ROW_BLOCK;
    for (int r = 0; r < ROW_BLOCK; r++) {
      if (r < rb) {
        const uint8_t *s = src + (size_t)(r0 + r) * src_stride + (size_t)col_first * 3;
        for (size_t i = 0; i < nvals; i++) tile[i * ROW_BLOCK + r] = s[i];
      } else {
        for (size_t i = 0; i < nvals; i++) tile[i * ROW_BLOCK + r] = 0;
      }
    }
    for (int ox = 0; ox < hp->out_size; ox++) {
      const int xmin = hp->bounds[2 * ox] - col_first;
      const int n = hp->bounds[2 * ox + 1];
      const int32_t *k = hp->kk + (size_t)ox * hp->ksize;
      int32_t acc[3 * ROW_BLOCK];
      for (int j = 0; j < lanes; j++) acc[j] = 1 << (CLIP_PRECISION_BITS - 1);
      for (int t = 0; t < n; t++) {
        const int32_t kv = k[t];
        const int32_t *v = tile + (size_t)(xmin + t) * lanes;
        for (int j = 0; j < lanes; j++) acc[j] += v[j] * kv;
      }
      for (int r = 0; r < rb; r++) {
        uint8_t *d = dst + (size_t)(r0 + r) * dst_stride + (size_t)ox * 3;
        d[0] = clip8_fixed(acc[0 * ROW_BLOCK + r]);
        d[1] = clip8_fixed(acc[1 * ROW_BLOCK + r]);
        d[2] = clip8_fixed(acc[2 * ROW_BLOCK + r]);
      }
    }
  }
}

/* Vertical pass: src row j is source row row_first + j; each output row is nbytes bytes
   (interleaved RGB, all three channels share the row's coefficients). */
CLIP_MULTIVERSION
static void resample_vertical(const uint8_t *src, size_t src_stride, int row_first,
                              const clip_axis_plan *vp, int nbytes, int32_t *acc, uint8_t *out,
                              size_t out_stride) {
  for (int oy = 0; oy < vp->out_size; oy++) {
    const int ymin = vp->bounds[2 * oy] - row_first;
    const int n = vp->bounds[2 * oy + 1];
    const int32_t *k = vp->kk + (size_t)oy * vp->ksize;
    for (int x = 0; x < nbytes; x++) acc[x] = 1 << (CLIP_PRECISION_BITS - 1);
    for (int t = 0; t < n; t++) {
      const int32_t kv = k[t];
      const uint8_t *s = src + (size_t)(ymin + t) * src_stride;
      for (int x = 0; x < nbytes; x++) acc[x] += (int32_t)s[x] * kv;
    }
    uint8_t *d = out + (size_t)oy * out_stride;
    for (int x = 0; x < nbytes; x++) d[x] = clip8_fixed(acc[x]);
  }
}

/* ---- public entry points ---- */

#define CLIP_MAX_IMAGE_SIZE 65536 /* largest image_size accepted */

static clip_status check_image(const clip_image *img, int image_size, const void *out,
                               size_t *stride) {
  if (!img || !out || !img->rgb || img->width <= 0 || img->height <= 0 || image_size <= 0)
    return CLIP_ERR_INVALID_ARGUMENT;
  const size_t packed = (size_t)img->width * 3;
  if (img->stride < 0 || (img->stride != 0 && (size_t)img->stride < packed))
    return CLIP_ERR_INVALID_ARGUMENT;
  *stride = img->stride ? (size_t)img->stride : packed;
  return CLIP_OK;
}

clip_status clip_preprocess_image_u8(const clip_image *img, int image_size, uint8_t *out) {
  size_t stride;
  clip_status s = check_image(img, image_size, out, &stride);
  if (s != CLIP_OK) return s;
  const int w = img->width, h = img->height, S = image_size;
  /* The resized long side must be an int (as in Pillow); only absurd aspect ratios such as
     1 x 10,000,000 at 224 exceed it. CLIP sizes are a few hundred pixels: the cap keeps every
     row-sized int in range. */
  const long long long_side = w <= h ? resized_long_side(S, h, w) : resized_long_side(S, w, h);
  if (long_side > INT_MAX || S > CLIP_MAX_IMAGE_SIZE) return CLIP_ERR_INVALID_ARGUMENT;

  int rw, rh, cx, cy;
  clip_resize_geometry(w, h, S, &rw, &rh, &cx, &cy);
  /* As in Pillow, an axis whose size does not change is not resampled at all. */
  const int need_h = rw != w, need_v = rh != h;
  const size_t out_stride = (size_t)S * 3;
  const uint8_t *src = img->rgb;

  if (!need_h && !need_v) { /* a plain crop */
    for (int y = 0; y < S; y++)
      memcpy(out + (size_t)y * out_stride, src + (size_t)(cy + y) * stride + (size_t)cx * 3,
             out_stride);
    return CLIP_OK;
  }

  clip_axis_plan hp = {0}, vp = {0};
  int32_t *tile = NULL, *acc = NULL;
  uint8_t *inter = NULL;
  if (need_h && (s = clip_axis_plan_make_range(w, rw, cx, S, &hp)) != CLIP_OK) goto done;
  if (need_v && (s = clip_axis_plan_make_range(h, rh, cy, S, &vp)) != CLIP_OK) goto done;

  /* Source rows the horizontal pass must produce: those the vertical taps read (Pillow's
     ybox, narrowed to the crop), or the cropped rows when there is no vertical pass. */
  int row_first = cy, row_end = cy + S;
  if (need_v) {
    row_first = vp.bounds[0];
    row_end = vp.bounds[2 * (S - 1)] + vp.bounds[2 * (S - 1) + 1];
  }

  if (need_h) {
    const int col_first = hp.bounds[0];
    const int col_end = hp.bounds[2 * (S - 1)] + hp.bounds[2 * (S - 1) + 1];
    const int ncols = col_end - col_first;
    tile = (int32_t *)malloc((size_t)ncols * 3 * ROW_BLOCK * sizeof(int32_t));
    if (!tile) { s = CLIP_ERR_OUT_OF_MEMORY; goto done; }
    const int nrows = row_end - row_first;
    uint8_t *hdst = out;
    if (need_v) {
      inter = (uint8_t *)malloc((size_t)nrows * out_stride);
      if (!inter) { s = CLIP_ERR_OUT_OF_MEMORY; goto done; }
      hdst = inter;
    }
    resample_horizontal(src + (size_t)row_first * stride, stride, nrows, &hp, col_first, ncols,
                        tile, hdst, out_stride);
  }
  if (need_v) {
    acc = (int32_t *)malloc(out_stride * sizeof(int32_t));
    if (!acc) { s = CLIP_ERR_OUT_OF_MEMORY; goto done; }
    if (need_h)
      resample_vertical(inter, out_stride, row_first, &vp, (int)out_stride, acc, out, out_stride);
    else /* columns are not resampled: read the crop's columns straight from the source */
      resample_vertical(src + (size_t)cx * 3, stride, 0, &vp, (int)out_stride, acc, out,
                        out_stride);
  }
  s = CLIP_OK;
done:
  free(tile);
  free(acc);
  free(inter);
  clip_axis_plan_free(&hp);
  clip_axis_plan_free(&vp);
  return s;
}

clip_status clip_preprocess_image(const clip_image *img, int image_size, float *out) {
  size_t stride;
  clip_status s = check_image(img, image_size, out, &stride);
  if (s != CLIP_OK) return s;
  const size_t plane = (size_t)image_size * image_size;
  uint8_t *u8 = (uint8_t *)malloc(plane * 3);
  if (!u8) return CLIP_ERR_OUT_OF_MEMORY;
  s = clip_preprocess_image_u8(img, image_size, u8);
  if (s == CLIP_OK) {
    /* ToTensor then Normalize, in float32 and in torchvision's order: u8 / 255, then
       (x - mean) / std; a table per channel computes each of the 256 values once. */
    float lut[3][256];
    for (int c = 0; c < 3; c++)
      for (int v = 0; v < 256; v++) lut[c][v] = ((float)v / 255.0f - clip_mean[c]) / clip_std[c];
    for (size_t i = 0; i < plane; i++) {
      out[i] = lut[0][u8[3 * i + 0]];
      out[plane + i] = lut[1][u8[3 * i + 1]];
      out[2 * plane + i] = lut[2][u8[3 * i + 2]];
    }
  }
  free(u8);
  return s;
}
