/* text_tower.cu: the text tower on the CUDA backend (CLIP's encode_text): token + positional
   embedding, the pre-LN blocks with causal attention, the end-token rows through ln_final and
   the projection. The same ops as the vision forward (cuBLASLt GEMMs in the engine's
   precision, fused residual + LayerNorm, attention, GELU), direct launches (no graphs), the
   weights uploaded and the activations allocated at the first call. */
#include <stdlib.h>
#include <string.h>

#include "attention.cuh"
#include "gelu.cuh"
#include "layernorm.cuh"
#include "memory.cuh"
#include "text_embed.cuh"
#include "text_tower.cuh"

void clip_cuda_text_destroy(cuda_state *st) {
  text_state *ts = st->text;
  if (!ts) return;
  if (ts->wmem) cudaFree(ts->wmem);
  if (ts->amem) cudaFree(ts->amem);
  cudaGetLastError();
  free(ts->layer);
  free(ts);
  st->text = NULL;
}

/* Uploads the weights and allocates the activations, checking free device memory first; on
   failure st->text may be partly made (text_init frees it). */
static clip_status text_init_impl(clip_engine *e, cuda_state *st) {
  const clip_text_config *c = &e->w.text.cfg;
  const int hd = c->heads > 0 ? c->width / c->heads : 0;
  if (c->heads <= 0 || c->width % c->heads != 0 || hd % 4 != 0)
    return clip_set_error(e, CLIP_ERR_UNSUPPORTED,
                          "cuda: text head dim %d (width %d, %d heads) is not a multiple of 4", hd,
                          c->width, c->heads);
  int smem_optin = 0;
  CU_TRY(e, cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, st->device));
  ST_TRY(clip_cuda_attention_fits(e, "text ", c->context_length, hd, smem_optin));
  const size_t smem = clip_attention_smem_bytes(c->context_length, hd);
  text_state *ts = (text_state *)calloc(1, sizeof *ts);
  if (!ts) return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY, "cuda: out of host memory");
  st->text = ts;
  ts->layer = (dev_layer *)calloc((size_t)c->layers, sizeof(dev_layer));
  if (!ts->layer) return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY, "cuda: out of host memory");
  clip_arena wa = {NULL, 0}, aa = {NULL, 0};
  clip_layout_text_weights(st, ts, c, &wa);
  clip_layout_text_activations(st, ts, c, e->max_batch, &aa);
  const size_t convert_tmp = st->dt == CLIP_DT_F32 ? 0 : (size_t)c->mlp_width * c->width * 4 * 3;
  size_t free_b = 0, total_b = 0;
  CU_TRY(e, cudaMemGetInfo(&free_b, &total_b));
  if (wa.off + aa.off + convert_tmp > free_b) {
    const size_t need = wa.off + aa.off + convert_tmp;
    return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY,
                          "cuda: the text tower at max_batch %d needs about %zu bytes of device "
                          "memory (weights %zu, activations %zu); %zu of %zu are free",
                          e->max_batch, need, wa.off, aa.off, free_b, total_b);
  }
  cudaError_t merr = cudaMalloc(&ts->wmem, wa.off);
  if (merr == cudaSuccess) ts->wbytes = wa.off;
  if (merr == cudaSuccess) merr = cudaMalloc(&ts->amem, aa.off);
  if (merr == cudaSuccess) ts->abytes = aa.off;
  if (merr != cudaSuccess)
    return clip_cuda_fail(e, merr, "cudaMalloc (text weights/activations)", __FILE__, __LINE__);
  wa.base = (char *)ts->wmem;
  wa.off = 0;
  aa.base = (char *)ts->amem;
  aa.off = 0;
  clip_layout_text_weights(st, ts, c, &wa);
  clip_layout_text_activations(st, ts, c, e->max_batch, &aa);
  CU_TRY(e, cudaMemset(ts->amem, 0, ts->abytes)); /* no garbage (NaN) bit patterns */
  ST_TRY(clip_upload_text_weights(e, st, ts));
  /* The attention kernel's shared-memory limit is per kernel: never below the vision
     tower's, which init_impl raised it to. */
  const clip_config *v = &e->w.cfg;
  const size_t vsmem = clip_attention_smem_bytes(v->tokens, v->width / v->heads);
  CU_TRY(e, clip_attention_prepare(st->dt, smem > vsmem ? smem : vsmem));
  return CLIP_OK;
}

static clip_status text_init(clip_engine *e, cuda_state *st) {
  const clip_status s = text_init_impl(e, st);
  if (s != CLIP_OK) clip_cuda_text_destroy(st); /* nothing half made stays: the next call retries */
  return s;
}

/* The forward for n sequences whose ids and end positions are on the device, on their first
   T positions (T > every end position: under the causal mask nothing after an end token
   reaches it, so short captions cost a fraction of the context). */
static clip_status text_forward(clip_engine *e, cuda_state *st, text_state *ts, int n, int T) {
  const clip_text_config *c = &e->w.text.cfg;
  const int W = c->width, M = c->mlp_width, E = c->embed_dim, C = c->context_length;
  const int rows = n * T;
  const clip_dtype dt = st->dt;
  const float eps = c->ln_eps;
  cudaStream_t cs = st->compute;
  clip_gemm_ctx *g = &st->gemm;

  CU_TRY(e, clip_text_embed_launch(ts->ids, ts->tok, ts->pos, ts->x, n, C, T, W, cs));
  CU_TRY(e, clip_layernorm_launch(ts->x, W, NULL, dt, 0, ts->layer[0].ln1_w, ts->layer[0].ln1_b,
                                  ts->ln, dt, W, rows, W, eps, cs));
  for (int l = 0; l < c->layers; l++) {
    const dev_layer *L = &ts->layer[l];
    /* x = x + attn(ln1(x)) under the causal mask: ts->ln holds ln1(x) here */
    ST_TRY(clip_gemm(e, g, dt, ts->ln, W, L->qkv_w, L->qkv_b, ts->qkv, 3 * W, rows, 3 * W, W, cs));
    CU_TRY(e, clip_attention_launch(ts->qkv, ts->att, dt, n, T, W, c->heads, 1, cs));
    ST_TRY(clip_gemm(e, g, dt, ts->att, W, L->out_w, L->out_b, ts->tmp, W, rows, W, W, cs));
    CU_TRY(e, clip_layernorm_launch(ts->x, W, ts->tmp, dt, W, L->ln2_w, L->ln2_b, ts->ln, dt, W,
                                    rows, W, eps, cs));
    /* x = x + mlp(ln2(x)) */
    ST_TRY(clip_gemm(e, g, dt, ts->ln, W, L->fc1_w, L->fc1_b, ts->h, M, rows, M, W, cs));
    CU_TRY(e, clip_gelu_launch(ts->h, dt, (size_t)rows * M, c->quick_gelu, cs));
    ST_TRY(clip_gemm(e, g, dt, ts->h, M, L->fc2_w, L->fc2_b, ts->tmp, W, rows, W, M, cs));
    if (l + 1 < c->layers)
      CU_TRY(e, clip_layernorm_launch(ts->x, W, ts->tmp, dt, W, ts->layer[l + 1].ln1_w,
                                      ts->layer[l + 1].ln1_b, ts->ln, dt, W, rows, W, eps, cs));
  }
  /* Only the end tokens matter from here: their last residual, ln_final, the projection. */
  CU_TRY(e, clip_text_gather_launch(ts->x, ts->tmp, dt, ts->eot, ts->sel, n, T, W, cs));
  CU_TRY(e, clip_layernorm_launch(ts->sel, W, NULL, dt, 0, ts->lnf_w, ts->lnf_b, ts->sel,
                                  CLIP_DT_F32, W, n, W, eps, cs));
  ST_TRY(clip_gemm(e, g, CLIP_DT_F32, ts->sel, W, ts->proj, NULL, ts->emb, E, n, E, W, cs));
  return CLIP_OK;
}

clip_status clip_cuda_embed_tokens(clip_engine *e, const int32_t *tokens, const int *eot, int n,
                                   float *out) {
  cuda_state *st = state_of(e);
  CU_TRY(e, cudaSetDevice(st->device));
  if (!st->text) ST_TRY(text_init(e, st));
  text_state *ts = st->text;
  const clip_text_config *c = &e->w.text.cfg;
  const size_t E = c->embed_dim;
  static_assert(sizeof(int) == sizeof(int32_t), "eot is copied as int32");
  /* Pageable host memory: the copies return once the data is staged. */
  CU_TRY(e, cudaMemcpyAsync(ts->eot, eot, (size_t)n * sizeof(int32_t), cudaMemcpyHostToDevice,
                            st->compute));
  CU_TRY(e, cudaMemcpyAsync(ts->ids, tokens, (size_t)n * c->context_length * sizeof(int32_t),
                            cudaMemcpyHostToDevice, st->compute));
  int T = 1;
  for (int b = 0; b < n; b++) T = eot[b] + 1 > T ? eot[b] + 1 : T;
  ST_TRY(text_forward(e, st, ts, n, T));
  CU_TRY(e, cudaMemcpyAsync(st->host_out, ts->emb, (size_t)n * E * 4, cudaMemcpyDeviceToHost,
                            st->compute));
  CU_TRY(e, cudaStreamSynchronize(st->compute));
  memcpy(out, st->host_out, (size_t)n * E * 4);
  return CLIP_OK;
}
