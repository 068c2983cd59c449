/* engine.c: the public entry points of libclipengine: create/destroy, backend dispatch,
   argument checks and error strings. The math lives in the backends. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#ifndef CLIP_VERSION_STRING
#define CLIP_VERSION_STRING "0.0.0"
#endif

#define CLIP_DEFAULT_MAX_BATCH 64

#ifndef CLIP_HAVE_CUDA
static const char no_cuda_message[] =
    "this libclipengine was built without CUDA (rebuild with -DCLIP_CUDA=ON)";
#endif

void clip_format_error(char *err, size_t err_len, const char *fmt, ...) {
  if (!err || err_len == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, err_len, fmt, ap);
  va_end(ap);
}

clip_status clip_set_error(clip_engine *e, clip_status s, const char *fmt, ...) {
  if (!e) return s;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->last_error, sizeof e->last_error, fmt, ap);
  va_end(ap);
  return s;
}

const char *clip_version(void) { return CLIP_VERSION_STRING; }

const char *clip_status_string(clip_status s) {
  switch (s) {
  case CLIP_OK: return "ok";
  case CLIP_ERR_INVALID_ARGUMENT: return "invalid argument";
  case CLIP_ERR_IO: return "i/o error";
  case CLIP_ERR_BAD_WEIGHTS: return "bad weights";
  case CLIP_ERR_OUT_OF_MEMORY: return "out of memory";
  case CLIP_ERR_BACKEND: return "backend error";
  case CLIP_ERR_UNSUPPORTED: return "unsupported";
  case CLIP_ERR_IMAGE_CORRUPT: return "corrupt image";
  case CLIP_ERR_IMAGE_TRUNCATED: return "truncated image";
  case CLIP_ERR_IMAGE_TOO_LARGE: return "image too large";
  }
  return "unknown status";
}

clip_engine_params clip_engine_default_params(void) {
  clip_engine_params p;
  memset(&p, 0, sizeof p);
  p.backend = CLIP_BACKEND_AUTO;
  p.precision = CLIP_PRECISION_AUTO;
  return p;
}

static int online_cpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

clip_status clip_engine_create(const clip_engine_params *p, clip_engine **out, char *err,
                               size_t err_len) {
  if (err && err_len) err[0] = 0;
  if (!out) {
    clip_format_error(err, err_len, "clip_engine_create: out is NULL");
    return CLIP_ERR_INVALID_ARGUMENT;
  }
  *out = NULL;
  if (!p || !p->weights_path || !p->weights_path[0]) {
    clip_format_error(err, err_len, "clip_engine_create: weights_path is empty");
    return CLIP_ERR_INVALID_ARGUMENT;
  }
  if (p->max_batch < 0 || p->threads < 0 || p->device < 0) {
    clip_format_error(err, err_len,
                      "clip_engine_create: negative max_batch (%d), threads (%d) or device (%d)",
                      p->max_batch, p->threads, p->device);
    return CLIP_ERR_INVALID_ARGUMENT;
  }
  if (p->backend < CLIP_BACKEND_AUTO || p->backend > CLIP_BACKEND_CUDA ||
      p->precision < CLIP_PRECISION_AUTO || p->precision > CLIP_PRECISION_BF16) {
    clip_format_error(err, err_len, "clip_engine_create: unknown backend (%d) or precision (%d)",
                      (int)p->backend, (int)p->precision);
    return CLIP_ERR_INVALID_ARGUMENT;
  }

  clip_engine *e = (clip_engine *)calloc(1, sizeof *e);
  if (!e) {
    clip_format_error(err, err_len, "clip_engine_create: out of host memory");
    return CLIP_ERR_OUT_OF_MEMORY;
  }
  e->params = *p;
  e->params.weights_path = NULL;
  e->max_batch = p->max_batch > 0 ? p->max_batch : CLIP_DEFAULT_MAX_BATCH;
  e->threads = p->threads > 0 ? p->threads : online_cpus();

  clip_status s = clip_weights_load(p->weights_path, &e->w, err, err_len);
  if (s != CLIP_OK) {
    free(e);
    return s;
  }
  e->info = clip_model_info_of(&e->w.cfg);

  /* AUTO resolves exactly as clip_backend_resolve says; an explicit CUDA goes on to the
     backend's init, which reports an unusable device itself. */
  clip_backend want = p->backend;
  if (want == CLIP_BACKEND_AUTO) {
    clip_backend_info bi;
    want = clip_backend_resolve(CLIP_BACKEND_AUTO, p->device, &bi, NULL, 0) == CLIP_OK
               ? bi.backend
               : CLIP_BACKEND_CPU;
  }

  if (want == CLIP_BACKEND_CPU) {
    if (p->precision != CLIP_PRECISION_AUTO && p->precision != CLIP_PRECISION_FP32) {
      clip_format_error(err, err_len, "the CPU backend computes in fp32 only (asked for %s)",
                        p->precision == CLIP_PRECISION_FP16 ? "fp16" : "bf16");
      clip_weights_free(&e->w);
      free(e);
      return CLIP_ERR_UNSUPPORTED;
    }
    e->precision = CLIP_PRECISION_FP32;
    s = clip_cpu_backend_init(e);
  } else {
#ifdef CLIP_HAVE_CUDA
    e->precision = p->precision == CLIP_PRECISION_AUTO ? CLIP_PRECISION_FP16 : p->precision;
    s = clip_cuda_backend_init(e);
#else
    clip_set_error(e, CLIP_ERR_UNSUPPORTED, "%s", no_cuda_message);
    s = CLIP_ERR_UNSUPPORTED;
#endif
  }
  if (s != CLIP_OK) {
    clip_format_error(err, err_len, "%s", e->last_error[0] ? e->last_error : clip_status_string(s));
    if (e->impl && e->impl->destroy) e->impl->destroy(e);
    clip_weights_free(&e->w);
    free(e);
    return s;
  }
  *out = e;
  return CLIP_OK;
}

void clip_engine_destroy(clip_engine *e) {
  if (!e) return;
  if (e->impl && e->impl->destroy) e->impl->destroy(e);
  clip_weights_free(&e->w);
  free(e->image_err);
  free(e);
}

clip_status clip_engine_info(const clip_engine *e, clip_model_info *out) {
  if (!e || !out) return CLIP_ERR_INVALID_ARGUMENT;
  *out = e->info;
  return CLIP_OK;
}

clip_model_info clip_model_info_of(const clip_config *c) {
  clip_model_info m;
  memset(&m, 0, sizeof m);
  m.image_size = c->image_size;
  m.patch_size = c->patch_size;
  m.width = c->width;
  m.layers = c->layers;
  m.heads = c->heads;
  m.mlp_width = c->mlp_width;
  m.embed_dim = c->embed_dim;
  m.quick_gelu = c->quick_gelu;
  return m;
}

/* The probes' argument checks: clears err and out (out_size bytes). */
static clip_status probe_args(const char *fn, const char *weights_path, void *out, size_t out_size,
                              char *err, size_t err_len) {
  if (err && err_len) err[0] = 0;
  if (!out) {
    clip_format_error(err, err_len, "%s: out is NULL", fn);
    return CLIP_ERR_INVALID_ARGUMENT;
  }
  memset(out, 0, out_size);
  if (!weights_path || !weights_path[0]) {
    clip_format_error(err, err_len, "%s: weights_path is empty", fn);
    return CLIP_ERR_INVALID_ARGUMENT;
  }
  return CLIP_OK;
}

clip_status clip_weights_probe(const char *weights_path, clip_model_info *out, char *err,
                               size_t err_len) {
  clip_status a = probe_args("clip_weights_probe", weights_path, out, sizeof *out, err, err_len);
  if (a != CLIP_OK) return a;
  clip_config c;
  clip_status s = clip_weights_read_config(weights_path, &c, err, err_len);
  if (s == CLIP_OK) *out = clip_model_info_of(&c);
  return s;
}

clip_text_info clip_text_info_of(const clip_text_config *c) {
  clip_text_info t;
  memset(&t, 0, sizeof t);
  t.context_length = c->context_length;
  t.vocab_size = c->vocab_size;
  t.width = c->width;
  t.layers = c->layers;
  t.heads = c->heads;
  t.embed_dim = c->embed_dim;
  t.quick_gelu = c->quick_gelu;
  return t;
}

clip_status clip_weights_probe_text(const char *weights_path, clip_text_info *out, char *err,
                                    size_t err_len) {
  clip_status a = probe_args("clip_weights_probe_text", weights_path, out, sizeof *out, err,
                             err_len);
  if (a != CLIP_OK) return a;
  clip_text_config c;
  int has_text = 0;
  char absent[CLIP_ERR_LEN];
  clip_status s = clip_weights_read_text_config(weights_path, &c, &has_text, absent, sizeof absent,
                                                err, err_len);
  if (s != CLIP_OK) return s;
  if (!has_text) {
    clip_format_error(err, err_len, "%s", absent);
    return CLIP_ERR_UNSUPPORTED;
  }
  *out = clip_text_info_of(&c);
  return CLIP_OK;
}

clip_status clip_backend_resolve(clip_backend backend, int device, clip_backend_info *out,
                                 char *err, size_t err_len) {
  if (err && err_len) err[0] = 0;
  if (!out) {
    clip_format_error(err, err_len, "clip_backend_resolve: out is NULL");
    return CLIP_ERR_INVALID_ARGUMENT;
  }
  memset(out, 0, sizeof *out);
  if (device < 0 || backend < CLIP_BACKEND_AUTO || backend > CLIP_BACKEND_CUDA) {
    clip_format_error(err, err_len, "clip_backend_resolve: unknown backend (%d) or negative device (%d)",
                      (int)backend, device);
    return CLIP_ERR_INVALID_ARGUMENT;
  }
  if (backend != CLIP_BACKEND_CPU) {
#ifdef CLIP_HAVE_CUDA
    char name[sizeof out->device_name], why[CLIP_ERR_LEN];
    int64_t mem = 0;
    clip_status s = clip_cuda_device_query(device, name, sizeof name, &mem, why, sizeof why);
    if (s == CLIP_OK) {
      out->backend = CLIP_BACKEND_CUDA;
      out->device = device;
      snprintf(out->device_name, sizeof out->device_name, "%s", name);
      out->memory_bytes = mem;
      return CLIP_OK;
    }
    if (backend == CLIP_BACKEND_CUDA) {
      clip_format_error(err, err_len, "%s", why);
      return s;
    }
#else
    if (backend == CLIP_BACKEND_CUDA) {
      clip_format_error(err, err_len, "%s", no_cuda_message);
      return CLIP_ERR_UNSUPPORTED;
    }
#endif
  }
  out->backend = CLIP_BACKEND_CPU;
  snprintf(out->device_name, sizeof out->device_name, "cpu");
  return CLIP_OK;
}

const char *clip_engine_backend_name(const clip_engine *e) { return e ? e->backend_name : ""; }

const char *clip_engine_last_error(const clip_engine *e) { return e ? e->last_error : ""; }

static clip_status check_batch(clip_engine *e, const void *in, int n, float *out) {
  if (n < 0 || (n > 0 && (!in || !out)))
    return clip_set_error(e, CLIP_ERR_INVALID_ARGUMENT, "embed: n=%d with %s buffer", n,
                          !in ? "a NULL input" : "a NULL output");
  if (n > e->max_batch)
    return clip_set_error(e, CLIP_ERR_INVALID_ARGUMENT,
                          "embed: n=%d is larger than max_batch=%d given at create", n,
                          e->max_batch);
  return CLIP_OK;
}

clip_status clip_engine_embed_pixels(clip_engine *e, const float *pixels, int n, float *out) {
  if (!e) return CLIP_ERR_INVALID_ARGUMENT;
  e->last_error[0] = 0;
  clip_status s = check_batch(e, pixels, n, out);
  if (s != CLIP_OK || n == 0) return s;
  return e->impl->embed_pixels(e, pixels, n, out);
}

clip_status clip_engine_embed_images(clip_engine *e, const clip_image *images, int n, float *out) {
  if (!e) return CLIP_ERR_INVALID_ARGUMENT;
  e->last_error[0] = 0;
  clip_status s = check_batch(e, images, n, out);
  if (s != CLIP_OK || n == 0) return s;
  for (int i = 0; i < n; i++) {
    const clip_image *im = &images[i];
    if (!im->rgb || im->width <= 0 || im->height <= 0 ||
        (im->stride != 0 && (int64_t)im->stride < (int64_t)im->width * 3))
      return clip_set_error(e, CLIP_ERR_INVALID_ARGUMENT,
                            "embed: image %d is invalid (%dx%d, stride %d, %s pixels)", i,
                            im->width, im->height, im->stride, im->rgb ? "with" : "NULL");
  }
  if (e->impl->embed_images) return e->impl->embed_images(e, images, n, out);

  /* Generic path: CPU preprocessing, then the backend's pixel entry point, in slices so the
     staging buffer stays small. */
  const int S = e->info.image_size;
  const size_t per = (size_t)3 * S * S;
  const int slice = n < 16 ? n : 16;
  float *px = (float *)malloc(per * slice * sizeof(float));
  if (!px) return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY, "embed: cannot allocate %zu bytes", per * slice * sizeof(float));
  for (int i0 = 0; i0 < n && s == CLIP_OK; i0 += slice) {
    int m = n - i0 < slice ? n - i0 : slice;
    for (int j = 0; j < m && s == CLIP_OK; j++) {
      s = clip_preprocess_image(&images[i0 + j], S, px + per * j);
      if (s != CLIP_OK) clip_set_error(e, s, "embed: preprocessing image %d failed", i0 + j);
    }
    if (s == CLIP_OK) s = e->impl->embed_pixels(e, px, m, out + (size_t)i0 * e->info.embed_dim);
  }
  free(px);
  return s;
}

/* ---- the text tower ---- */

clip_status clip_engine_text_info(const clip_engine *e, clip_text_info *out) {
  if (!e || !out) return CLIP_ERR_INVALID_ARGUMENT;
  memset(out, 0, sizeof *out);
  if (!e->w.has_text) {
    /* The reason goes where every call's message goes. e is const in the fixed style of the
       info getters, but engines are never const objects (clip_engine_create allocates them)
       and one thread at a time uses one, so the message is written through a cast. */
    clip_engine *me = (clip_engine *)e;
    return clip_set_error(me, CLIP_ERR_UNSUPPORTED, "text info: %s", e->w.text_absent);
  }
  *out = clip_text_info_of(&e->w.text.cfg);
  return CLIP_OK;
}

clip_status clip_engine_embed_tokens(clip_engine *e, const int32_t *tokens, int n, float *out) {
  if (!e) return CLIP_ERR_INVALID_ARGUMENT;
  e->last_error[0] = 0;
  if (!e->w.has_text)
    return clip_set_error(e, CLIP_ERR_UNSUPPORTED, "embed tokens: %s", e->w.text_absent);
  clip_status s = check_batch(e, tokens, n, out);
  if (s != CLIP_OK || n == 0) return s;
  if (!e->impl->embed_tokens)
    return clip_set_error(e, CLIP_ERR_UNSUPPORTED, "embed tokens: the %s backend has no text forward",
                          e->backend_name);
  if (!e->w.text_arena) {
    char err[CLIP_ERR_LEN];
    s = clip_weights_load_text(&e->w, err, sizeof err);
    if (s != CLIP_OK) return clip_set_error(e, s, "embed tokens: %s", err);
  }
  const clip_text_config *c = &e->w.text.cfg;
  const int ctx = c->context_length;
  int *eot = (int *)malloc(sizeof(int) * (size_t)n);
  if (!eot) return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY, "embed tokens: out of host memory");
  /* Every id checked before any math; the end token is where the largest id first occurs
     (OpenAI's text.argmax(-1): the end token 49407 is the largest id). */
  for (int i = 0; i < n; i++) {
    const int32_t *seq = tokens + (size_t)i * ctx;
    int best = 0;
    for (int t = 0; t < ctx; t++) {
      if (seq[t] < 0 || seq[t] >= c->vocab_size) {
        free(eot);
        return clip_set_error(e, CLIP_ERR_INVALID_ARGUMENT,
                              "embed tokens: sequence %d position %d holds id %d, outside the "
                              "vocabulary [0, %d)",
                              i, t, (int)seq[t], c->vocab_size);
      }
      if (seq[t] > seq[best]) best = t;
    }
    eot[i] = best;
  }
  s = e->impl->embed_tokens(e, tokens, eot, n, out);
  free(eot);
  return s;
}
