/* memory.cu: the CUDA backend's device memory: the weights arena (GEMM weights in the
   compute dtype, LayerNorm/embedding/projection tensors in fp32) and the activations arena,
   both sized from the config and max_batch at create and carved into 256-byte-aligned
   pieces, and the one-time upload of the host fp32 weights into the first; the same for the
   text tower, whose arenas text_tower.cu makes at its first use. */
#include "backend.cuh"
#include "convert.cuh"
#include "memory.cuh"

static void *take(clip_arena *a, size_t bytes) {
  void *p = a->base ? a->base + a->off : NULL;
  a->off += clip_align_up(bytes ? bytes : 1, ALIGN);
  return p;
}

/* One block of either tower: LayerNorm parameters fp32, the GEMM weights in element size es. */
static void layout_layer(dev_layer *L, size_t W, size_t M, size_t es, clip_arena *a) {
  L->ln1_w = (float *)take(a, W * 4);
  L->ln1_b = (float *)take(a, W * 4);
  L->ln2_w = (float *)take(a, W * 4);
  L->ln2_b = (float *)take(a, W * 4);
  L->qkv_w = take(a, 3 * W * W * es);
  L->qkv_b = take(a, 3 * W * es);
  L->out_w = take(a, W * W * es);
  L->out_b = take(a, W * es);
  L->fc1_w = take(a, M * W * es);
  L->fc1_b = take(a, M * es);
  L->fc2_w = take(a, W * M * es);
  L->fc2_b = take(a, W * es);
}

void clip_layout_weights(cuda_state *st, const clip_config *c, clip_arena *a) {
  const size_t W = c->width, M = c->mlp_width, E = c->embed_dim, T = c->tokens;
  const size_t K = 3 * (size_t)c->patch_size * c->patch_size, es = st->esz;
  st->patch_w = take(a, W * K * es);
  st->cls = (float *)take(a, W * 4);
  st->pos = (float *)take(a, T * W * 4);
  st->ln_pre_w = (float *)take(a, W * 4);
  st->ln_pre_b = (float *)take(a, W * 4);
  st->ln_post_w = (float *)take(a, W * 4);
  st->ln_post_b = (float *)take(a, W * 4);
  st->proj = (float *)take(a, E * W * 4);
  for (int l = 0; l < c->layers; l++) layout_layer(&st->layer[l], W, M, es, a);
}

void clip_layout_activations(cuda_state *st, const clip_config *c, int mb, clip_arena *a) {
  const size_t W = c->width, M = c->mlp_width, E = c->embed_dim, T = c->tokens;
  const size_t S = c->image_size, GG = (size_t)c->grid * c->grid;
  const size_t K = 3 * (size_t)c->patch_size * c->patch_size, es = st->esz, R = (size_t)mb * T;
  st->input = take(a, (size_t)mb * 3 * S * S * es);
  st->col = take(a, (size_t)mb * GG * K * es);
  st->pout = take(a, (size_t)mb * GG * W * es);
  st->x = (float *)take(a, R * W * 4);
  st->ln = take(a, R * W * es);
  st->qkv = take(a, R * 3 * W * es);
  st->att = take(a, R * W * es);
  st->tmp = take(a, R * W * es);
  st->h = take(a, R * M * es);
  st->cls_ln = (float *)take(a, (size_t)mb * W * 4);
  st->emb = (float *)take(a, (size_t)mb * E * 4);
  st->lut = (float *)take(a, 3 * 256 * 4);
  st->workspace = take(a, WORKSPACE_BYTES);
}

void clip_layout_text_weights(cuda_state *st, text_state *ts, const clip_text_config *c,
                              clip_arena *a) {
  const size_t W = c->width, M = c->mlp_width, E = c->embed_dim;
  ts->tok = (float *)take(a, (size_t)c->vocab_size * W * 4);
  ts->pos = (float *)take(a, (size_t)c->context_length * W * 4);
  ts->lnf_w = (float *)take(a, W * 4);
  ts->lnf_b = (float *)take(a, W * 4);
  ts->proj = (float *)take(a, E * W * 4);
  for (int l = 0; l < c->layers; l++) layout_layer(&ts->layer[l], W, M, st->esz, a);
}

void clip_layout_text_activations(cuda_state *st, text_state *ts, const clip_text_config *c,
                                  int mb, clip_arena *a) {
  const size_t W = c->width, M = c->mlp_width, E = c->embed_dim, es = st->esz;
  const size_t R = (size_t)mb * c->context_length;
  ts->ids = (int32_t *)take(a, R * 4);
  ts->eot = (int32_t *)take(a, (size_t)mb * 4);
  ts->x = (float *)take(a, R * W * 4);
  ts->ln = take(a, R * W * es);
  ts->qkv = take(a, R * 3 * W * es);
  ts->att = take(a, R * W * es);
  ts->tmp = take(a, R * W * es);
  ts->h = take(a, R * M * es);
  ts->sel = (float *)take(a, (size_t)mb * W * 4);
  ts->emb = (float *)take(a, (size_t)mb * E * 4);
}

/* host fp32 -> device in dtype dt (fp32 copies directly; others through `tmp`). */
static clip_status upload(clip_engine *e, void *dst, clip_dtype dt, const float *src, size_t count,
                          float *tmp) {
  if (dt == CLIP_DT_F32) {
    CU_TRY(e, cudaMemcpy(dst, src, count * 4, cudaMemcpyHostToDevice));
    return CLIP_OK;
  }
  CU_TRY(e, cudaMemcpy(tmp, src, count * 4, cudaMemcpyHostToDevice));
  CU_TRY(e, clip_convert_launch(dst, dt, tmp, count, 0));
  /* the legacy default stream orders this conversion before the next cudaMemcpy into tmp */
  return CLIP_OK;
}

/* One block of either tower (see layout_layer). */
static clip_status upload_layer(clip_engine *e, dev_layer *L, const clip_layer_weights *hl,
                                size_t W, size_t M, clip_dtype D, float *tmp) {
  const clip_dtype F = CLIP_DT_F32;
  clip_status s = CLIP_OK;
#define UP(dst, dt, src, count)                                                               \
  if (s == CLIP_OK) s = upload(e, (dst), (dt), (src), (count), tmp)
  UP(L->ln1_w, F, hl->ln1_w, W);
  UP(L->ln1_b, F, hl->ln1_b, W);
  UP(L->ln2_w, F, hl->ln2_w, W);
  UP(L->ln2_b, F, hl->ln2_b, W);
  UP(L->qkv_w, D, hl->qkv_w, 3 * W * W);
  UP(L->qkv_b, D, hl->qkv_b, 3 * W);
  UP(L->out_w, D, hl->out_w, W * W);
  UP(L->out_b, D, hl->out_b, W);
  UP(L->fc1_w, D, hl->fc1_w, M * W);
  UP(L->fc1_b, D, hl->fc1_b, M);
  UP(L->fc2_w, D, hl->fc2_w, W * M);
  UP(L->fc2_b, D, hl->fc2_b, W);
#undef UP
  return s;
}

clip_status clip_upload_text_weights(clip_engine *e, cuda_state *st, text_state *ts) {
  const clip_text_weights *w = &e->w.text;
  const clip_text_config *c = &w->cfg;
  const size_t W = c->width, M = c->mlp_width, E = c->embed_dim;
  float *tmp = NULL;
  const size_t biggest = 3 * W * W > M * W ? 3 * W * W : M * W;
  if (st->dt != CLIP_DT_F32) CU_TRY(e, cudaMalloc((void **)&tmp, biggest * 4));
  const clip_dtype F = CLIP_DT_F32;
  clip_status s = upload(e, ts->tok, F, w->token_emb, (size_t)c->vocab_size * W, tmp);
  if (s == CLIP_OK) s = upload(e, ts->pos, F, w->pos_emb, (size_t)c->context_length * W, tmp);
  if (s == CLIP_OK) s = upload(e, ts->lnf_w, F, w->ln_final_w, W, tmp);
  if (s == CLIP_OK) s = upload(e, ts->lnf_b, F, w->ln_final_b, W, tmp);
  if (s == CLIP_OK) s = upload(e, ts->proj, F, w->proj, E * W, tmp);
  for (int l = 0; l < c->layers && s == CLIP_OK; l++)
    s = upload_layer(e, &ts->layer[l], &w->layer[l], W, M, st->dt, tmp);
  if (s == CLIP_OK) {
    const cudaError_t err = cudaDeviceSynchronize();
    if (err != cudaSuccess) s = clip_cuda_fail(e, err, "text weights upload", __FILE__, __LINE__);
  }
  if (tmp) cudaFree(tmp);
  return s;
}

clip_status clip_upload_weights(clip_engine *e, cuda_state *st) {
  const clip_weights *w = &e->w;
  const clip_config *c = &w->cfg;
  const size_t W = c->width, M = c->mlp_width, E = c->embed_dim, T = c->tokens;
  const size_t K = 3 * (size_t)c->patch_size * c->patch_size;
  size_t biggest = W * K;
  if (3 * W * W > biggest) biggest = 3 * W * W;
  if (M * W > biggest) biggest = M * W;
  float *tmp = NULL;
  if (st->dt != CLIP_DT_F32) CU_TRY(e, cudaMalloc((void **)&tmp, biggest * 4));
  clip_status s = CLIP_OK;
#define UP(dst, dt, src, count)                                                               \
  if (s == CLIP_OK) s = upload(e, (dst), (dt), (src), (count), tmp)
  const clip_dtype F = CLIP_DT_F32, D = st->dt;
  UP(st->patch_w, D, w->patch_w, W * K);
  UP(st->cls, F, w->class_emb, W);
  UP(st->pos, F, w->pos_emb, T * W);
  UP(st->ln_pre_w, F, w->ln_pre_w, W);
  UP(st->ln_pre_b, F, w->ln_pre_b, W);
  UP(st->ln_post_w, F, w->ln_post_w, W);
  UP(st->ln_post_b, F, w->ln_post_b, W);
  UP(st->proj, F, w->proj, E * W);
#undef UP
  for (int l = 0; l < c->layers && s == CLIP_OK; l++)
    s = upload_layer(e, &st->layer[l], &w->layer[l], W, M, D, tmp);
  /* The normalization table, computed exactly as engine/src/preprocess.c computes it. */
  float lut[3 * 256];
  for (int ch = 0; ch < 3; ch++)
    for (int v = 0; v < 256; v++) lut[ch * 256 + v] = ((float)v / 255.0f - clip_mean[ch]) / clip_std[ch];
  if (s == CLIP_OK) {
    cudaError_t err = cudaMemcpy(st->lut, lut, sizeof lut, cudaMemcpyHostToDevice);
    if (err == cudaSuccess) err = cudaDeviceSynchronize();
    if (err != cudaSuccess) s = clip_cuda_fail(e, err, "weights upload", __FILE__, __LINE__);
  }
  if (tmp) cudaFree(tmp);
  return s;
}
