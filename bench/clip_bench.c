/* clip_bench.c: engine-only throughput of libclipengine for one weights file: random
   normalized pixels (or random RGB8 images with --images), warm-up, then timed batches;
   prints images/s (median and best batch) as text or one JSON line. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clipengine.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* xorshift64*: a fixed-seed generator so every run feeds the same non-trivial input. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1Dull;
}
static float rng_uniform(void) { return (float)((rng_next() >> 40) * (1.0 / 16777216.0)); }

static void usage(void) {
  fprintf(stderr,
          "usage: clip_bench --weights PATH [--batch N] [--threads N] [--backend cpu|cuda|auto]\n"
          "                  [--precision auto|fp32|fp16|bf16] [--iters N] [--warmup N]\n"
          "                  [--images WxH] [--json]\n"
          "Times clip_engine_embed_pixels (or clip_engine_embed_images with --images) on\n"
          "random inputs and prints images/s.\n");
}

int main(int argc, char **argv) {
  clip_engine_params p = clip_engine_default_params();
  int batch = 8, iters = 10, warmup = 2, json = 0, img_w = 0, img_h = 0;
  const char *backend = "auto", *precision = "auto";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--json")) { json = 1; continue; }
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
    if (!v) { fprintf(stderr, "clip_bench: %s needs a value\n", a); usage(); return 2; }
    i++;
    if (!strcmp(a, "--weights")) p.weights_path = v;
    else if (!strcmp(a, "--batch")) batch = atoi(v);
    else if (!strcmp(a, "--threads")) p.threads = atoi(v);
    else if (!strcmp(a, "--iters")) iters = atoi(v);
    else if (!strcmp(a, "--warmup")) warmup = atoi(v);
    else if (!strcmp(a, "--backend")) backend = v;
    else if (!strcmp(a, "--precision")) precision = v;
    else if (!strcmp(a, "--images")) {
      if (sscanf(v, "%dx%d", &img_w, &img_h) != 2 || img_w <= 0 || img_h <= 0) {
        fprintf(stderr, "clip_bench: --images wants WxH, got %s\n", v);
        return 2;
      }
    } else { fprintf(stderr, "clip_bench: unknown flag %s\n", a); usage(); return 2; }
  }
  if (!p.weights_path || batch <= 0 || iters <= 0 || warmup < 0) { usage(); return 2; }
  if (!strcmp(backend, "cpu")) p.backend = CLIP_BACKEND_CPU;
  else if (!strcmp(backend, "cuda")) p.backend = CLIP_BACKEND_CUDA;
  else if (!strcmp(backend, "auto")) p.backend = CLIP_BACKEND_AUTO;
  else { fprintf(stderr, "clip_bench: unknown backend %s\n", backend); return 2; }
  if (!strcmp(precision, "fp32")) p.precision = CLIP_PRECISION_FP32;
  else if (!strcmp(precision, "fp16")) p.precision = CLIP_PRECISION_FP16;
  else if (!strcmp(precision, "bf16")) p.precision = CLIP_PRECISION_BF16;
  else if (!strcmp(precision, "auto")) p.precision = CLIP_PRECISION_AUTO;
  else { fprintf(stderr, "clip_bench: unknown precision %s\n", precision); return 2; }
  p.max_batch = batch;

  char err[1024];
  clip_engine *e = NULL;
  double t0 = now_s();
  clip_status s = clip_engine_create(&p, &e, err, sizeof err);
  if (s != CLIP_OK) {
    fprintf(stderr, "clip_bench: %s: %s\n", clip_status_string(s), err);
    return 1;
  }
  double create_s = now_s() - t0;
  clip_model_info info;
  clip_engine_info(e, &info);
  const int S = info.image_size;

  float *out = (float *)malloc(sizeof(float) * (size_t)batch * info.embed_dim);
  float *pixels = NULL;
  uint8_t *rgb = NULL;
  clip_image *images = NULL;
  if (img_w) {
    size_t per = (size_t)img_w * img_h * 3;
    rgb = (uint8_t *)malloc(per * batch);
    images = (clip_image *)calloc((size_t)batch, sizeof *images);
    if (!rgb || !images) { fprintf(stderr, "clip_bench: out of memory\n"); return 1; }
    for (size_t i = 0; i < per * batch; i++) rgb[i] = (uint8_t)(rng_next() >> 56);
    for (int i = 0; i < batch; i++) images[i] = (clip_image){rgb + per * i, img_w, img_h, 0};
  } else {
    size_t count = (size_t)batch * 3 * S * S;
    pixels = (float *)malloc(sizeof(float) * count);
    if (!pixels) { fprintf(stderr, "clip_bench: out of memory\n"); return 1; }
    for (size_t i = 0; i < count; i++) pixels[i] = 4.0f * rng_uniform() - 2.0f;
  }
  if (!out) { fprintf(stderr, "clip_bench: out of memory\n"); return 1; }

  double *times = (double *)malloc(sizeof(double) * iters);
  for (int it = -warmup; it < iters; it++) {
    double a = now_s();
    s = img_w ? clip_engine_embed_images(e, images, batch, out)
              : clip_engine_embed_pixels(e, pixels, batch, out);
    double b = now_s();
    if (s != CLIP_OK) {
      fprintf(stderr, "clip_bench: embed: %s: %s\n", clip_status_string(s), clip_engine_last_error(e));
      return 1;
    }
    if (it >= 0) times[it] = b - a;
  }
  qsort(times, iters, sizeof(double), cmp_double);
  double median = iters % 2 ? times[iters / 2] : 0.5 * (times[iters / 2 - 1] + times[iters / 2]);
  double best = times[0];
  double ips = batch / median, ips_best = batch / best;
  /* 8.82 GFLOP per image is the published count for ViT-B/32 at 224 px. */
  const int is_b32 = info.image_size == 224 && info.patch_size == 32 && info.width == 768 &&
                     info.layers == 12;
  if (json) {
    printf("{\"backend\":\"%s\",\"batch\":%d,\"iters\":%d,\"input\":\"%s\",\"median_s\":%.6f,"
           "\"images_per_s\":%.2f,\"images_per_s_best\":%.2f,\"create_s\":%.3f,"
           "\"width\":%d,\"layers\":%d,\"image_size\":%d}\n",
           clip_engine_backend_name(e), batch, iters, img_w ? "images" : "pixels", median, ips,
           ips_best, create_s, info.width, info.layers, info.image_size);
  } else {
    printf("engine   %s\n", clip_engine_backend_name(e));
    printf("model    image %d patch %d width %d layers %d heads %d mlp %d embed %d\n",
           info.image_size, info.patch_size, info.width, info.layers, info.heads, info.mlp_width,
           info.embed_dim);
    printf("input    %s, batch %d, %d timed iterations after %d warm-up\n",
           img_w ? "RGB8 images" : "normalized pixels", batch, iters, warmup);
    printf("median   %.4f s/batch  ->  %.2f images/s (best %.2f)\n", median, ips, ips_best);
    if (is_b32) printf("compute  %.1f GFLOP/s at 8.82 GFLOP per image\n", 8.82 * ips);
  }
  free(times); free(out); free(pixels); free(rgb); free(images);
  clip_engine_destroy(e);
  return 0;
}
