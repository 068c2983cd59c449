/* backend.cu: the CUDA backend of libclipengine, as a table of contents: the ViT forward
   op by op (the kernels are cuda/<op>.cu, the GEMMs cuBLASLt through gemm.cu), the two
   embed entry points, and create/destroy. The rest lives beside it, one concern a file:

     device.cu       which device can run the backend (driver, ordinal, compute capability)
     memory.cu       device arenas for the weights and the activations, sized at create from
                     max_batch; the weights upload in the compute precision
     staging.cu      pinned double-buffered staging, host -> device uploads of pixels, and
                     device preprocessing of raw RGB8 images (plans and packing on the host)
     thread_pool.cu  the host worker threads for that packing, started with the engine
     graphs.cu       CUDA graphs of the forward, one per batch size
     debug.cu        CLIP_CUDA_PROFILE timing and the clipengine_cuda.h entry points
     decode.cu       JPEG bytes in: nvJPEG decode into a device arena (hardware engines
                     where present), the device resize from there, CPU fallbacks
     text_tower.cu   the text tower (clip_engine_embed_tokens): the same ops, causal attention

   Streams: uploads run on `copy`, kernels on `compute`. Calls are synchronous (the API
   returns embeddings), so there is no overlap between calls. An engine is used by one
   thread at a time (the engine contract); nothing here is shared between engines except the
   CUDA context of the device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <new>

#include "attention.cuh"
#include "backend.cuh"
#include "decode.cuh"
#include "debug.cuh"
#include "gelu.cuh"
#include "graphs.cuh"
#include "layernorm.cuh"
#include "memory.cuh"
#include "patch_embed.cuh"
#include "staging.cuh"
#include "text_tower.cuh"

clip_status clip_cuda_fail(clip_engine *e, cudaError_t err, const char *what, const char *file,
                           int line) {
  const clip_status s = err == cudaErrorMemoryAllocation ? CLIP_ERR_OUT_OF_MEMORY : CLIP_ERR_BACKEND;
  const char *base = strrchr(file, '/');
  cudaGetLastError(); /* clear a non-sticky error so the next call starts clean */
  return clip_set_error(e, s, "%s:%d: %s: %s (%s)", base ? base + 1 : file, line, what,
                        cudaGetErrorString(err), cudaGetErrorName(err));
}

/* ---- the forward ---- */

/* The forward for n images on st->input. stage == CLIP_STAGE_ALL: the whole forward (the only form
   that is captured in graphs). stage >= 0 (clip_cuda_debug_forward_stage): stop early, with
     0            st->x = the token sequence (patch embedding + class token + positions)
     1            st->x = after ln_pre
     2 + l        st->x = the residual stream after block l (all rows, the last block too)
     layers + 2   st->cls_ln = ln_post of the class tokens
     layers + 3   st->emb = the embeddings
   The staged run computes the same floats as the whole forward: after the last block it
   stores x + delta for every row first and then normalizes the class rows in a second kernel,
   which reads back exactly the sums the fused kernel would have used. */
clip_status clip_cuda_forward_ops(clip_engine *e, cuda_state *st, int n, int stage) {
  const clip_config *c = &e->w.cfg;
  const int S = c->image_size, P = c->patch_size, GG = c->grid * c->grid, T = c->tokens;
  const int W = c->width, M = c->mlp_width, E = c->embed_dim, K = 3 * P * P;
  const int rows = n * T;
  const clip_dtype dt = st->dt;
  const float eps = c->ln_eps;
  cudaStream_t cs = st->compute;
  clip_gemm_ctx *g = &st->gemm;

  clip_prof_mark(st, P_PATCH);
  CU_TRY(e, clip_im2col_launch(st->input, st->col, dt, n, S, P, cs));
  ST_TRY(clip_gemm(e, g, dt, st->col, K, st->patch_w, NULL, st->pout, W, n * GG, W, K, cs));
  CU_TRY(e, clip_assemble_tokens_launch(st->pout, dt, st->cls, st->pos, st->x, n, T, W, cs));
  if (stage == 0) return CLIP_OK;
  clip_prof_mark(st, P_LAYERNORM);
  /* CLIP's residual stream starts as ln_pre's output (x = ln_pre(x)), in place. */
  CU_TRY(e, clip_layernorm_launch(st->x, W, NULL, dt, 0, st->ln_pre_w, st->ln_pre_b, st->x,
                                  CLIP_DT_F32, W, rows, W, eps, cs));
  if (stage == 1) return CLIP_OK;
  CU_TRY(e, clip_layernorm_launch(st->x, W, NULL, dt, 0, st->layer[0].ln1_w, st->layer[0].ln1_b,
                                  st->ln, dt, W, rows, W, eps, cs));
  for (int l = 0; l < c->layers; l++) {
    const dev_layer *L = &st->layer[l];
    /* x = x + attn(ln1(x)): st->ln holds ln1(x) here */
    clip_prof_mark(st, P_QKV);
    ST_TRY(clip_gemm(e, g, dt, st->ln, W, L->qkv_w, L->qkv_b, st->qkv, 3 * W, rows, 3 * W, W, cs));
    clip_prof_mark(st, P_ATTENTION);
    CU_TRY(e, clip_attention_launch(st->qkv, st->att, dt, n, T, W, c->heads, 0, cs));
    clip_prof_mark(st, P_OUT);
    ST_TRY(clip_gemm(e, g, dt, st->att, W, L->out_w, L->out_b, st->tmp, W, rows, W, W, cs));
    clip_prof_mark(st, P_LAYERNORM);
    /* x += attn; ln = ln2(x) */
    CU_TRY(e, clip_layernorm_launch(st->x, W, st->tmp, dt, W, L->ln2_w, L->ln2_b, st->ln, dt, W,
                                    rows, W, eps, cs));
    /* x = x + mlp(ln2(x)) */
    clip_prof_mark(st, P_FC1);
    ST_TRY(clip_gemm(e, g, dt, st->ln, W, L->fc1_w, L->fc1_b, st->h, M, rows, M, W, cs));
    clip_prof_mark(st, P_GELU);
    CU_TRY(e, clip_gelu_launch(st->h, dt, (size_t)rows * M, c->quick_gelu, cs));
    clip_prof_mark(st, P_FC2);
    ST_TRY(clip_gemm(e, g, dt, st->h, M, L->fc2_w, L->fc2_b, st->tmp, W, rows, W, M, cs));
    clip_prof_mark(st, P_LAYERNORM);
    if (l + 1 < c->layers) {
      /* x += mlp; ln = ln1 of the next block */
      CU_TRY(e, clip_layernorm_launch(st->x, W, st->tmp, dt, W, st->layer[l + 1].ln1_w,
                                      st->layer[l + 1].ln1_b, st->ln, dt, W, rows, W, eps, cs));
    } else if (stage == CLIP_STAGE_ALL) {
      /* Only the class tokens matter from here: residual + ln_post on rows b*T. */
      CU_TRY(e, clip_layernorm_launch(st->x, (size_t)T * W, st->tmp, dt, (size_t)T * W,
                                      st->ln_post_w, st->ln_post_b, st->cls_ln, CLIP_DT_F32, W, n,
                                      W, eps, cs));
    } else {
      /* Staged: the residual on every row (the normalized output goes to the unused st->ln),
         then ln_post of the class rows from the stored sums. */
      CU_TRY(e, clip_layernorm_launch(st->x, W, st->tmp, dt, W, st->ln_post_w, st->ln_post_b,
                                      st->ln, dt, W, rows, W, eps, cs));
      if (stage == 2 + l) return CLIP_OK;
      CU_TRY(e, clip_layernorm_launch(st->x, (size_t)T * W, NULL, dt, 0, st->ln_post_w,
                                      st->ln_post_b, st->cls_ln, CLIP_DT_F32, W, n, W, eps, cs));
    }
    if (stage == 2 + l) return CLIP_OK;
  }
  if (stage == c->layers + 2) return CLIP_OK;
  clip_prof_mark(st, P_HEAD);
  ST_TRY(clip_gemm(e, g, CLIP_DT_F32, st->cls_ln, W, st->proj, NULL, st->emb, E, n, E, W, cs));
  return CLIP_OK;
}

/* ---- embed, create, destroy ---- */

/* Forward + copy of the embeddings to the caller. */
static clip_status forward_and_fetch(clip_engine *e, cuda_state *st, int n, float *out) {
  const size_t E = e->w.cfg.embed_dim;
  ST_TRY(clip_cuda_forward(e, st, n));
  CU_TRY(e, cudaMemcpyAsync(st->host_out, st->emb, (size_t)n * E * 4, cudaMemcpyDeviceToHost,
                            st->compute));
  clip_prof_mark(st, -1);
  CU_TRY(e, cudaStreamSynchronize(st->compute));
  clip_prof_collect(st);
  memcpy(out, st->host_out, (size_t)n * E * 4);
  return CLIP_OK;
}

static clip_status cuda_embed_pixels(clip_engine *e, const float *pixels, int n, float *out) {
  cuda_state *st = state_of(e);
  CU_TRY(e, cudaSetDevice(st->device));
  st->prof_n = 0;
  ST_TRY(clip_cuda_upload_pixels(e, st, pixels, n));
  return forward_and_fetch(e, st, n, out);
}

static clip_status cuda_embed_images(clip_engine *e, const clip_image *images, int n, float *out) {
  cuda_state *st = state_of(e);
  CU_TRY(e, cudaSetDevice(st->device));
  st->prof_n = 0;
  ST_TRY(clip_cuda_preprocess_images(e, st, images, n, NULL, NULL));
  return forward_and_fetch(e, st, n, out);
}

/* Encoded images: decoded into the input slots (decode.cu), then the same forward. */
static clip_status cuda_embed_encoded(clip_engine *e, const uint8_t *const *data, const size_t *sizes,
                                      int n, float *out, clip_status *per_image) {
  cuda_state *st = state_of(e);
  CU_TRY(e, cudaSetDevice(st->device));
  st->prof_n = 0;
  ST_TRY(clip_jpeg_decode_to_input(e, st, data, sizes, n, per_image));
  int good = 0;
  for (int i = 0; i < n; i++) good += per_image[i] == CLIP_OK;
  if (good == 0) { /* nothing to embed: finish the queued work and leave the zero rows */
    CU_TRY(e, cudaStreamSynchronize(st->compute));
    return CLIP_OK;
  }
  return forward_and_fetch(e, st, n, out);
}

static void cuda_destroy(clip_engine *e) {
  cuda_state *st = state_of(e);
  if (!st) return;
  cudaSetDevice(st->device);
  if (st->compute) cudaStreamSynchronize(st->compute);
  if (st->copy) cudaStreamSynchronize(st->copy);
  clip_jpeg_destroy(st);
  clip_cuda_text_destroy(st);
  clip_graphs_clear(st);
  if (st->gemm_ready) clip_gemm_destroy(&st->gemm);
  for (int i = 0; i < 2; i++) {
    clip_staging_slot_release(&st->slot[i]);
    if (st->slot[i].copied) cudaEventDestroy(st->slot[i].copied);
    if (st->slot[i].consumed) cudaEventDestroy(st->slot[i].consumed);
  }
  if (st->mid) cudaFree(st->mid);
  if (st->host_out) cudaFreeHost(st->host_out);
  if (st->wmem) cudaFree(st->wmem);
  if (st->amem) cudaFree(st->amem);
  for (int i = 0; i < PROFILE_EVENTS; i++)
    if (st->prof_ev[i]) cudaEventDestroy(st->prof_ev[i]);
  if (st->compute) cudaStreamDestroy(st->compute);
  if (st->copy) cudaStreamDestroy(st->copy);
  cudaGetLastError();
  delete st->pool; /* joins the host workers */
  free(st->descs_host);
  free(st->layer);
  free(st);
  e->backend_state = NULL;
}

static const clip_backend_impl cuda_impl = {cuda_embed_pixels, cuda_embed_images, cuda_destroy,
                                            cuda_embed_encoded, clip_cuda_embed_tokens};

cuda_state *clip_cuda_engine_state(clip_engine *e) {
  return e && e->impl == &cuda_impl ? state_of(e) : NULL;
}

static const char *dtype_label(clip_dtype dt) {
  return dt == CLIP_DT_F16 ? "fp16" : dt == CLIP_DT_BF16 ? "bf16" : "fp32";
}

clip_status clip_cuda_attention_fits(clip_engine *e, const char *tower, int tokens, int hd,
                                     int smem_optin) {
  const size_t smem = clip_attention_smem_bytes(tokens, hd);
  if (smem > (size_t)smem_optin)
    return clip_set_error(e, CLIP_ERR_UNSUPPORTED,
                          "cuda: %sattention over %d tokens (head dim %d) needs %zu bytes of "
                          "shared memory; the device allows %d",
                          tower, tokens, hd, smem, smem_optin);
  return CLIP_OK;
}

/* Checks the model shape against what the kernels support. */
static clip_status check_config(clip_engine *e, const clip_config *c, int smem_optin) {
  if (c->width <= 0 || c->heads <= 0 || c->width % c->heads != 0)
    return clip_set_error(e, CLIP_ERR_UNSUPPORTED, "cuda: width %d is not a multiple of heads %d",
                          c->width, c->heads);
  const int hd = c->width / c->heads;
  if (hd % 4 != 0)
    return clip_set_error(e, CLIP_ERR_UNSUPPORTED, "cuda: head dim %d is not a multiple of 4", hd);
  if (c->grid <= 0 || c->tokens != c->grid * c->grid + 1 || c->grid * c->patch_size > c->image_size)
    return clip_set_error(e, CLIP_ERR_UNSUPPORTED, "cuda: inconsistent grid %d / tokens %d / patch %d / image %d",
                          c->grid, c->tokens, c->patch_size, c->image_size);
  return clip_cuda_attention_fits(e, "", c->tokens, hd, smem_optin);
}

static clip_status init_impl(clip_engine *e, cuda_state *st) {
  const clip_config *c = &e->w.cfg;
  const int dev = e->params.device;
  char device_name[256], why[CLIP_ERR_LEN];
  const clip_status qs = clip_cuda_device_query(dev, device_name, sizeof device_name, NULL, why,
                                                sizeof why);
  if (qs != CLIP_OK) return clip_set_error(e, qs, "%s", why);
  st->device = dev;
  CU_TRY(e, cudaSetDevice(dev));
  int smem_optin = 0;
  CU_TRY(e, cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  ST_TRY(check_config(e, c, smem_optin));

  switch (e->precision) {
  case CLIP_PRECISION_FP32: st->dt = CLIP_DT_F32; break;
  case CLIP_PRECISION_BF16: st->dt = CLIP_DT_BF16; break;
  default: st->dt = CLIP_DT_F16; break;
  }
  st->esz = clip_dtype_size(st->dt);
  const int mb = e->max_batch;

  /* Host workers for planning and packing, started once: the engine's threads, capped. */
  const int host = e->threads < HOST_THREADS_MAX ? e->threads : HOST_THREADS_MAX;
  st->pool = new (std::nothrow) clip_thread_pool(host > 1 ? host - 1 : 0);
  st->layer = (dev_layer *)calloc((size_t)c->layers, sizeof(dev_layer));
  st->descs_host = (clip_resize_desc *)malloc(sizeof(clip_resize_desc) * (size_t)(mb < 65535 ? mb : 65535));
  if (!st->pool || !st->layer || !st->descs_host)
    return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY, "cuda: out of host memory");

  /* Size everything first, then check it against the free device memory. */
  clip_arena wa = {NULL, 0}, aa = {NULL, 0};
  clip_layout_weights(st, c, &wa);
  clip_layout_activations(st, c, mb, &aa);
  const size_t staging = 2 * STAGING_SLOT_BYTES + MID_BYTES;
  const size_t convert_tmp = st->dt == CLIP_DT_F32 ? 0 : (size_t)c->mlp_width * c->width * 4 * 3;
  const size_t jpeg = (size_t)clip_jpeg_device_bytes(mb); /* nvJPEG: the arena + its buffers */
  const size_t need = wa.off + aa.off + staging + convert_tmp + jpeg + ((size_t)64 << 20) /* cuBLASLt, context slack */;
  size_t free_b = 0, total_b = 0;
  CU_TRY(e, cudaMemGetInfo(&free_b, &total_b));
  if (need > free_b)
    return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY,
                          "cuda: max_batch %d at %s needs about %zu bytes of device memory "
                          "(weights %zu, activations %zu, staging %zu, jpeg decoding %zu); %zu "
                          "of %zu are free",
                          mb, dtype_label(st->dt), need, wa.off, aa.off, staging, jpeg, free_b,
                          total_b);

  /* cudaMemGetInfo is a snapshot (another process may allocate meanwhile): an allocation can
     still fail, and says so with the numbers. */
  cudaError_t merr = cudaMalloc(&st->wmem, wa.off);
  if (merr == cudaSuccess) st->wbytes = wa.off;
  if (merr == cudaSuccess) merr = cudaMalloc(&st->amem, aa.off);
  if (merr == cudaSuccess) st->abytes = aa.off;
  if (merr == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY,
                          "cuda: max_batch %d at %s: cudaMalloc of the %s (%zu bytes) failed; %zu of "
                          "%zu bytes were free before create, %zu needed in all",
                          mb, dtype_label(st->dt), st->wmem ? "activations" : "weights",
                          st->wmem ? aa.off : wa.off, free_b, total_b, need);
  }
  if (merr != cudaSuccess) return clip_cuda_fail(e, merr, "cudaMalloc (weights/activations)", __FILE__, __LINE__);
  wa.base = (char *)st->wmem;
  wa.off = 0;
  aa.base = (char *)st->amem;
  aa.off = 0;
  clip_layout_weights(st, c, &wa);
  clip_layout_activations(st, c, mb, &aa);
  /* Zeroed once, so no buffer ever holds garbage (NaN) bit patterns. */
  CU_TRY(e, cudaMemset(st->amem, 0, st->abytes));

  CU_TRY(e, cudaStreamCreateWithFlags(&st->compute, cudaStreamNonBlocking));
  CU_TRY(e, cudaStreamCreateWithFlags(&st->copy, cudaStreamNonBlocking));
  for (int i = 0; i < 2; i++) {
    CU_TRY(e, cudaEventCreateWithFlags(&st->slot[i].copied, cudaEventDisableTiming));
    CU_TRY(e, cudaEventCreateWithFlags(&st->slot[i].consumed, cudaEventDisableTiming));
    ST_TRY(clip_staging_slot_alloc(e, &st->slot[i], STAGING_SLOT_BYTES));
  }
  CU_TRY(e, cudaMalloc((void **)&st->mid, MID_BYTES));
  st->mid_cap = MID_BYTES;
  CU_TRY(e, cudaHostAlloc((void **)&st->host_out, (size_t)mb * c->embed_dim * 4, cudaHostAllocDefault));

  const char *prof = getenv("CLIP_CUDA_PROFILE");
  st->profile = prof && prof[0] && strcmp(prof, "0") != 0;
  const char *gr = getenv("CLIP_CUDA_GRAPHS");
  st->graphs_on = !(gr && strcmp(gr, "0") == 0) && !st->profile;
  if (!st->graphs_on)
    snprintf(st->graph_note, sizeof st->graph_note, "%s",
             st->profile ? "off: CLIP_CUDA_PROFILE is set" : "off: CLIP_CUDA_GRAPHS=0");
  if (st->profile)
    for (int i = 0; i < PROFILE_EVENTS; i++) CU_TRY(e, cudaEventCreate(&st->prof_ev[i]));

  ST_TRY(clip_upload_weights(e, st));

  ST_TRY(clip_gemm_init(e, &st->gemm, st->workspace, WORKSPACE_BYTES));
  st->gemm_ready = 1;
  /* Plans for the max_batch shapes now, so the first full batch does no host-side setup. */
  {
    const int W = c->width, M = c->mlp_width, E = c->embed_dim, T = c->tokens;
    const int K = 3 * c->patch_size * c->patch_size, R = mb * T, GG = c->grid * c->grid;
    clip_gemm_plan *p = NULL;
    const dev_layer *L = &st->layer[0];
    ST_TRY(clip_gemm_plan_get(e, &st->gemm, st->dt, mb * GG, W, K, K, W, NULL, &p));
    ST_TRY(clip_gemm_plan_get(e, &st->gemm, st->dt, R, 3 * W, W, W, 3 * W, L->qkv_b, &p));
    ST_TRY(clip_gemm_plan_get(e, &st->gemm, st->dt, R, W, W, W, W, L->out_b, &p));
    ST_TRY(clip_gemm_plan_get(e, &st->gemm, st->dt, R, M, W, W, M, L->fc1_b, &p));
    ST_TRY(clip_gemm_plan_get(e, &st->gemm, st->dt, R, W, M, M, W, L->fc2_b, &p));
    ST_TRY(clip_gemm_plan_get(e, &st->gemm, CLIP_DT_F32, mb, E, W, W, E, NULL, &p));
  }
  CU_TRY(e, clip_attention_prepare(st->dt, clip_attention_smem_bytes(c->tokens, c->width / c->heads)));
  ST_TRY(clip_jpeg_init(e, st));

  /* The device name is at most 255 chars; keep it to 100 so the precision always fits. */
  snprintf(e->backend_name, sizeof e->backend_name, "cuda %.100s %s", device_name, dtype_label(st->dt));
  return CLIP_OK;
}

extern "C" clip_status clip_cuda_backend_init(clip_engine *e) {
  cuda_state *st = (cuda_state *)calloc(1, sizeof(cuda_state));
  if (!st) return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY, "cuda: out of host memory");
  e->backend_state = st;
  e->impl = &cuda_impl; /* so that engine.c's failure path calls cuda_destroy */
  clip_status s = init_impl(e, st);
  if (s != CLIP_OK) {
    /* engine.c calls impl->destroy on failure; make sure it is safe either way */
    return s;
  }
  return CLIP_OK;
}
