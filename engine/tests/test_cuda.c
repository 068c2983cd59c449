/* test_cuda.c: checks the CUDA backend against the CPU backend on a tiny random model:
   embed_pixels in fp32 / fp16 / bf16 (per-image cosine and max-abs error), several batch
   sizes (plans made at create and lazily), embed_images on odd sizes (the device resize's
   uint8 crops bit-identical to clip_preprocess_image_u8, embeddings equal to the CPU path's),
   exact-GELU weights, argument and out-of-memory errors, and the debug entry points: the
   staged forward (each stage against host math on the previous stage) and CUDA graphs
   (replays bit-identical to direct launches, on/off switches); and the text tower
   (clip_engine_embed_tokens) against the CPU backend's, in each precision, on both attention
   paths (context 77: CUDA cores; 40: tensor cores in fp16/bf16).
   Without a CUDA build or device it prints SKIP and exits 0. */
#define _XOPEN_SOURCE 700 /* mkdtemp, setenv */
#define _GNU_SOURCE       /* RTLD_DEFAULT */

#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clipengine_cuda.h"
#include "internal.h"
#include "weights_fixture.h"
#include "check.h"


/* The tiny tower: image 64, patch 16 (T = 17), width 128 (2 heads of 64), 2 layers. Its text
   tower: width 128 (2 heads of 64), 2 layers, vocabulary 500, context TEXT_CTX_QUICK = 77 in
   the QuickGELU model (the CUDA-core attention) and TEXT_CTX_ERF = 40 in the exact-GELU one
   (the tensor-core attention in fp16/bf16). */
enum { IMG = 64, PATCH = 16, WIDTH = 128, LAYERS = 2, MLP = 512, EMBED = 64, TOK = 17 };
enum { TEXT_VOCAB = 500, TEXT_CTX_QUICK = 77, TEXT_CTX_ERF = 40, NSEQ = 6 };

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float rnd_normal(void) { /* Box-Muller on xorshift64 */
  double u[2];
  for (int k = 0; k < 2; k++) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    u[k] = ((rng_state >> 11) + 0.5) / 9007199254740992.0;
  }
  return (float)(sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]));
}

static void add_random(wf_file *f, const char *name, int ndim, const int64_t *shape, float std,
                       float mean) {
  size_t n = 1;
  for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
  float *v = (float *)malloc(n * sizeof *v);
  if (!v) abort();
  for (size_t i = 0; i < n; i++) v[i] = mean + std * rnd_normal();
  wf_add(f, name, "F32", ndim, shape, v);
  free(v);
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})

/* Block l of a tower under prefix pre ("visual.transformer.resblocks." or the text tower's
   "transformer.resblocks."), both WIDTH wide with MLP hidden units. */
static void add_random_block(wf_file *f, const char *pre, int l) {
  char name[160];
  const float W = WIDTH, M = MLP;
#define L(suffix) (snprintf(name, sizeof name, "%s%d.%s", pre, l, suffix), name)
  add_random(f, L("ln_1.weight"), 1, SHAPE(WIDTH), 0.1f, 1);
  add_random(f, L("ln_1.bias"), 1, SHAPE(WIDTH), 0.05f, 0);
  add_random(f, L("attn.in_proj_weight"), 2, SHAPE(3 * WIDTH, WIDTH), 1.0f / sqrtf(W), 0);
  add_random(f, L("attn.in_proj_bias"), 1, SHAPE(3 * WIDTH), 0.05f, 0);
  add_random(f, L("attn.out_proj.weight"), 2, SHAPE(WIDTH, WIDTH), 0.5f / sqrtf(W), 0);
  add_random(f, L("attn.out_proj.bias"), 1, SHAPE(WIDTH), 0.05f, 0);
  add_random(f, L("ln_2.weight"), 1, SHAPE(WIDTH), 0.1f, 1);
  add_random(f, L("ln_2.bias"), 1, SHAPE(WIDTH), 0.05f, 0);
  add_random(f, L("mlp.c_fc.weight"), 2, SHAPE(MLP, WIDTH), 1.0f / sqrtf(W), 0);
  add_random(f, L("mlp.c_fc.bias"), 1, SHAPE(MLP), 0.05f, 0);
  add_random(f, L("mlp.c_proj.weight"), 2, SHAPE(WIDTH, MLP), 0.5f / sqrtf(M), 0);
  add_random(f, L("mlp.c_proj.bias"), 1, SHAPE(WIDTH), 0.05f, 0);
#undef L
}

/* Writes dir/model.safetensors (OpenAI naming), scaled like tests/reference/clip_ref.py, and
   for exact GELU an open_clip_config.json saying so. */
static int write_model(const char *dir, int quick) {
  wf_file f = {0};
  const float W = WIDTH;
  add_random(&f, "visual.conv1.weight", 4, SHAPE(WIDTH, 3, PATCH, PATCH), 1.0f / sqrtf(3 * PATCH * PATCH), 0);
  add_random(&f, "visual.class_embedding", 1, SHAPE(WIDTH), 0.1f, 0);
  add_random(&f, "visual.positional_embedding", 2, SHAPE(TOK, WIDTH), 0.1f, 0);
  add_random(&f, "visual.ln_pre.weight", 1, SHAPE(WIDTH), 0.1f, 1);
  add_random(&f, "visual.ln_pre.bias", 1, SHAPE(WIDTH), 0.05f, 0);
  for (int l = 0; l < LAYERS; l++) add_random_block(&f, "visual.transformer.resblocks.", l);
  add_random(&f, "visual.ln_post.weight", 1, SHAPE(WIDTH), 0.1f, 1);
  add_random(&f, "visual.ln_post.bias", 1, SHAPE(WIDTH), 0.05f, 0);
  add_random(&f, "visual.proj", 2, SHAPE(WIDTH, EMBED), 1.0f / sqrtf(W), 0);
  /* The text tower, scaled as tests/reference/clip_ref.py's random_text_weights. */
  const int ctx = quick ? TEXT_CTX_QUICK : TEXT_CTX_ERF;
  add_random(&f, "token_embedding.weight", 2, SHAPE(TEXT_VOCAB, WIDTH), 0.5f, 0);
  add_random(&f, "positional_embedding", 2, SHAPE(ctx, WIDTH), 0.1f, 0);
  for (int l = 0; l < LAYERS; l++) add_random_block(&f, "transformer.resblocks.", l);
  add_random(&f, "ln_final.weight", 1, SHAPE(WIDTH), 0.1f, 1);
  add_random(&f, "ln_final.bias", 1, SHAPE(WIDTH), 0.05f, 0);
  add_random(&f, "text_projection", 2, SHAPE(WIDTH, EMBED), 1.0f / sqrtf(W), 0);
  char path[700];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  int rc = wf_write(&f, path);
  wf_free(&f);
  if (rc == 0 && !quick) {
    snprintf(path, sizeof path, "%s/open_clip_config.json", dir);
    FILE *fp = fopen(path, "w");
    if (!fp) return -1;
    fprintf(fp,
            "{\"model_cfg\": {\"embed_dim\": %d, \"quick_gelu\": false, \"vision_cfg\": "
            "{\"width\": %d, \"layers\": %d, \"patch_size\": %d, \"image_size\": %d, "
            "\"head_width\": 64}}}\n",
            EMBED, WIDTH, LAYERS, PATCH, IMG);
    rc = fclose(fp) == 0 ? 0 : -1;
  }
  return rc;
}

static clip_engine *make_engine(const char *dir, clip_backend b, clip_precision p, int max_batch,
                                clip_status *status, char *err, size_t err_len) {
  clip_engine_params prm = clip_engine_default_params();
  prm.weights_path = dir;
  prm.backend = b;
  prm.precision = p;
  prm.max_batch = max_batch;
  prm.threads = 2;
  clip_engine *e = NULL;
  *status = clip_engine_create(&prm, &e, err, err_len);
  return e;
}

/* Smallest per-image cosine and largest |a-b| over n embeddings of size E. */
static void compare(const float *a, const float *b, int n, int E, double *min_cos, double *max_abs) {
  *min_cos = 1.0;
  *max_abs = 0.0;
  for (int i = 0; i < n; i++) {
    double ab = 0, aa = 0, bb = 0;
    for (int k = 0; k < E; k++) {
      const double x = a[(size_t)i * E + k], y = b[(size_t)i * E + k];
      ab += x * y;
      aa += x * x;
      bb += y * y;
      if (fabs(x - y) > *max_abs || isnan(x - y)) *max_abs = isnan(x - y) ? INFINITY : fabs(x - y);
    }
    const double c = ab / (sqrt(aa * bb) + 1e-30);
    if (!(c >= *min_cos)) *min_cos = isnan(c) ? -2.0 : c;
  }
}

static void fill_pixels(float *px, int n) {
  for (size_t i = 0; i < (size_t)n * 3 * IMG * IMG; i++) {
    const size_t x = i % IMG, y = (i / IMG) % IMG;
    px[i] = 0.8f * sinf(0.1f * (float)x + 0.07f * (float)y + (float)(i / (IMG * IMG))) + 0.5f * rnd_normal();
  }
}

/* The debug entry points are looked up with dlsym (a CPU-only build lacks them); their types
   come from the public header, so a changed signature fails to compile here. */
typedef __typeof__(&clip_cuda_debug_preprocess_u8) preprocess_u8_fn;
typedef __typeof__(&clip_cuda_debug_time_forward) time_fn;
typedef __typeof__(&clip_cuda_debug_profile) profile_fn;
typedef __typeof__(&clip_cuda_debug_forward_stage) stage_fn;
typedef __typeof__(&clip_cuda_debug_graphs) graphs_fn;

/* Bitwise comparison of two float arrays: the number of differing elements. */
static size_t count_diff_bits(const float *a, const float *b, size_t n) {
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) bad += memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return bad;
}

/* LayerNorm of one row in double (the test's own reference). */
static void ln_row(const float *x, const float *g, const float *b, int W, float eps, double *out) {
  double mean = 0, var = 0;
  for (int i = 0; i < W; i++) mean += x[i];
  mean /= W;
  for (int i = 0; i < W; i++) var += (x[i] - mean) * (x[i] - mean);
  var /= W;
  const double r = 1.0 / sqrt(var + eps);
  for (int i = 0; i < W; i++) out[i] = (x[i] - mean) * r * g[i] + b[i];
}

/* CUDA graphs: the replayed forward gives the same bits as direct launches, the graph is
   really used, it can be switched off at run time and by CLIP_CUDA_GRAPHS=0. */
static void check_graphs(const char *dir, const float *px, graphs_fn gf, time_fn tf) {
  clip_status s;
  char err[512], status[512];
  clip_engine *e = make_engine(dir, CLIP_BACKEND_CUDA, CLIP_PRECISION_FP16, 6, &s, err, sizeof err);
  CHECK(e != NULL, "graphs engine: %s", err);
  if (!e) return;
  float *first = (float *)malloc(sizeof(float) * 6 * EMBED), *again = (float *)malloc(sizeof(float) * 6 * EMBED);
  const int sizes[3] = {4, 6, 1};
  for (int k = 0; k < 3; k++) {
    const int m = sizes[k];
    CHECK(clip_engine_embed_pixels(e, px, m, first) == CLIP_OK, "graphs: first n=%d: %s", m, clip_engine_last_error(e));
    for (int rep = 0; rep < 2; rep++) {
      for (int i = 0; i < m * EMBED; i++) again[i] = NAN;
      CHECK(clip_engine_embed_pixels(e, px, m, again) == CLIP_OK, "graphs: replay n=%d: %s", m, clip_engine_last_error(e));
      const size_t bad = count_diff_bits(first, again, (size_t)m * EMBED);
      CHECK(bad == 0, "graphs: n=%d replay %d differs from the direct launches in %zu of %d values", m, rep, bad,
            m * EMBED);
    }
  }
  s = gf(e, -1, status, sizeof status);
  printf("  graph status: %s\n", status);
  CHECK(s == CLIP_OK && strstr(status, "graphs on") && strstr(status, "replays 6") && strstr(status, "captures 3"),
        "graphs not used as expected: '%s'", status);
  /* The timed forward replays the graph too. */
  float ms = -1;
  CHECK(tf(e, 4, 1, 2, &ms) == CLIP_OK && ms > 0, "time_forward with graphs: %s", clip_engine_last_error(e));
  /* Off at run time: direct launches, the same bits. */
  CHECK(gf(e, 0, status, sizeof status) == CLIP_OK && strstr(status, "graphs off"), "graphs off: '%s'", status);
  CHECK(clip_engine_embed_pixels(e, px, 1, again) == CLIP_OK, "graphs off: %s", clip_engine_last_error(e));
  CHECK(count_diff_bits(first, again, EMBED) == 0, "graphs off at run time: n=1 differs from the replay");
  clip_engine_destroy(e);

  setenv("CLIP_CUDA_GRAPHS", "0", 1);
  e = make_engine(dir, CLIP_BACKEND_CUDA, CLIP_PRECISION_FP16, 6, &s, err, sizeof err);
  unsetenv("CLIP_CUDA_GRAPHS");
  CHECK(e != NULL, "CLIP_CUDA_GRAPHS=0 engine: %s", err);
  if (e) {
    CHECK(clip_engine_embed_pixels(e, px, 1, again) == CLIP_OK && clip_engine_embed_pixels(e, px, 1, again) == CLIP_OK,
          "CLIP_CUDA_GRAPHS=0: %s", clip_engine_last_error(e));
    CHECK(count_diff_bits(first, again, EMBED) == 0, "CLIP_CUDA_GRAPHS=0: n=1 differs from the graph engine");
    CHECK(gf(e, -1, status, sizeof status) == CLIP_OK && strstr(status, "graphs off") && strstr(status, "replays 0"),
          "CLIP_CUDA_GRAPHS=0 status: '%s'", status);
  }
  clip_engine_destroy(e);
  free(first);
  free(again);
}

/* Test images: odd sizes, both orientations, an unchanged-size one, a padded stride. */
#define NIMG 7
static const int img_wh[NIMG][2] = {{1, 1}, {64, 64}, {100, 30}, {300, 200}, {17, 250}, {64, 90}, {1024, 768}};

static void run_precision(const char *dir, clip_precision prec, const char *label, double min_cos_want,
                          const float *px, const float *ref_px, int n, const clip_image *imgs,
                          const float *ref_img) {
  clip_status s;
  char err[512];
  clip_engine *e = make_engine(dir, CLIP_BACKEND_CUDA, prec, n, &s, err, sizeof err);
  CHECK(s == CLIP_OK && e, "%s: create failed: %s", label, err);
  if (!e) return;
  CHECK(strncmp(clip_engine_backend_name(e), "cuda ", 5) == 0, "%s: backend name '%s'", label,
        clip_engine_backend_name(e));
  float *out = (float *)malloc(sizeof(float) * (size_t)n * EMBED);
  /* Several batch sizes: the max_batch plans made at create, and lazy ones. */
  const int sizes[3] = {n, 1, 3};
  for (int k = 0; k < 3; k++) {
    const int m = sizes[k];
    for (size_t i = 0; i < (size_t)n * EMBED; i++) out[i] = NAN;
    s = clip_engine_embed_pixels(e, px, m, out);
    CHECK(s == CLIP_OK, "%s: embed_pixels n=%d: %s", label, m, clip_engine_last_error(e));
    double c, a;
    compare(out, ref_px, m, EMBED, &c, &a);
    printf("  %s embed_pixels n=%d: min cosine %.7f, max abs err %.3g\n", label, m, c, a);
    CHECK(c >= min_cos_want, "%s: embed_pixels n=%d min cosine %.7f < %.7f", label, m, c, min_cos_want);
  }
  s = clip_engine_embed_images(e, imgs, NIMG, out);
  CHECK(s == CLIP_OK, "%s: embed_images: %s", label, clip_engine_last_error(e));
  double c, a;
  compare(out, ref_img, NIMG, EMBED, &c, &a);
  printf("  %s embed_images n=%d: min cosine %.7f, max abs err %.3g\n", label, NIMG, c, a);
  CHECK(c >= min_cos_want, "%s: embed_images min cosine %.7f < %.7f", label, c, min_cos_want);
  /* n beyond max_batch is refused, and the engine still works afterwards. */
  s = clip_engine_embed_pixels(e, px, n + 1, out);
  CHECK(s == CLIP_ERR_INVALID_ARGUMENT, "%s: n > max_batch gave %d", label, (int)s);
  s = clip_engine_embed_pixels(e, px, 1, out);
  CHECK(s == CLIP_OK, "%s: embed after a refused call: %s", label, clip_engine_last_error(e));
  free(out);
  clip_engine_destroy(e);
}

/* Largest |a-b| over n values, relative to the largest |b| (so the bound is scale-free). */
static double rel_err(const float *a, const double *b, size_t n) {
  double m = 0, top = 1e-30;
  for (size_t i = 0; i < n; i++) {
    const double d = fabs((double)a[i] - b[i]);
    m = d > m || isnan(d) ? (isnan(d) ? INFINITY : d) : m;
    if (fabs(b[i]) > top) top = fabs(b[i]);
  }
  return m / top;
}

/* The staged forward (fp32): patch embedding against this test's own im2col GEMM, ln_pre,
   ln_post and the projection against double-precision host math applied to the previous
   stage's dump, and the last stage bit-identical to embed_pixels. */
static void check_stages(const char *dir, const float *px, stage_fn sf) {
  enum { N = 2 };
  clip_status s;
  char err[512];
  clip_weights w;
  memset(&w, 0, sizeof w);
  s = clip_weights_load(dir, &w, err, sizeof err);
  CHECK(s == CLIP_OK, "stages: weights: %s", err);
  if (s != CLIP_OK) return;
  const clip_config *c = &w.cfg;
  const int T = c->tokens, W = c->width, E = c->embed_dim, P = c->patch_size, G = c->grid, S = c->image_size;
  const int K = 3 * P * P, L = c->layers;
  clip_engine *e = make_engine(dir, CLIP_BACKEND_CUDA, CLIP_PRECISION_FP32, 3, &s, err, sizeof err);
  CHECK(e != NULL, "stages engine: %s", err);
  float *st[64];
  double *ref = (double *)malloc(sizeof(double) * N * T * W);
  for (int k = 0; k <= L + 3; k++) {
    st[k] = (float *)malloc(sizeof(float) * N * T * W);
    for (int i = 0; i < N * T * W; i++) st[k][i] = NAN;
    s = e ? sf(e, px, N, k, st[k]) : CLIP_ERR_BACKEND;
    CHECK(s == CLIP_OK, "stage %d: %s", k, e ? clip_engine_last_error(e) : "no engine");
  }
  if (e) {
    /* stage 0: tokens */
    for (int b = 0; b < N; b++)
      for (int t = 0; t < T; t++)
        for (int o = 0; o < W; o++) {
          double v = w.pos_emb[(size_t)t * W + o];
          if (t == 0) {
            v += w.class_emb[o];
          } else {
            const int gy = (t - 1) / G, gx = (t - 1) % G;
            for (int k = 0; k < K; k++) {
              const int ch = k / (P * P), ky = k % (P * P) / P, kx = k % P;
              v += (double)w.patch_w[(size_t)o * K + k] *
                   px[(((size_t)b * 3 + ch) * S + gy * P + ky) * S + gx * P + kx];
            }
          }
          ref[((size_t)b * T + t) * W + o] = v;
        }
    double r = rel_err(st[0], ref, (size_t)N * T * W);
    printf("  stage 0 (patch embed + cls + pos) vs host: rel err %.3g\n", r);
    CHECK(r < 1e-4, "stage 0 (patch embedding) rel err %.3g", r);
    /* stage 1 = ln_pre(stage 0) */
    for (int row = 0; row < N * T; row++)
      ln_row(st[0] + (size_t)row * W, w.ln_pre_w, w.ln_pre_b, W, c->ln_eps, ref + (size_t)row * W);
    r = rel_err(st[1], ref, (size_t)N * T * W);
    printf("  stage 1 (ln_pre) vs host: rel err %.3g\n", r);
    CHECK(r < 1e-4, "stage 1 (ln_pre) rel err %.3g", r);
    /* each block changes the stream */
    for (int l = 0; l < L; l++)
      CHECK(count_diff_bits(st[1 + l], st[2 + l], (size_t)N * T * W) > (size_t)N * T * W / 2,
            "block %d left the residual stream (mostly) unchanged", l);
    /* stage L+2 = ln_post(class rows of stage L+1) */
    for (int b = 0; b < N; b++)
      ln_row(st[L + 1] + (size_t)b * T * W, w.ln_post_w, w.ln_post_b, W, c->ln_eps, ref + (size_t)b * W);
    r = rel_err(st[L + 2], ref, (size_t)N * W);
    printf("  stage %d (ln_post) vs host on stage %d: rel err %.3g\n", L + 2, L + 1, r);
    CHECK(r < 1e-4, "stage %d (ln_post of the class tokens) rel err %.3g", L + 2, r);
    /* stage L+3 = proj(stage L+2) */
    for (int b = 0; b < N; b++)
      for (int o = 0; o < E; o++) {
        double v = 0;
        for (int i = 0; i < W; i++) v += (double)w.proj[(size_t)o * W + i] * st[L + 2][(size_t)b * W + i];
        ref[(size_t)b * E + o] = v;
      }
    r = rel_err(st[L + 3], ref, (size_t)N * E);
    printf("  stage %d (projection) vs host: rel err %.3g\n", L + 3, r);
    CHECK(r < 1e-4, "stage %d (projection) rel err %.3g", L + 3, r);
    /* the last stage is what embed_pixels returns, bit for bit (direct and replayed) */
    float out[N * EMBED];
    for (int rep = 0; rep < 2; rep++) {
      CHECK(clip_engine_embed_pixels(e, px, N, out) == CLIP_OK, "stages: embed: %s", clip_engine_last_error(e));
      CHECK(count_diff_bits(out, st[L + 3], (size_t)N * E) == 0, "stage %d differs from embed_pixels (call %d)",
            L + 3, rep);
    }
    CHECK(sf(e, px, N, L + 4, st[0]) == CLIP_ERR_INVALID_ARGUMENT, "stage %d accepted", L + 4);
  }
  for (int k = 0; k <= L + 3; k++) free(st[k]);
  free(ref);
  clip_engine_destroy(e);
  clip_weights_free(&w);
}

/* NSEQ token sequences as clip_tokenize lays them out (start id, ids, end id = the largest,
   zeros): lengths ctx (end token last), 2, and between; one holds a real id 0. */
static void fill_tokens(int32_t *tok, int ctx) {
  const int len[NSEQ] = {ctx, 2, 5, ctx / 2, ctx - 3, 9};
  memset(tok, 0, sizeof(int32_t) * (size_t)NSEQ * ctx);
  for (int i = 0; i < NSEQ; i++) {
    int32_t *t = tok + (size_t)i * ctx;
    t[0] = TEXT_VOCAB - 2;
    for (int k = 1; k < len[i] - 1; k++) t[k] = (int32_t)((k * 131 + i * 977) % (TEXT_VOCAB - 2));
    if (i == 2) t[2] = 0;
    t[len[i] - 1] = TEXT_VOCAB - 1;
  }
}

/* The CUDA text tower against the CPU backend's in each precision: per-sequence cosine, a
   smaller batch, a repeated call, padding after the end token, n > max_batch. */
static void check_text(const char *dir, int ctx) {
  clip_status s;
  char err[512];
  int32_t tok[NSEQ * TEXT_CTX_QUICK];
  float ref[NSEQ * EMBED], out[NSEQ * EMBED], again[NSEQ * EMBED];
  fill_tokens(tok, ctx);
  clip_engine *cpu = make_engine(dir, CLIP_BACKEND_CPU, CLIP_PRECISION_FP32, NSEQ, &s, err, sizeof err);
  CHECK(cpu != NULL, "text: CPU engine: %s", err);
  if (!cpu) return;
  s = clip_engine_embed_tokens(cpu, tok, NSEQ, ref);
  CHECK(s == CLIP_OK, "text: CPU embed_tokens: %s", clip_engine_last_error(cpu));
  clip_engine_destroy(cpu);
  const struct { clip_precision p; const char *name; double min_cos; } precs[3] = {
      {CLIP_PRECISION_FP32, "fp32", 0.99999}, {CLIP_PRECISION_FP16, "fp16", 0.999},
      {CLIP_PRECISION_BF16, "bf16", 0.995}};
  for (int k = 0; k < 3; k++) {
    clip_engine *e = make_engine(dir, CLIP_BACKEND_CUDA, precs[k].p, NSEQ, &s, err, sizeof err);
    CHECK(e != NULL, "text %s: CUDA engine: %s", precs[k].name, err);
    if (!e) continue;
    clip_text_info ti;
    CHECK(clip_engine_text_info(e, &ti) == CLIP_OK && ti.context_length == ctx, "text info");
    s = clip_engine_embed_tokens(e, tok, NSEQ, out);
    CHECK(s == CLIP_OK, "text %s: embed_tokens: %s", precs[k].name, clip_engine_last_error(e));
    double cmin, amax;
    compare(out, ref, NSEQ, EMBED, &cmin, &amax);
    printf("  text ctx %d %s: min cos %.7f, max abs %.2e\n", ctx, precs[k].name, cmin, amax);
    CHECK(cmin >= precs[k].min_cos, "text ctx %d %s: min cos %.7f < %g", ctx, precs[k].name, cmin,
          precs[k].min_cos);
    /* Two sequences alone (a lazily planned GEMM shape), then the batch again: bit-identical. */
    s = clip_engine_embed_tokens(e, tok, 2, again);
    compare(again, ref, 2, EMBED, &cmin, &amax);
    CHECK(s == CLIP_OK && cmin >= precs[k].min_cos, "text %s n=2: %d, min cos %.7f", precs[k].name,
          (int)s, cmin);
    s = clip_engine_embed_tokens(e, tok, NSEQ, again);
    CHECK(s == CLIP_OK && memcmp(again, out, sizeof out) == 0, "text %s: a repeated call differs",
          precs[k].name);
    /* Sequences 1-3 only (lengths 2, 5, ctx/2): the forward runs on ctx/2 positions, where the
       tensor-core attention takes over in fp16/bf16 (ctx/2 <= 64). */
    s = clip_engine_embed_tokens(e, tok + ctx, 3, again);
    compare(again, ref + EMBED, 3, EMBED, &cmin, &amax);
    printf("  text ctx %d %s, short batch: min cos %.7f, max abs %.2e\n", ctx, precs[k].name, cmin,
           amax);
    CHECK(s == CLIP_OK && cmin >= precs[k].min_cos, "text %s short batch: %d, min cos %.7f",
          precs[k].name, (int)s, cmin);
    /* Ids after a short sequence's end token change nothing (the mask is causal). */
    int32_t padded[NSEQ * TEXT_CTX_QUICK];
    memcpy(padded, tok, sizeof(int32_t) * NSEQ * ctx);
    for (int t = 2; t < ctx; t++) padded[ctx + t] = (int32_t)(t * 37 % (TEXT_VOCAB - 1));
    s = clip_engine_embed_tokens(e, padded, NSEQ, again);
    CHECK(s == CLIP_OK && memcmp(again, out, sizeof out) == 0,
          "text %s: ids after the end token changed the embeddings", precs[k].name);
    int32_t big[(NSEQ + 1) * TEXT_CTX_QUICK];
    memset(big, 0, sizeof big);
    s = clip_engine_embed_tokens(e, big, NSEQ + 1, again);
    CHECK(s == CLIP_ERR_INVALID_ARGUMENT, "text %s: n > max_batch gave %d", precs[k].name, (int)s);
    clip_engine_destroy(e);
  }
}

int main(void) {
  char tmpl[] = "/tmp/clip_test_cuda_XXXXXX";
  if (!mkdtemp(tmpl)) {
    perror("mkdtemp");
    return 1;
  }
  char qdir[600], edir[600];
  snprintf(qdir, sizeof qdir, "%s/quick", tmpl);
  snprintf(edir, sizeof edir, "%s/erf", tmpl);
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s' '%s'", qdir, edir);
  if (system(cmd) != 0 || write_model(qdir, 1) != 0 || write_model(edir, 0) != 0) {
    fprintf(stderr, "cannot write the test models under %s\n", tmpl);
    return 1;
  }

  clip_status s;
  char err[512];
  clip_engine *probe = make_engine(qdir, CLIP_BACKEND_CUDA, CLIP_PRECISION_FP32, 4, &s, err, sizeof err);
  if (!probe && s == CLIP_ERR_UNSUPPORTED) {
    printf("SKIP: no CUDA backend or device here (%s)\n", err);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpl);
    return 0;
  }
  CHECK(probe != NULL, "CUDA engine create failed: status %d: %s", (int)s, err);
  if (!probe) return 1;
  printf("device: %s\n", clip_engine_backend_name(probe));
  clip_engine_destroy(probe);

  /* Inputs and the CPU references. */
  const int n = NIMG; /* also the CUDA engines' max_batch */
  float *px = (float *)malloc(sizeof(float) * (size_t)n * 3 * IMG * IMG);
  float *ref_px = (float *)malloc(sizeof(float) * (size_t)n * EMBED);
  float *ref_img = (float *)malloc(sizeof(float) * NIMG * EMBED);
  fill_pixels(px, n);
  clip_image imgs[NIMG];
  uint8_t *bufs[NIMG];
  for (int i = 0; i < NIMG; i++) {
    const int w = img_wh[i][0], h = img_wh[i][1], stride = w * 3 + (i % 2 ? 7 : 0);
    bufs[i] = (uint8_t *)malloc((size_t)stride * h);
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w * 3; x++)
        bufs[i][(size_t)y * stride + x] = (uint8_t)(128 + 100 * sin(0.05 * x + 0.03 * y * (i + 1)) + (x * 7 + y * 3) % 23);
    imgs[i].rgb = bufs[i];
    imgs[i].width = w;
    imgs[i].height = h;
    imgs[i].stride = i % 2 ? stride : 0;
  }

  /* CLIP_TEST_CUDA_QUICK=1 (used under compute-sanitizer): one model, fp16 only. */
  const int quick = getenv("CLIP_TEST_CUDA_QUICK") != NULL;
  const char *dirs[2] = {qdir, edir};
  for (int d = 0; d < (quick ? 1 : 2); d++) {
    printf("%s GELU model\n", d == 0 ? "QuickGELU" : "exact-GELU");
    clip_engine *cpu = make_engine(dirs[d], CLIP_BACKEND_CPU, CLIP_PRECISION_FP32, 16, &s, err, sizeof err);
    CHECK(cpu != NULL, "CPU engine: %s", err);
    if (!cpu) break;
    clip_model_info info;
    clip_engine_info(cpu, &info);
    CHECK(info.quick_gelu == (d == 0), "model %d: quick_gelu %d", d, info.quick_gelu);
    CHECK(clip_engine_embed_pixels(cpu, px, n, ref_px) == CLIP_OK, "CPU embed_pixels: %s", clip_engine_last_error(cpu));
    CHECK(clip_engine_embed_images(cpu, imgs, NIMG, ref_img) == CLIP_OK, "CPU embed_images: %s", clip_engine_last_error(cpu));
    clip_engine_destroy(cpu);
    if (!quick) run_precision(dirs[d], CLIP_PRECISION_FP32, "fp32", 0.99999, px, ref_px, n, imgs, ref_img);
    run_precision(dirs[d], CLIP_PRECISION_FP16, "fp16", 0.999, px, ref_px, n, imgs, ref_img);
    if (!quick) run_precision(dirs[d], CLIP_PRECISION_BF16, "bf16", 0.995, px, ref_px, n, imgs, ref_img);
    check_text(dirs[d], d == 0 ? TEXT_CTX_QUICK : TEXT_CTX_ERF);
  }

  /* The device's uint8 crops equal the CPU path's bit for bit. */
  preprocess_u8_fn pre = (preprocess_u8_fn)dlsym(RTLD_DEFAULT, "clip_cuda_debug_preprocess_u8");
  time_fn tf = (time_fn)dlsym(RTLD_DEFAULT, "clip_cuda_debug_time_forward");
  profile_fn pf = (profile_fn)dlsym(RTLD_DEFAULT, "clip_cuda_debug_profile");
  stage_fn sf = (stage_fn)dlsym(RTLD_DEFAULT, "clip_cuda_debug_forward_stage");
  graphs_fn gf = (graphs_fn)dlsym(RTLD_DEFAULT, "clip_cuda_debug_graphs");
  CHECK(pre && tf && pf && sf && gf, "debug entry points not exported");
  if (sf) {
    printf("staged forward (fp32)\n");
    check_stages(qdir, px, sf);
  }
  if (gf && tf) {
    printf("CUDA graphs (fp16)\n");
    check_graphs(qdir, px, gf, tf);
  }
  setenv("CLIP_CUDA_PROFILE", "1", 1);
  clip_engine *e = make_engine(qdir, CLIP_BACKEND_CUDA, CLIP_PRECISION_FP16, 8, &s, err, sizeof err);
  unsetenv("CLIP_CUDA_PROFILE");
  CHECK(e != NULL, "profiling engine: %s", err);
  if (e && pre) {
    const size_t per = (size_t)IMG * IMG * 3;
    uint8_t *dev = (uint8_t *)malloc(per * NIMG), *cpu = (uint8_t *)malloc(per);
    s = pre(e, imgs, NIMG, dev);
    CHECK(s == CLIP_OK, "debug_preprocess_u8: %s", clip_engine_last_error(e));
    for (int i = 0; i < NIMG && s == CLIP_OK; i++) {
      CHECK(clip_preprocess_image_u8(&imgs[i], IMG, cpu) == CLIP_OK, "CPU u8 image %d", i);
      size_t bad = 0;
      for (size_t k = 0; k < per; k++) bad += dev[per * i + k] != cpu[k];
      CHECK(bad == 0, "image %d (%dx%d): %zu of %zu uint8 values differ from the CPU path", i,
            imgs[i].width, imgs[i].height, bad, per);
    }
    free(dev);
    free(cpu);
  }
  if (e && tf && pf) {
    float out[8 * EMBED];
    CHECK(clip_engine_embed_pixels(e, px, 4, out) == CLIP_OK, "embed: %s", clip_engine_last_error(e));
    float ms = -1;
    s = tf(e, 4, 1, 3, &ms);
    CHECK(s == CLIP_OK && ms > 0, "debug_time_forward: %d %g %s", (int)s, ms, clip_engine_last_error(e));
    char prof[2048];
    s = pf(e, prof, sizeof prof);
    CHECK(s == CLIP_OK && strstr(prof, "attention") && strstr(prof, "gemm_fc1"), "profile text: '%s'", prof);
    printf("profile (ms, count):\n%s", prof);
  }
  clip_engine_destroy(e);

  /* Too little device memory is a clean CLIP_ERR_OUT_OF_MEMORY with the numbers. */
  e = make_engine(qdir, CLIP_BACKEND_CUDA, CLIP_PRECISION_FP16, 20000000, &s, err, sizeof err);
  CHECK(!e && s == CLIP_ERR_OUT_OF_MEMORY && strstr(err, "free"), "huge max_batch: status %d: %s", (int)s, err);
  clip_engine_destroy(e);

  for (int i = 0; i < NIMG; i++) free(bufs[i]);
  free(px);
  free(ref_px);
  free(ref_img);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpl);
  printf("test_cuda: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
