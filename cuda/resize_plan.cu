/* resize_plan.cu: host planning and packing for the device resize (see resize_plan.cuh).
   The source window: columns the horizontal taps of the crop's columns read (or the crop's
   columns when that axis is copied), rows the vertical taps of the crop's rows read (or the
   crop's rows). Only that window is uploaded. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "resize_plan.cuh"

static size_t up16(size_t v) { return (v + 15) / 16 * 16; }

void clip_image_plan_free(clip_image_plan *p) {
  clip_axis_plan_free(&p->hp);
  clip_axis_plan_free(&p->vp);
}

/* Smallest first tap and largest end over the S entries of a plan. */
static void plan_window(const clip_axis_plan *a, int S, int *lo, int *hi) {
  int l = a->bounds[0], h = 0;
  for (int i = 0; i < S; i++) {
    const int b = a->bounds[2 * i], end = b + a->bounds[2 * i + 1];
    if (b < l) l = b;
    if (end > h) h = end;
  }
  *lo = l;
  *hi = h;
}

clip_status clip_image_plan_make(const clip_image *im, int index, int S, clip_image_plan *p,
                                 char *err, size_t err_len) {
  memset(p, 0, sizeof *p);
  const int w = im->width, h = im->height;
  /* As clip_preprocess_image_u8: the resized long side must fit an int (int(S * long / short)
     in Python's arithmetic), else clip_resize_geometry saturates and the crop would differ
     from the CPU path's refusal. */
  const double long_side = w <= h ? (double)((long long)S * h) / (double)w
                                   : (double)((long long)S * w) / (double)h;
  if ((long long)long_side > INT_MAX) {
    snprintf(err, err_len, "embed: image %d (%dx%d) is too elongated to resize to %d", index, w, h, S);
    return CLIP_ERR_INVALID_ARGUMENT;
  }
  int rw, rh, cx, cy;
  clip_resize_geometry(w, h, S, &rw, &rh, &cx, &cy);
  if (rw < S || rh < S || cx < 0 || cy < 0 || cx > rw - S || cy > rh - S) {
    snprintf(err, err_len, "embed: image %d (%dx%d) cannot be resized to %d (got %dx%d)", index, w, h,
             S, rw, rh);
    return CLIP_ERR_INVALID_ARGUMENT;
  }
  clip_resize_desc *d = &p->d;
  d->hpass = rw != w; /* as Pillow and the CPU path: an unchanged axis is copied */
  d->vpass = rh != h;
  d->cx = cx;
  d->cy = cy;
  d->out_index = index;
  int x0 = cx, x1 = cx + S, y0 = cy, y1 = cy + S;
  clip_status s = CLIP_OK;
  if (d->hpass && (s = clip_axis_plan_make_range(w, rw, cx, S, &p->hp)) == CLIP_OK) {
    d->hk = p->hp.ksize;
    plan_window(&p->hp, S, &x0, &x1);
  }
  if (s == CLIP_OK && d->vpass && (s = clip_axis_plan_make_range(h, rh, cy, S, &p->vp)) == CLIP_OK) {
    d->vk = p->vp.ksize;
    plan_window(&p->vp, S, &y0, &y1);
  }
  if (s != CLIP_OK) {
    clip_image_plan_free(p);
    snprintf(err, err_len, "embed: image %d (%dx%d): resize plan failed (%s)", index, w, h,
             clip_status_string(s));
    return s;
  }
  if (x0 < 0 || y0 < 0 || x1 > w || y1 > h || x1 <= x0 || y1 <= y0) {
    clip_image_plan_free(p);
    snprintf(err, err_len, "embed: image %d (%dx%d): bad resize window x %d..%d y %d..%d", index, w,
             h, x0, x1, y0, y1);
    return CLIP_ERR_BACKEND;
  }
  d->x0 = x0;
  d->y0 = y0;
  d->src_w = x1 - x0;
  d->ylo = y0; /* the intermediate holds exactly the window's rows */
  d->ny = y1 - y0;
  p->src_bytes = up16((size_t)d->ny * d->src_w * 3);
  p->plan_bytes = 0;
  if (d->hpass) p->plan_bytes += up16((size_t)S * 2 * 4) + up16((size_t)S * d->hk * 4);
  if (d->vpass) p->plan_bytes += up16((size_t)S * 2 * 4) + up16((size_t)S * d->vk * 4);
  p->mid_bytes = up16((size_t)d->ny * S * 3);
  return CLIP_OK;
}

/* Bounds as int32 (clip_axis_plan stores int). */
static void put_bounds(uint8_t *dst, const int *bounds, int S) {
  for (int i = 0; i < 2 * S; i++) {
    const int32_t v = (int32_t)bounds[i];
    memcpy(dst + (size_t)i * 4, &v, 4);
  }
}

void clip_image_plan_pack(const clip_image *im, clip_image_plan *p, int S, uint8_t *host,
                          size_t *off, size_t *mid_off) {
  clip_resize_desc *d = &p->d;
  const size_t stride = im->stride ? (size_t)im->stride : (size_t)im->width * 3;
  const size_t row_bytes = (size_t)d->src_w * 3;
  d->src_off = (int64_t)*off;
  for (int y = 0; y < d->ny; y++)
    memcpy(host + *off + (size_t)y * row_bytes,
           im->rgb + (size_t)(d->y0 + y) * stride + (size_t)d->x0 * 3, row_bytes);
  *off += p->src_bytes;
  clip_image_plan_pack_tables(p, S, host, off, mid_off);
}

void clip_image_plan_pack_tables(clip_image_plan *p, int S, uint8_t *host, size_t *off,
                                 size_t *mid_off) {
  clip_resize_desc *d = &p->d;
  if (d->hpass) {
    d->hb_off = (int64_t)*off;
    put_bounds(host + *off, p->hp.bounds, S);
    *off += up16((size_t)S * 2 * 4);
    d->hkk_off = (int64_t)*off;
    memcpy(host + *off, p->hp.kk, (size_t)S * d->hk * 4);
    *off += up16((size_t)S * d->hk * 4);
  }
  if (d->vpass) {
    d->vb_off = (int64_t)*off;
    put_bounds(host + *off, p->vp.bounds, S);
    *off += up16((size_t)S * 2 * 4);
    d->vkk_off = (int64_t)*off;
    memcpy(host + *off, p->vp.kk, (size_t)S * d->vk * 4);
    *off += up16((size_t)S * d->vk * 4);
  }
  d->mid_off = (int64_t)*mid_off;
  *mid_off += p->mid_bytes;
}
