/* debug.cu: the CUDA backend's debug hooks: per-op-class timing with CUDA events
   (CLIP_CUDA_PROFILE=1 at create) and the entry points declared in the public per-backend
   header clipengine_cuda.h (device preprocessing alone, the forward timed, stopped at a
   stage, the graph switches), used by the GPU check and the C tests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.cuh"
#include "clipengine_cuda.h"
#include "debug.cuh"
#include "decode.cuh"
#include "graphs.cuh"
#include "staging.cuh"

static const char *const prof_names[P_COUNT] = {"upload+convert", "preprocess", "patch_embed",
                                                "layernorm", "gemm_qkv", "attention", "gemm_out",
                                                "gemm_fc1", "gelu", "gemm_fc2", "head"};

/* ---- profiling (CLIP_CUDA_PROFILE=1) ---- */

void clip_prof_mark(cuda_state *st, int cat) {
  if (!st->profile || st->prof_n >= PROFILE_EVENTS) return;
  cudaEventRecord(st->prof_ev[st->prof_n], st->compute);
  st->prof_cat[st->prof_n++] = cat;
}

/* After the compute stream is synchronized: interval i (mark i .. mark i+1) is charged to
   mark i's class; the last mark (cat -1) only closes the previous interval. */
void clip_prof_collect(cuda_state *st) {
  if (!st->profile) return;
  for (int i = 0; i + 1 < st->prof_n; i++) {
    float ms = 0.f;
    if (st->prof_cat[i] >= 0 && cudaEventElapsedTime(&ms, st->prof_ev[i], st->prof_ev[i + 1]) == cudaSuccess) {
      st->prof_ms[st->prof_cat[i]] += ms;
      st->prof_count[st->prof_cat[i]]++;
    }
  }
  cudaGetLastError();
  st->prof_n = 0;
}

/* ---- entry points (clipengine_cuda.h) ---- */

static clip_status debug_state(clip_engine *e, cuda_state **out) {
  if (!e) return CLIP_ERR_INVALID_ARGUMENT;
  if (!clip_cuda_engine_state(e))
    return clip_set_error(e, CLIP_ERR_UNSUPPORTED, "not a CUDA engine");
  *out = state_of(e);
  CU_TRY(e, cudaSetDevice((*out)->device));
  return CLIP_OK;
}

extern "C" CLIP_API clip_status clip_cuda_debug_preprocess_u8(clip_engine *e, const clip_image *imgs,
                                                              int n, uint8_t *out) {
  cuda_state *st = NULL;
  ST_TRY(debug_state(e, &st));
  if (n <= 0 || n > e->max_batch || !imgs || !out)
    return clip_set_error(e, CLIP_ERR_INVALID_ARGUMENT, "debug_preprocess_u8: n=%d (max_batch %d)", n,
                          e->max_batch);
  for (int i = 0; i < n; i++)
    if (!imgs[i].rgb || imgs[i].width <= 0 || imgs[i].height <= 0 ||
        (imgs[i].stride != 0 && imgs[i].stride < imgs[i].width * 3))
      return clip_set_error(e, CLIP_ERR_INVALID_ARGUMENT, "debug_preprocess_u8: image %d is invalid", i);
  const size_t S = e->w.cfg.image_size, bytes = (size_t)n * S * S * 3;
  uint8_t *dev = NULL;
  CU_TRY(e, cudaMalloc((void **)&dev, bytes));
  st->prof_n = 0;
  clip_status s = clip_cuda_preprocess_images(e, st, imgs, n, dev, NULL);
  if (s == CLIP_OK) {
    cudaError_t err = cudaStreamSynchronize(st->compute);
    if (err == cudaSuccess) err = cudaMemcpy(out, dev, bytes, cudaMemcpyDeviceToHost);
    if (err != cudaSuccess) s = clip_cuda_fail(e, err, "debug_preprocess_u8 copy", __FILE__, __LINE__);
  }
  cudaStreamSynchronize(st->compute);
  clip_prof_collect(st);
  cudaFree(dev);
  return s;
}

static int cmp_float(const void *a, const void *b) {
  const float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

extern "C" CLIP_API clip_status clip_cuda_debug_time_forward(clip_engine *e, int n, int warmup,
                                                             int iters, float *median_ms) {
  cuda_state *st = NULL;
  ST_TRY(debug_state(e, &st));
  if (n <= 0 || n > e->max_batch || iters <= 0 || iters > 10000 || warmup < 0 || !median_ms)
    return clip_set_error(e, CLIP_ERR_INVALID_ARGUMENT, "debug_time_forward: n=%d iters=%d", n, iters);
  st->prof_n = 0;
  for (int i = 0; i < warmup; i++) {
    ST_TRY(clip_cuda_forward(e, st, n));
    clip_prof_mark(st, -1);
    CU_TRY(e, cudaStreamSynchronize(st->compute));
    clip_prof_collect(st);
  }
  float *ms = (float *)malloc(sizeof(float) * (size_t)iters);
  if (!ms) return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY, "debug_time_forward: no host memory");
  cudaEvent_t a = NULL, b = NULL;
  clip_status s = CLIP_OK;
  cudaError_t err = cudaEventCreate(&a);
  if (err == cudaSuccess) err = cudaEventCreate(&b);
  for (int i = 0; i < iters && err == cudaSuccess && s == CLIP_OK; i++) {
    err = cudaEventRecord(a, st->compute);
    if (err != cudaSuccess) break;
    s = clip_cuda_forward(e, st, n);
    if (s != CLIP_OK) break;
    clip_prof_mark(st, -1);
    err = cudaEventRecord(b, st->compute);
    if (err == cudaSuccess) err = cudaEventSynchronize(b);
    if (err == cudaSuccess) err = cudaEventElapsedTime(&ms[i], a, b);
    clip_prof_collect(st);
  }
  if (s == CLIP_OK && err != cudaSuccess) s = clip_cuda_fail(e, err, "debug_time_forward", __FILE__, __LINE__);
  if (s == CLIP_OK) {
    qsort(ms, (size_t)iters, sizeof(float), cmp_float);
    *median_ms = ms[iters / 2];
  }
  if (a) cudaEventDestroy(a);
  if (b) cudaEventDestroy(b);
  free(ms);
  return s;
}

extern "C" CLIP_API clip_status clip_cuda_debug_profile(clip_engine *e, char *buf, size_t len) {
  cuda_state *st = NULL;
  ST_TRY(debug_state(e, &st));
  if (!buf || len == 0) return clip_set_error(e, CLIP_ERR_INVALID_ARGUMENT, "debug_profile: no buffer");
  buf[0] = 0;
  size_t used = 0;
  for (int i = 0; i < P_COUNT && st->profile; i++) {
    int k = snprintf(buf + used, len - used, "%s %.4f %ld\n", prof_names[i], st->prof_ms[i],
                     st->prof_count[i]);
    if (k < 0 || (size_t)k >= len - used) break;
    used += (size_t)k;
    st->prof_ms[i] = 0;
    st->prof_count[i] = 0;
  }
  return CLIP_OK;
}

extern "C" CLIP_API clip_status clip_cuda_debug_forward_stage(clip_engine *e, const float *pixels, int n,
                                                              int stage, float *out) {
  cuda_state *st = NULL;
  ST_TRY(debug_state(e, &st));
  const clip_config *c = &e->w.cfg;
  if (n <= 0 || n > e->max_batch || !pixels || !out || stage < 0 || stage > c->layers + 3)
    return clip_set_error(e, CLIP_ERR_INVALID_ARGUMENT,
                          "debug_forward_stage: n=%d (max_batch %d), stage %d (0..%d)", n,
                          e->max_batch, stage, c->layers + 3);
  st->prof_n = 0;
  ST_TRY(clip_cuda_upload_pixels(e, st, pixels, n));
  ST_TRY(clip_cuda_forward_ops(e, st, n, stage));
  const void *src = st->x;
  size_t count = (size_t)n * c->tokens * c->width;
  if (stage == c->layers + 2) {
    src = st->cls_ln;
    count = (size_t)n * c->width;
  } else if (stage == c->layers + 3) {
    src = st->emb;
    count = (size_t)n * c->embed_dim;
  }
  clip_prof_mark(st, -1);
  CU_TRY(e, cudaStreamSynchronize(st->compute));
  clip_prof_collect(st);
  CU_TRY(e, cudaMemcpy(out, src, count * sizeof(float), cudaMemcpyDeviceToHost));
  return CLIP_OK;
}

extern "C" CLIP_API clip_status clip_cuda_debug_graphs(clip_engine *e, int enable, char *buf, size_t len) {
  cuda_state *st = NULL;
  ST_TRY(debug_state(e, &st));
  if (enable == 0) {
    CU_TRY(e, cudaStreamSynchronize(st->compute));
    clip_graphs_clear(st);
    st->graphs_on = 0;
    snprintf(st->graph_note, sizeof st->graph_note, "off: clip_cuda_debug_graphs(0)");
  } else if (enable > 0) {
    if (st->profile)
      return clip_set_error(e, CLIP_ERR_UNSUPPORTED,
                            "debug_graphs: graphs cannot be used while CLIP_CUDA_PROFILE is on");
    st->graphs_on = 1;
    if (!st->graphs_failed) st->graph_note[0] = 0;
  }
  if (buf && len) {
    int k = snprintf(buf, len, "graphs %s; captures %ld, replays %ld; cached batch sizes:",
                     st->graphs_on && !st->graphs_failed ? "on" : "off", st->graph_captures,
                     st->graph_launches);
    for (int i = 0; i < GRAPH_CACHE && k > 0 && (size_t)k < len; i++)
      if (st->graph[i].n) k += snprintf(buf + k, len - (size_t)k, " %d", st->graph[i].n);
    if (k > 0 && (size_t)k < len && st->graph_note[0])
      snprintf(buf + k, len - (size_t)k, "; %s", st->graph_note);
  }
  return CLIP_OK;
}

extern "C" CLIP_API clip_status clip_cuda_set_jpeg_decoder(clip_engine *e, int mode) {
  cuda_state *st = NULL;
  ST_TRY(debug_state(e, &st));
  if (mode < CLIP_JPEG_AUTO || mode > CLIP_JPEG_CPU)
    return clip_set_error(e, CLIP_ERR_INVALID_ARGUMENT, "set_jpeg_decoder: mode %d (want 0..3)", mode);
  st->jpeg_mode = mode;
  return CLIP_OK;
}

extern "C" CLIP_API clip_status clip_cuda_jpeg_info(clip_engine *e, char *buf, size_t len) {
  cuda_state *st = NULL;
  ST_TRY(debug_state(e, &st));
  if (!buf || len == 0) return clip_set_error(e, CLIP_ERR_INVALID_ARGUMENT, "jpeg_info: no buffer");
  clip_jpeg_describe(st, buf, len);
  return CLIP_OK;
}

extern "C" CLIP_API clip_status clip_cuda_debug_decode(clip_engine *e, const uint8_t *const *data,
                                                       const size_t *sizes, int n,
                                                       clip_status *per_image) {
  cuda_state *st = NULL;
  ST_TRY(debug_state(e, &st));
  if (n <= 0) return clip_set_error(e, CLIP_ERR_INVALID_ARGUMENT, "debug_decode: n=%d", n);
  const uint8_t **d = NULL;
  ST_TRY(clip_encoded_prepare(e, data, sizes, n, per_image, &d));
  st->prof_n = 0;
  clip_status s = clip_jpeg_decode_to_input(e, st, d, sizes, n, per_image);
  free(d);
  if (s != CLIP_OK) return s;
  CU_TRY(e, cudaStreamSynchronize(st->compute));
  CU_TRY(e, cudaStreamSynchronize(st->copy));
  return CLIP_OK;
}
