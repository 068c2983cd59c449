/* cpu_backend.c: the CPU forward passes of CLIP's vision tower and text tower in fp32 over
   the canonical weights (e->w). Both towers run the same pre-LN residual block (the text
   tower's attention is causal). Every linear layer is one GEMM over all tokens of the batch
   (gemm.c: OpenBLAS or the C kernel); LayerNorm, attention and GELU are plain C loops split
   over OpenMP threads. All scratch is allocated once at init, sized for e->max_batch of the
   larger tower. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "gemm.h"
#include "internal.h"

#ifdef _OPENMP
#define CLIP_OMP(x) _Pragma(#x)
static int thread_id(void) { return omp_get_thread_num(); }
#else
#define CLIP_OMP(x)
static int thread_id(void) { return 0; }
#endif

/* Sized for the larger of the two towers (text: T = context length, W/M its widths). */
typedef struct cpu_state {
  int cap;       /* images (or token sequences) the buffers hold (max_batch) */
  float *x;      /* (cap*T, W) residual stream */
  float *h;      /* (cap*T, W) LayerNorm output / attention output / patch embeddings */
  float *big;    /* max of (cap*T, 3W) qkv, (cap*T, M) MLP hidden, (cap*g*g, 3*P*P) im2col */
  float *scores; /* (threads, T, T) one attention score matrix per thread */
  float *cls;    /* (cap, W) ln_post of the class tokens / ln_final of the end tokens */
} cpu_state;

/* ---- ops ---- */

/* Row-wise LayerNorm, in place allowed. Statistics in two passes (mean, then the mean of
   squared deviations) so large means do not cancel the variance. */
static void layer_norm(const float *in, float *out, int rows, int W, const float *g,
                       const float *b, float eps, int threads) {
  CLIP_OMP(omp parallel for schedule(static) num_threads(threads) if (rows >= 4))
  for (int r = 0; r < rows; r++) {
    const float *v = in + (size_t)r * W;
    float *o = out + (size_t)r * W;
    float sum = 0.0f;
    CLIP_OMP(omp simd reduction(+ : sum))
    for (int i = 0; i < W; i++) sum += v[i];
    const float mean = sum / (float)W;
    float sq = 0.0f;
    CLIP_OMP(omp simd reduction(+ : sq))
    for (int i = 0; i < W; i++) {
      const float d = v[i] - mean;
      sq += d * d;
    }
    const float rstd = 1.0f / sqrtf(sq / (float)W + eps);
    CLIP_OMP(omp simd)
    for (int i = 0; i < W; i++) o[i] = (v[i] - mean) * rstd * g[i] + b[i];
  }
}

/* Pixels (n,3,S,S) -> patch rows (n*g*g, 3*P*P), columns in conv1's [c][ky][kx] order, so
   the patch embedding is one GEMM with the flattened conv weight. */
static void im2col(const float *px, float *cols, int n, int S, int P, int threads) {
  const int g = S / P, K = 3 * P * P;
  CLIP_OMP(omp parallel for schedule(static) num_threads(threads))
  for (int r = 0; r < n * g * g; r++) {
    const int b = r / (g * g), gy = (r / g) % g, gx = r % g;
    float *dst = cols + (size_t)r * K;
    for (int c = 0; c < 3; c++)
      for (int ky = 0; ky < P; ky++)
        memcpy(dst + (c * P + ky) * P,
               px + (((size_t)b * 3 + c) * S + (size_t)gy * P + ky) * S + (size_t)gx * P,
               sizeof(float) * (size_t)P);
  }
}

/* exp(x) written so loops over it vectorize (glibc's expf is a scalar call): x = n ln2 + r
   with |r| <= ln2/2, e^r by its Taylor series to r^7 (truncation < 6e-9 relative, below
   float rounding), 2^n by building the exponent bits. |x| is first clamped to 87, where
   the result stays a normal float (callers only need e^x ~ 0 or huge there). Selections are
   integer bit operations: GCC does not if-convert float compares (they may trap), which
   kept the loops scalar. */
static inline float vexpf(float x) {
  int32_t ix;
  memcpy(&ix, &x, sizeof ix);
  const int32_t big = -(int32_t)((ix & 0x7fffffff) > 0x42AE0000); /* |x| > 87.0f (or NaN) */
  ix = (ix & ~big) | (((ix & (int32_t)0x80000000) | 0x42AE0000) & big);
  memcpy(&x, &ix, sizeof x);
  const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
  const float t = x * 1.44269504088896341f + shifter;
  const float n = t - shifter;
  const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t tb;
  memcpy(&tb, &t, sizeof tb);
  const int32_t sb = ((tb - 0x4B400000) + 127) * (1 << 23); /* 2^n; t's mantissa holds n */
  float scale;
  memcpy(&scale, &sb, sizeof scale);
  return p * scale;
}

/* erf(x) by Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7, the size of float
   rounding of 1 + erf) with vexpf, so the exact-GELU loop vectorizes; with erff it cost 3x
   the QuickGELU loop. The sign is copied back with bit operations (see vexpf). */
static inline float verff(float x) {
  int32_t ix;
  memcpy(&ix, &x, sizeof ix);
  const int32_t sign = ix & (int32_t)0x80000000;
  const int32_t iax = ix & 0x7fffffff;
  float ax;
  memcpy(&ax, &iax, sizeof ax);
  const float t = 1.0f / (1.0f + 0.3275911f * ax);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  const float y = 1.0f - p * t * vexpf(-ax * ax);
  int32_t iy;
  memcpy(&iy, &y, sizeof iy);
  iy |= sign;
  float out;
  memcpy(&out, &iy, sizeof out);
  return out;
}

/* Multi-head attention for every (sequence, head) pair: qkv (n*T, 3W) with q | k | v blocks
   per row, heads as consecutive hd-wide slices; result (n*T, W) in the same head layout, ready
   for the output projection. Per pair: S = (Q K^T) / sqrt(hd), softmax with the row max
   subtracted, O = P V; the two products go to clip_sgemm_small (OpenBLAS's vector kernels
   when built with it; a plain loop was ~5x slower). causal: query t sees keys 0..t only (the
   text tower's mask: CLIP adds -inf above the diagonal, whose exp is exactly 0). */
static void attention(const float *qkv, float *out, float *scores, int n, int T, int W, int H,
                      int causal, int threads) {
  const int hd = W / H, ld = 3 * W;
  const float scale = 1.0f / sqrtf((float)hd);
  CLIP_OMP(omp parallel for schedule(static) num_threads(threads) if (n * H > 1))
  for (int bh = 0; bh < n * H; bh++) {
    const int b = bh / H, h = bh % H;
    const float *q = qkv + (size_t)b * T * ld + (size_t)h * hd;
    const float *k = q + W;
    const float *v = q + 2 * W;
    float *o = out + (size_t)b * T * W + (size_t)h * hd;
    float *S = scores + (size_t)thread_id() * T * T; /* (T, T) */
    clip_sgemm_small(1, T, T, hd, scale, q, ld, k, ld, S, T);
    for (int t = 0; t < T; t++) {
      float *st = S + (size_t)t * T;
      const int keys = causal ? t + 1 : T;
      float mx = st[0];
      for (int s = 1; s < keys; s++) mx = st[s] > mx ? st[s] : mx;
      float sum = 0.0f;
      CLIP_OMP(omp simd reduction(+ : sum))
      for (int s = 0; s < keys; s++) {
        const float p = vexpf(st[s] - mx);
        st[s] = p;
        sum += p;
      }
      const float inv = 1.0f / sum;
      for (int s = 0; s < keys; s++) st[s] *= inv;
      for (int s = keys; s < T; s++) st[s] = 0.0f;
    }
    clip_sgemm_small(0, T, hd, T, 1.0f, S, T, v, ld, o, W);
  }
}

static void gelu_inplace(float *a, size_t count, int quick, int threads) {
  const long long cnt = (long long)count;
  if (quick) {
    CLIP_OMP(omp parallel for simd schedule(static) num_threads(threads))
    for (long long i = 0; i < cnt; i++) {
      const float v = a[i];
      a[i] = v / (1.0f + vexpf(-1.702f * v)); /* v * sigmoid(1.702 v) */
    }
  } else {
    CLIP_OMP(omp parallel for simd schedule(static) num_threads(threads))
    for (long long i = 0; i < cnt; i++) {
      const float v = a[i];
      a[i] = 0.5f * v * (1.0f + verff(v * 0.70710678118654752f));
    }
  }
}

/* ---- the forwards ---- */

/* One pre-LN residual block on the stream st->x (n sequences of T tokens, width W, MLP width
   M): x += out_proj(attention(ln_1(x))); x += fc2(act(fc1(ln_2(x)))). */
static void residual_block(cpu_state *st, const clip_layer_weights *L, int n, int T, int W, int M,
                           int heads, int quick_gelu, float eps, int causal, int th) {
  const int rows = n * T;
  float *x = st->x, *h = st->h, *big = st->big;
  layer_norm(x, h, rows, W, L->ln1_w, L->ln1_b, eps, th);
  clip_sgemm_nt(rows, 3 * W, W, h, L->qkv_w, L->qkv_b, big, th);
  attention(big, h, st->scores, n, T, W, heads, causal, th);
  clip_sgemm_nt_acc(rows, W, W, h, L->out_w, L->out_b, x, th);
  layer_norm(x, h, rows, W, L->ln2_w, L->ln2_b, eps, th);
  clip_sgemm_nt(rows, M, W, h, L->fc1_w, L->fc1_b, big, th);
  gelu_inplace(big, (size_t)rows * M, quick_gelu, th);
  clip_sgemm_nt_acc(rows, W, M, big, L->fc2_w, L->fc2_b, x, th);
}

static clip_status cpu_embed_pixels(clip_engine *e, const float *pixels, int n, float *out) {
  cpu_state *st = (cpu_state *)e->backend_state;
  if (!st) return clip_set_error(e, CLIP_ERR_BACKEND, "cpu backend: not initialised");
  if (n > st->cap)
    return clip_set_error(e, CLIP_ERR_INVALID_ARGUMENT,
                          "cpu backend: n=%d is larger than the buffers (%d images)", n, st->cap);
  const clip_weights *w = &e->w;
  const clip_config *c = &w->cfg;
  const int W = c->width, T = c->tokens, M = c->mlp_width, P = c->patch_size, g = c->grid;
  const int gg = g * g, rows = n * T, th = e->threads;
  float *x = st->x, *h = st->h, *big = st->big;

  /* patch embedding: (n*g*g, 3PP) @ patch_w^T -> h (n*g*g, W) */
  im2col(pixels, big, n, c->image_size, P, th);
  clip_sgemm_nt(n * gg, W, 3 * P * P, big, w->patch_w, NULL, h, th);
  /* tokens: class embedding first, then the patches, plus positions */
  CLIP_OMP(omp parallel for schedule(static) num_threads(th))
  for (int r = 0; r < rows; r++) {
    const int b = r / T, t = r % T;
    const float *src = t == 0 ? w->class_emb : h + ((size_t)b * gg + t - 1) * W;
    const float *pos = w->pos_emb + (size_t)t * W;
    float *dst = x + (size_t)r * W;
    for (int i = 0; i < W; i++) dst[i] = src[i] + pos[i];
  }
  layer_norm(x, x, rows, W, w->ln_pre_w, w->ln_pre_b, c->ln_eps, th);

  for (int l = 0; l < c->layers; l++)
    residual_block(st, &w->layer[l], n, T, W, M, c->heads, c->quick_gelu, c->ln_eps, 0, th);

  /* ln_post on the class tokens only, then the projection (E, W) */
  for (int b = 0; b < n; b++)
    memcpy(st->cls + (size_t)b * W, x + (size_t)b * T * W, sizeof(float) * (size_t)W);
  layer_norm(st->cls, st->cls, n, W, w->ln_post_w, w->ln_post_b, c->ln_eps, th);
  /* Rows that overflowed (NaN/Inf) are returned as they are, as the CUDA backend does: the
     caller fails those images alone (see clip_engine_embed_images). */
  clip_sgemm_nt(n, c->embed_dim, W, st->cls, w->proj, NULL, out, th);
  return CLIP_OK;
}

/* The text tower (clip_engine_embed_tokens; ids and eot checked by the engine): token +
   positional embeddings, the blocks under the causal mask, ln_final on each sequence's end
   token, the projection (E, W). Under the causal mask no position after an end token reaches
   it, so the blocks run on the first T = (last end token of the batch) + 1 positions only:
   short captions cost a fraction of the 77-token context. */
static clip_status cpu_embed_tokens(clip_engine *e, const int32_t *tokens, const int *eot, int n,
                                    float *out) {
  cpu_state *st = (cpu_state *)e->backend_state;
  if (!st) return clip_set_error(e, CLIP_ERR_BACKEND, "cpu backend: not initialised");
  if (n > st->cap)
    return clip_set_error(e, CLIP_ERR_INVALID_ARGUMENT,
                          "cpu backend: n=%d is larger than the buffers (%d sequences)", n, st->cap);
  const clip_text_weights *w = &e->w.text;
  const clip_text_config *c = &w->cfg;
  const int W = c->width, C = c->context_length, th = e->threads;
  int T = 1;
  for (int b = 0; b < n; b++) T = eot[b] + 1 > T ? eot[b] + 1 : T;
  const int rows = n * T;
  float *x = st->x;
  CLIP_OMP(omp parallel for schedule(static) num_threads(th))
  for (int r = 0; r < rows; r++) {
    const int b = r / T, t = r % T;
    const float *tok = w->token_emb + (size_t)tokens[(size_t)b * C + t] * W;
    const float *pos = w->pos_emb + (size_t)t * W;
    float *dst = x + (size_t)r * W;
    for (int i = 0; i < W; i++) dst[i] = tok[i] + pos[i];
  }
  for (int l = 0; l < c->layers; l++)
    residual_block(st, &w->layer[l], n, T, W, c->mlp_width, c->heads, c->quick_gelu, c->ln_eps, 1,
                   th);
  for (int b = 0; b < n; b++)
    memcpy(st->cls + (size_t)b * W, x + ((size_t)b * T + eot[b]) * W, sizeof(float) * (size_t)W);
  layer_norm(st->cls, st->cls, n, W, w->ln_final_w, w->ln_final_b, c->ln_eps, th);
  clip_sgemm_nt(n, c->embed_dim, W, st->cls, w->proj, NULL, out, th);
  return CLIP_OK;
}

static void cpu_destroy(clip_engine *e) {
  cpu_state *st = (cpu_state *)e->backend_state;
  if (!st) return;
  free(st->x);
  free(st->h);
  free(st->big);
  free(st->scores);
  free(st->cls);
  free(st);
  e->backend_state = NULL;
}

static const clip_backend_impl cpu_impl = {cpu_embed_pixels, NULL, cpu_destroy, NULL,
                                           cpu_embed_tokens};

static size_t max2(size_t a, size_t b) { return a > b ? a : b; }
static size_t max3(size_t a, size_t b, size_t c) { return max2(max2(a, b), c); }

clip_status clip_cpu_backend_init(clip_engine *e) {
  const clip_config *c = &e->w.cfg;
  if (c->width <= 0 || c->heads <= 0 || c->width % c->heads != 0 || c->patch_size <= 0 ||
      c->grid * c->patch_size != c->image_size || c->tokens != c->grid * c->grid + 1 ||
      c->layers < 0 || c->mlp_width <= 0 || c->embed_dim <= 0 || !e->w.layer)
    return clip_set_error(e, CLIP_ERR_BAD_WEIGHTS,
                          "cpu backend: inconsistent model config (width %d, heads %d, patch %d, "
                          "image %d, grid %d, tokens %d)",
                          c->width, c->heads, c->patch_size, c->image_size, c->grid, c->tokens);
  if (e->threads < 1) e->threads = 1;
  const size_t cap = (size_t)(e->max_batch > 0 ? e->max_batch : 1);
  const size_t W = c->width, T = c->tokens, M = c->mlp_width, P = c->patch_size;
  size_t tokW = cap * T * W, big = max3(cap * T * 3 * W, cap * T * M,
                                         cap * c->grid * c->grid * 3 * P * P);
  size_t T2 = T * T, clsW = cap * W;
  const clip_text_config *tc = &e->w.text.cfg;
  if (e->w.has_text) {
    if (tc->width <= 0 || tc->heads <= 0 || tc->width % tc->heads != 0 || tc->context_length <= 0 ||
        tc->mlp_width <= 0 || tc->embed_dim <= 0)
      return clip_set_error(e, CLIP_ERR_BAD_WEIGHTS,
                            "cpu backend: inconsistent text config (width %d, heads %d, context %d)",
                            tc->width, tc->heads, tc->context_length);
    const size_t tT = (size_t)tc->context_length, tW = (size_t)tc->width;
    tokW = max2(tokW, cap * tT * tW);
    big = max3(big, cap * tT * 3 * tW, cap * tT * (size_t)tc->mlp_width);
    T2 = max2(T2, tT * tT);
    clsW = max2(clsW, cap * tW);
  }

  cpu_state *st = (cpu_state *)calloc(1, sizeof *st);
  if (!st) return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY, "cpu backend: out of host memory");
  e->backend_state = st;
  e->impl = &cpu_impl; /* so a failed init is cleaned up by destroy */
  st->cap = (int)cap;
  st->x = (float *)malloc(sizeof(float) * tokW);
  st->h = (float *)malloc(sizeof(float) * tokW);
  st->big = (float *)malloc(sizeof(float) * big);
  const size_t att = (size_t)e->threads * T2;
  st->scores = (float *)malloc(sizeof(float) * att);
  st->cls = (float *)malloc(sizeof(float) * clsW);
  if (!st->x || !st->h || !st->big || !st->scores || !st->cls) {
    size_t bytes = sizeof(float) * (2 * tokW + big + att + clsW);
    return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY,
                          "cpu backend: cannot allocate %zu MB of scratch for max_batch %zu "
                          "(lower max_batch)",
                          bytes >> 20, cap);
  }
  snprintf(e->backend_name, sizeof e->backend_name, "cpu %d thread%s fp32 %s", e->threads,
           e->threads == 1 ? "" : "s", clip_gemm_impl_name());
  return CLIP_OK;
}
