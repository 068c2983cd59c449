/* encoded.c: clip_engine_embed_encoded and its companions (per-image reasons, decode options
   and counters, the device-memory query). Argument checks and bookkeeping for every backend;
   the CPU decode path (libjpeg-turbo through jpeg.c, then the engine's CPU preprocessing and
   the backend's forward) for backends without their own decoder, and the per-image CPU
   decoding the CUDA backend falls back to. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "internal.h"
#include "jpeg.h"

/* Images per forward of the CPU decode path: the slice clip_engine_embed_images's generic
   path forwards, so that an image's embedding is the same floats through both calls. */
#define ENCODED_SLICE 16

#ifdef CLIP_HAVE_CUDA
/* cuda/decode.cu: the device memory JPEG decoding adds to a CUDA engine of this max_batch. */
int64_t clip_cuda_decode_device_bytes(int max_batch);
#endif

static int thread_index(void) {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

static void set_image_error(clip_engine *e, int i, const char *msg) {
  snprintf(e->image_err[i], sizeof e->image_err[i], "%s", msg ? msg : "");
}

/* Decoders for `threads` threads; NULL when out of memory. */
static clip_jpeg_decoder **decoders_new(int threads) {
  clip_jpeg_decoder **d = (clip_jpeg_decoder **)calloc((size_t)threads, sizeof *d);
  if (!d) return NULL;
  for (int t = 0; t < threads; t++) {
    if (!(d[t] = clip_jpeg_decoder_new())) {
      for (int k = 0; k < t; k++) clip_jpeg_decoder_free(d[k]);
      free(d);
      return NULL;
    }
  }
  return d;
}

static void decoders_free(clip_jpeg_decoder **d, int threads) {
  if (!d) return;
  for (int t = 0; t < threads; t++) clip_jpeg_decoder_free(d[t]);
  free(d);
}

static void count(clip_engine *e, const clip_status *st, int m) {
  for (int k = 0; k < m; k++) {
    if (st[k] == CLIP_OK) e->decode_stats.cpu_decoded++;
    else e->decode_stats.failed++;
  }
}

void clip_decode_cpu(clip_engine *e, const uint8_t *const *data, const size_t *sizes,
                     const int *idx, int m, clip_status *per_image, uint8_t **rgb, int *w,
                     int *h) {
  const int threads = e->threads < m ? (e->threads > 0 ? e->threads : 1) : (m > 0 ? m : 1);
  clip_jpeg_decoder **dec = decoders_new(threads);
  if (!dec) {
    for (int k = 0; k < m; k++) {
      const int i = idx ? idx[k] : k;
      per_image[i] = CLIP_ERR_OUT_OF_MEMORY;
      set_image_error(e, i, "out of memory (jpeg decoder)");
      rgb[k] = NULL;
    }
    return;
  }
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
#endif
  for (int k = 0; k < m; k++) {
    const int i = idx ? idx[k] : k;
    char msg[CLIP_IMAGE_ERR_LEN];
    uint8_t *px = NULL;
    int iw = 0, ih = 0;
    per_image[i] = clip_jpeg_decode(dec[thread_index()], data[i], sizes[i], &e->decode_opt, &px,
                                    &iw, &ih, msg, sizeof msg);
    set_image_error(e, i, per_image[i] == CLIP_OK ? "" : msg);
    rgb[k] = px;
    w[k] = iw;
    h[k] = ih;
  }
  decoders_free(dec, threads);
}

/* The CPU decode path: windows of ENCODED_SLICE images decoded and preprocessed in parallel
   (each thread decodes, preprocesses and frees its image, so at most `threads` decoded
   images exist at once) into a buffer of pending inputs; every ENCODED_SLICE good images
   are forwarded together, as embed_images forwards its slices. */
static clip_status encoded_cpu(clip_engine *e, const uint8_t *const *data, const size_t *sizes,
                               int n, float *out, clip_status *per_image) {
  const int S = e->info.image_size, E = e->info.embed_dim;
  const size_t per = (size_t)3 * S * S;
  const int cap = 2 * ENCODED_SLICE;
  const int threads = e->threads > 0 ? e->threads : 1;
  float *px = (float *)malloc(per * cap * sizeof(float));
  int pend_idx[2 * ENCODED_SLICE];
  clip_jpeg_decoder **dec = decoders_new(threads);
  if (!px || !dec) {
    free(px);
    decoders_free(dec, threads);
    return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY,
                          "embed_encoded: cannot allocate %zu bytes of pixel buffers",
                          per * cap * sizeof(float));
  }
  clip_status s = CLIP_OK;
  int pending = 0;
  for (int w0 = 0; w0 < n && s == CLIP_OK; w0 += ENCODED_SLICE) {
    const int m = n - w0 < ENCODED_SLICE ? n - w0 : ENCODED_SLICE;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads < m ? threads : m)
#endif
    for (int j = 0; j < m; j++) {
      const int i = w0 + j;
      char msg[CLIP_IMAGE_ERR_LEN] = "";
      uint8_t *rgb = NULL;
      int w = 0, h = 0;
      clip_status st = clip_jpeg_decode(dec[thread_index()], data[i], sizes[i], &e->decode_opt,
                                        &rgb, &w, &h, msg, sizeof msg);
      if (st == CLIP_OK) {
        const clip_image im = {rgb, w, h, 0};
        clip_status ps = clip_preprocess_image(&im, S, px + per * (size_t)(pending + j));
        if (ps == CLIP_ERR_OUT_OF_MEMORY) {
          st = ps;
          snprintf(msg, sizeof msg, "out of memory preprocessing a %dx%d image", w, h);
        } else if (ps != CLIP_OK) {
          st = CLIP_ERR_UNSUPPORTED;
          snprintf(msg, sizeof msg, "cannot preprocess a %dx%d image (too elongated)", w, h);
        }
      }
      free(rgb);
      per_image[i] = st;
      set_image_error(e, i, msg);
    }
    count(e, per_image + w0, m);
    /* Compact the window's good images behind the pending ones, in order (the window was
       preprocessed into slots base..base+m-1). */
    const int base = pending;
    for (int j = 0; j < m; j++) {
      if (per_image[w0 + j] != CLIP_OK) continue;
      if (base + j != pending)
        memcpy(px + per * (size_t)pending, px + per * (size_t)(base + j), per * sizeof(float));
      pend_idx[pending++] = w0 + j;
    }
    while (pending >= ENCODED_SLICE || (w0 + m >= n && pending > 0)) {
      const int f = pending < ENCODED_SLICE ? pending : ENCODED_SLICE;
      float *emb = (float *)malloc((size_t)f * E * sizeof(float));
      if (!emb) {
        s = clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY, "embed_encoded: out of host memory");
        break;
      }
      s = e->impl->embed_pixels(e, px, f, emb);
      if (s == CLIP_OK)
        for (int k = 0; k < f; k++)
          memcpy(out + (size_t)pend_idx[k] * E, emb + (size_t)k * E, (size_t)E * sizeof(float));
      free(emb);
      if (s != CLIP_OK) break;
      memmove(px, px + per * (size_t)f, per * (size_t)(pending - f) * sizeof(float));
      memmove(pend_idx, pend_idx + f, sizeof(int) * (size_t)(pending - f));
      pending -= f;
    }
  }
  decoders_free(dec, threads);
  free(px);
  return s;
}

clip_status clip_encoded_prepare(clip_engine *e, const uint8_t *const *data, const size_t *sizes,
                                 int n, clip_status *per_image, const uint8_t ***d_out) {
  *d_out = NULL;
  e->last_error[0] = 0;
  e->image_err_n = 0;
  if (n < 0 || (n > 0 && (!data || !sizes || !per_image)))
    return clip_set_error(e, CLIP_ERR_INVALID_ARGUMENT,
                          "embed_encoded: n=%d with a NULL data, sizes, out or per_image array", n);
  if (n > e->max_batch)
    return clip_set_error(e, CLIP_ERR_INVALID_ARGUMENT,
                          "embed_encoded: n=%d is larger than max_batch=%d given at create", n,
                          e->max_batch);
  for (int i = 0; i < n; i++)
    if (!data[i] && sizes[i] > 0)
      return clip_set_error(e, CLIP_ERR_INVALID_ARGUMENT,
                            "embed_encoded: image %d has %zu bytes at NULL", i, sizes[i]);
  if (n == 0) return CLIP_OK;
  if (!e->image_err) {
    e->image_err = calloc((size_t)e->max_batch, sizeof *e->image_err);
    if (!e->image_err)
      return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY, "embed_encoded: out of host memory");
  }
  static const uint8_t empty[1] = {0};
  const uint8_t **d = (const uint8_t **)malloc(sizeof *d * (size_t)n);
  if (!d) return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY, "embed_encoded: out of host memory");
  for (int i = 0; i < n; i++) {
    d[i] = data[i] ? data[i] : empty; /* sizes[i] is 0 there */
    e->image_err[i][0] = 0;
    per_image[i] = CLIP_ERR_BACKEND;
  }
  e->image_err_n = n;
  *d_out = d;
  return CLIP_OK;
}

clip_status clip_engine_embed_encoded(clip_engine *e, const uint8_t *const *data,
                                      const size_t *sizes, int n, float *out,
                                      clip_status *per_image) {
  if (!e) return CLIP_ERR_INVALID_ARGUMENT;
  if (n > 0 && !out)
    return clip_set_error(e, CLIP_ERR_INVALID_ARGUMENT, "embed_encoded: n=%d with a NULL out", n);
  const uint8_t **d = NULL;
  clip_status s = clip_encoded_prepare(e, data, sizes, n, per_image, &d);
  if (s != CLIP_OK || n == 0) return s;
  memset(out, 0, (size_t)n * e->info.embed_dim * sizeof(float));
  s = e->impl->embed_encoded
          ? e->impl->embed_encoded(e, (const uint8_t *const *)d, sizes, n, out, per_image)
          : encoded_cpu(e, (const uint8_t *const *)d, sizes, n, out, per_image);
  free(d);
  if (s == CLIP_OK) /* failed rows are zeros whatever a backend left there */
    for (int i = 0; i < n; i++)
      if (per_image[i] != CLIP_OK)
        memset(out + (size_t)i * e->info.embed_dim, 0, (size_t)e->info.embed_dim * sizeof(float));
  return s;
}

const char *clip_engine_image_error(const clip_engine *e, int i) {
  if (!e || !e->image_err || i < 0 || i >= e->image_err_n) return "";
  return e->image_err[i];
}

clip_status clip_engine_set_decode_options(clip_engine *e, const clip_decode_options *o) {
  if (!e || !o) return CLIP_ERR_INVALID_ARGUMENT;
  if (o->apply_exif_orientation != 0 && o->apply_exif_orientation != 1)
    return clip_set_error(e, CLIP_ERR_INVALID_ARGUMENT,
                          "decode options: apply_exif_orientation is %d (want 0 or 1)",
                          o->apply_exif_orientation);
  e->decode_opt = *o;
  return CLIP_OK;
}

clip_status clip_engine_decode_stats(const clip_engine *e, clip_decode_stats *out) {
  if (!e || !out) return CLIP_ERR_INVALID_ARGUMENT;
  *out = e->decode_stats;
  return CLIP_OK;
}

clip_status clip_decode_device_bytes(int max_batch, int64_t *out) {
  if (!out || max_batch < 0) return CLIP_ERR_INVALID_ARGUMENT;
#ifdef CLIP_HAVE_CUDA
  *out = clip_cuda_decode_device_bytes(max_batch);
#else
  *out = 0;
#endif
  return CLIP_OK;
}
