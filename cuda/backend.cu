/* backend.cu: the CUDA backend of libclipengine: device selection, weights upload in the
   compute precision, buffers sized from max_batch at create, the ViT forward (cuBLASLt GEMMs
   + the custom kernels of cuda/), device preprocessing of raw RGB8 images through pinned
   double-buffered staging, and the debug entry points of cuda_debug.h.

   Streams: uploads run on `copy`, kernels on `compute`; two staging slots with events let
   the host pack and upload chunk k+1 while the device resizes chunk k. Calls are
   synchronous (the API returns embeddings), so there is no overlap between calls.

   CUDA graphs: every buffer is fixed at create, so the forward for a batch size n is the
   same launch sequence every time. The first forward for n runs eagerly (it also makes the
   GEMM plans and loads the kernels' modules), then the same sequence is captured on the
   compute stream and instantiated; later forwards for n replay it. Failures to capture or
   instantiate only turn graphs off for this engine (the reason is kept for
   clip_cuda_debug_graphs). CLIP_CUDA_GRAPHS=0 at create disables them; CLIP_CUDA_PROFILE=1
   does too (its per-op events cannot live inside a graph).

   An engine is used by one thread at a time (the engine contract); nothing here is shared
   between engines except the CUDA context of the device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <new>
#include <thread>
#include <vector>

#include "attention.cuh"
#include "common.cuh"
#include "convert.cuh"
#include "cuda_debug.h"
#include "gelu.cuh"
#include "gemm.cuh"
#include "internal.h"
#include "layernorm.cuh"
#include "patch_embed.cuh"
#include "resize.cuh"
#include "resize_plan.cuh"


#define ALIGN 256
#define STAGING_SLOT_BYTES ((size_t)64 << 20)
#define MID_BYTES ((size_t)64 << 20)
#define WORKSPACE_BYTES ((size_t)32 << 20)
#define PROFILE_EVENTS 1024
#define GRAPH_CACHE 8 /* batch sizes with a cached graph; the least recently used goes */

static size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

static clip_status cuda_fail(clip_engine *e, cudaError_t err, const char *what, int line) {
  const clip_status s = err == cudaErrorMemoryAllocation ? CLIP_ERR_OUT_OF_MEMORY : CLIP_ERR_BACKEND;
  cudaGetLastError(); /* clear a non-sticky error so the next call starts clean */
  return clip_set_error(e, s, "backend.cu:%d: %s: %s (%s)", line, what, cudaGetErrorString(err),
                        cudaGetErrorName(err));
}

#define CU_TRY(e, call)                                                                       \
  do {                                                                                        \
    cudaError_t err_ = (call);                                                                \
    if (err_ != cudaSuccess) return cuda_fail((e), err_, #call, __LINE__);                    \
  } while (0)

#define ST_TRY(call)                                                                          \
  do {                                                                                        \
    clip_status s_ = (call);                                                                  \
    if (s_ != CLIP_OK) return s_;                                                             \
  } while (0)

/* Op classes for CLIP_CUDA_PROFILE. */
enum { P_UPLOAD, P_PREPROCESS, P_PATCH, P_LAYERNORM, P_QKV, P_ATTENTION, P_OUT, P_FC1, P_GELU, P_FC2,
       P_HEAD, P_COUNT };
static const char *const prof_names[P_COUNT] = {"upload+convert", "preprocess", "patch_embed",
                                                "layernorm", "gemm_qkv", "attention", "gemm_out",
                                                "gemm_fc1", "gelu", "gemm_fc2", "head"};

typedef struct dev_layer {
  float *ln1_w, *ln1_b, *ln2_w, *ln2_b; /* (W) fp32 */
  void *qkv_w, *qkv_b;                  /* (3W, W), (3W) dtype */
  void *out_w, *out_b;                  /* (W, W), (W) */
  void *fc1_w, *fc1_b;                  /* (M, W), (M) */
  void *fc2_w, *fc2_b;                  /* (W, M), (W) */
} dev_layer;

typedef struct staging_slot {
  uint8_t *host; /* pinned */
  uint8_t *dev;
  size_t cap;
  cudaEvent_t copied;   /* the upload from host finished: host may be rewritten */
  cudaEvent_t consumed; /* the kernels reading dev finished: dev may be overwritten */
} staging_slot;

typedef struct graph_entry {
  int n; /* 0: unused */
  unsigned long stamp;
  cudaGraphExec_t exec;
} graph_entry;

typedef struct cuda_state {
  int device;
  clip_dtype dt;
  size_t esz;
  cudaStream_t compute, copy;
  clip_gemm_ctx gemm;
  int gemm_ready;

  void *wmem; /* weights arena */
  size_t wbytes;
  void *patch_w;                       /* (W, 3PP) dtype */
  float *cls, *pos;                    /* (W), (T, W) */
  float *ln_pre_w, *ln_pre_b, *ln_post_w, *ln_post_b;
  float *proj;                         /* (E, W) fp32 */
  dev_layer *layer;

  void *amem; /* activations arena */
  size_t abytes;
  void *input;    /* (mb, 3, S, S) dtype */
  void *col;      /* (mb*G*G, 3PP) */
  void *pout;     /* (mb*G*G, W) */
  float *x;       /* (mb*T, W) residual stream, fp32 */
  void *ln;       /* (mb*T, W) */
  void *qkv;      /* (mb*T, 3W) */
  void *att;      /* (mb*T, W) */
  void *tmp;      /* (mb*T, W) */
  void *h;        /* (mb*T, M) */
  float *cls_ln;  /* (mb, W) */
  float *emb;     /* (mb, E) */
  float *lut;     /* (3, 256) normalization table */
  void *workspace;
  clip_resize_desc *descs_host; /* scratch for packing (host) */

  staging_slot slot[2];
  int next_slot;
  uint8_t *mid;
  size_t mid_cap;
  float *host_out; /* pinned (mb, E) */

  int profile;
  cudaEvent_t prof_ev[PROFILE_EVENTS];
  int prof_cat[PROFILE_EVENTS];
  int prof_n;
  double prof_ms[P_COUNT];
  long prof_count[P_COUNT];

  int graphs_on;      /* CLIP_CUDA_GRAPHS (default on), off with profiling */
  int graphs_failed;  /* a capture/instantiate/launch failed: direct launches from then on */
  char graph_note[256]; /* why graphs are off, for clip_cuda_debug_graphs */
  graph_entry graph[GRAPH_CACHE];
  unsigned long graph_clock;
  long graph_launches, graph_captures;
} cuda_state;

static cuda_state *state_of(clip_engine *e) { return (cuda_state *)e->backend_state; }

/* ---- profiling (CLIP_CUDA_PROFILE=1) ---- */

static void prof_mark(cuda_state *st, int cat) {
  if (!st->profile || st->prof_n >= PROFILE_EVENTS) return;
  cudaEventRecord(st->prof_ev[st->prof_n], st->compute);
  st->prof_cat[st->prof_n++] = cat;
}

/* After the compute stream is synchronized: interval i (mark i .. mark i+1) is charged to
   mark i's class; the last mark (cat -1) only closes the previous interval. */
static void prof_collect(cuda_state *st) {
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

/* ---- device count and memory plan ---- */

extern "C" clip_status clip_cuda_device_query(int device, char *name, size_t name_len,
                                              int64_t *memory_bytes, char *err, size_t err_len) {
  if (name && name_len) name[0] = 0;
  if (memory_bytes) *memory_bytes = 0;
  int count = 0;
  const cudaError_t cerr = cudaGetDeviceCount(&count);
  if (cerr != cudaSuccess) {
    /* No driver, no device, or a driver older than this runtime needs: say which. */
    cudaGetLastError();
    int drv = 0;
    const int rt = CUDART_VERSION; /* what this library was built against */
    cudaDriverGetVersion(&drv);
    cudaGetLastError();
    clip_format_error(err, err_len,
                      "cuda: no usable CUDA device: %s (%s); the driver supports CUDA %d.%d, "
                      "this library was built with CUDA %d.%d",
                      cudaGetErrorString(cerr), cudaGetErrorName(cerr), drv / 1000,
                      drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
    return CLIP_ERR_UNSUPPORTED;
  }
  if (device >= count) {
    clip_format_error(err, err_len, "cuda: no CUDA device %d (%d found)", device, count);
    return CLIP_ERR_UNSUPPORTED;
  }
  cudaDeviceProp prop;
  const cudaError_t perr = cudaGetDeviceProperties(&prop, device);
  if (perr != cudaSuccess) {
    cudaGetLastError();
    clip_format_error(err, err_len, "cuda: cudaGetDeviceProperties(%d): %s (%s)", device,
                      cudaGetErrorString(perr), cudaGetErrorName(perr));
    return CLIP_ERR_BACKEND;
  }
  if (prop.major < 8) {
    clip_format_error(err, err_len,
                      "cuda: device %d has compute capability %d.%d; this backend needs 8.0+",
                      device, prop.major, prop.minor);
    return CLIP_ERR_UNSUPPORTED;
  }
  if (name && name_len) snprintf(name, name_len, "%s", prop.name);
  if (memory_bytes) *memory_bytes = (int64_t)prop.totalGlobalMem;
  return CLIP_OK;
}

/* Carves 256-byte-aligned pieces out of one allocation; with base == NULL it only counts. */
typedef struct arena {
  char *base;
  size_t off;
} arena;

static void *take(arena *a, size_t bytes) {
  void *p = a->base ? a->base + a->off : NULL;
  a->off += align_up(bytes ? bytes : 1, ALIGN);
  return p;
}

static void layout_weights(cuda_state *st, const clip_config *c, arena *a) {
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
  for (int l = 0; l < c->layers; l++) {
    dev_layer *L = &st->layer[l];
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
}

static void layout_activations(cuda_state *st, const clip_config *c, int mb, arena *a) {
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

/* ---- weights upload ---- */

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

static clip_status upload_weights(clip_engine *e, cuda_state *st) {
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
  for (int l = 0; l < c->layers; l++) {
    const clip_layer_weights *hl = &w->layer[l];
    dev_layer *L = &st->layer[l];
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
  }
#undef UP
  /* The normalization table, computed exactly as engine/src/preprocess.c computes it. */
  float lut[3 * 256];
  for (int ch = 0; ch < 3; ch++)
    for (int v = 0; v < 256; v++) lut[ch * 256 + v] = ((float)v / 255.0f - clip_mean[ch]) / clip_std[ch];
  if (s == CLIP_OK) {
    cudaError_t err = cudaMemcpy(st->lut, lut, sizeof lut, cudaMemcpyHostToDevice);
    if (err == cudaSuccess) err = cudaDeviceSynchronize();
    if (err != cudaSuccess) s = cuda_fail(e, err, "weights upload", __LINE__);
  }
  if (tmp) cudaFree(tmp);
  return s;
}

/* ---- staging ---- */

static void slot_release(staging_slot *sl) {
  if (sl->host) cudaFreeHost(sl->host);
  if (sl->dev) cudaFree(sl->dev);
  sl->host = NULL;
  sl->dev = NULL;
  sl->cap = 0;
}

static clip_status slot_alloc(clip_engine *e, staging_slot *sl, size_t cap) {
  cudaError_t err = cudaHostAlloc((void **)&sl->host, cap, cudaHostAllocDefault);
  if (err == cudaSuccess) err = cudaMalloc((void **)&sl->dev, cap);
  if (err != cudaSuccess) {
    if (err != cudaErrorMemoryAllocation) return cuda_fail(e, err, "staging slot allocation", __LINE__);
    cudaGetLastError();
    return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY,
                          "backend.cu:%d: cannot allocate a staging slot of %zu bytes (pinned host + "
                          "device): %s",
                          __LINE__, cap, cudaGetErrorString(err));
  }
  sl->cap = cap;
  return CLIP_OK;
}

/* Grows both slots (and/or the intermediate) for an image larger than they hold: the one
   allocation a call may make, only for images far beyond CLIP's usual sizes. Both slots
   always have the same capacity: on a failure both are released (cap 0), so the next call
   grows them again instead of writing into a missing buffer. */
static clip_status staging_grow(clip_engine *e, cuda_state *st, size_t slot_need, size_t mid_need) {
  CU_TRY(e, cudaStreamSynchronize(st->copy));
  CU_TRY(e, cudaStreamSynchronize(st->compute));
  if (slot_need > st->slot[0].cap || slot_need > st->slot[1].cap) {
    const size_t have = st->slot[0].cap < st->slot[1].cap ? st->slot[0].cap : st->slot[1].cap;
    const size_t cap = align_up(slot_need > 2 * have ? slot_need : 2 * have, ALIGN);
    for (int i = 0; i < 2; i++) slot_release(&st->slot[i]);
    for (int i = 0; i < 2; i++) {
      clip_status s = slot_alloc(e, &st->slot[i], cap);
      if (s != CLIP_OK) {
        slot_release(&st->slot[0]);
        slot_release(&st->slot[1]);
        return s;
      }
    }
  }
  if (mid_need > st->mid_cap) {
    size_t cap = align_up(mid_need > 2 * st->mid_cap ? mid_need : 2 * st->mid_cap, ALIGN);
    cudaFree(st->mid);
    st->mid = NULL;
    st->mid_cap = 0;
    CU_TRY(e, cudaMalloc((void **)&st->mid, cap));
    st->mid_cap = cap;
  }
  return CLIP_OK;
}

/* Takes the next slot: waits until the host side of its previous upload is done. */
static clip_status slot_acquire(clip_engine *e, cuda_state *st, staging_slot **out) {
  staging_slot *sl = &st->slot[st->next_slot];
  st->next_slot ^= 1;
  CU_TRY(e, cudaEventSynchronize(sl->copied));
  *out = sl;
  return CLIP_OK;
}

/* Uploads bytes of the slot on the copy stream once the device side is free, and makes the
   compute stream wait for it. */
static clip_status slot_upload(clip_engine *e, cuda_state *st, staging_slot *sl, size_t bytes) {
  CU_TRY(e, cudaStreamWaitEvent(st->copy, sl->consumed, 0));
  CU_TRY(e, cudaMemcpyAsync(sl->dev, sl->host, bytes, cudaMemcpyHostToDevice, st->copy));
  CU_TRY(e, cudaEventRecord(sl->copied, st->copy));
  CU_TRY(e, cudaStreamWaitEvent(st->compute, sl->copied, 0));
  return CLIP_OK;
}

/* ---- host-side parallelism ---- */

/* Host threads for packing/planning: the engine's thread count (all cores by default),
   capped: beyond ~16 the memcpy bandwidth of one socket is reached. */
static int host_threads(const clip_engine *e, int work_items) {
  int t = e->threads > 0 ? e->threads : 1;
  if (t > 16) t = 16;
  if (t > work_items) t = work_items;
  return t < 1 ? 1 : t;
}

/* Runs fn(i) for every i in [0, count), on up to `threads` threads (the caller's included),
   taking indices from a shared counter. If a thread cannot be started (std::thread throws),
   the threads that did start, and the caller, still take every index: nothing is skipped,
   and no exception leaves this function. */
template <typename F> static void parallel_for(int count, int threads, const F &fn) {
  if (threads > count) threads = count;
  if (threads <= 1) {
    for (int i = 0; i < count; i++) fn(i);
    return;
  }
  std::atomic<int> next(0);
  auto work = [&]() {
    for (int i; (i = next.fetch_add(1, std::memory_order_relaxed)) < count;) fn(i);
  };
  std::thread pool[16];
  int started = 0;
  for (int t = 1; t < threads && t < 16; t++) {
    try {
      pool[started] = std::thread(work);
      started++;
    } catch (...) {
      break;
    }
  }
  work();
  for (int t = 0; t < started; t++) pool[t].join();
}

/* memcpy of a large block on several threads (pageable -> pinned copies are bound by one
   core's copy speed otherwise). */
static void parallel_memcpy(void *dst, const void *src, size_t bytes, int threads) {
  const size_t piece = (size_t)4 << 20;
  const int pieces = (int)((bytes + piece - 1) / piece);
  if (pieces <= 1 || threads <= 1) {
    memcpy(dst, src, bytes);
    return;
  }
  parallel_for(pieces, threads, [&](int k) {
    const size_t a = (size_t)k * piece, len = a + piece <= bytes ? piece : bytes - a;
    memcpy((char *)dst + a, (const char *)src + a, len);
  });
}

/* ---- pixels in ---- */

/* Caller's float32 (n, 3, S, S) -> st->input in the compute dtype, in slot-sized chunks. */
static clip_status upload_pixels(clip_engine *e, cuda_state *st, const float *pixels, int n) {
  const size_t S = e->w.cfg.image_size, per = 3 * S * S;
  prof_mark(st, P_UPLOAD);
  if (st->dt == CLIP_DT_F32) {
    /* Straight into the input buffer; pageable source, so the driver stages it. */
    CU_TRY(e, cudaMemcpyAsync(st->input, pixels, (size_t)n * per * 4, cudaMemcpyHostToDevice,
                              st->compute));
    return CLIP_OK;
  }
  size_t chunk = st->slot[0].cap / (per * 4);
  if (chunk < 1) {
    ST_TRY(staging_grow(e, st, per * 4, 0));
    chunk = 1;
  }
  for (int i0 = 0; i0 < n; i0 += (int)chunk) {
    const int m = n - i0 < (int)chunk ? n - i0 : (int)chunk;
    const size_t bytes = (size_t)m * per * 4;
    staging_slot *sl = NULL;
    ST_TRY(slot_acquire(e, st, &sl));
    parallel_memcpy(sl->host, pixels + (size_t)i0 * per, bytes, host_threads(e, 16));
    ST_TRY(slot_upload(e, st, sl, bytes));
    CU_TRY(e, clip_convert_launch((char *)st->input + (size_t)i0 * per * st->esz, st->dt,
                                  (const float *)sl->dev, (size_t)m * per, st->compute));
    CU_TRY(e, cudaEventRecord(sl->consumed, st->compute));
  }
  return CLIP_OK;
}

/* ---- images in: device preprocessing ---- */

/* Preprocesses n images into st->input[0..n) (and, when u8out is a device pointer, their
   uint8 crops). Images are grouped into chunks that fit a staging slot and the
   intermediate; each chunk is one upload and two kernels. */
static clip_status preprocess_images(clip_engine *e, cuda_state *st, const clip_image *imgs, int n,
                                     uint8_t *u8out) {
  const int S = e->w.cfg.image_size;
  const int max_chunk = n < 65535 ? n : 65535;
  const size_t desc_bytes = align_up((size_t)max_chunk * sizeof(clip_resize_desc), ALIGN);
  prof_mark(st, P_PREPROCESS);

  /* 1. Every image's plan (Pillow's coefficient tables for its crop window), in parallel:
        independent per image. A failure is reported for the first failing image, with the
        message its plan gives when made again on this thread. */
  std::vector<clip_image_plan> plans;
  std::vector<clip_status> status;
  std::vector<size_t> src_off, mid_off;
  try {
    plans.resize(n);
    status.assign(n, CLIP_OK);
    src_off.resize(n);
    mid_off.resize(n);
  } catch (const std::bad_alloc &) {
    return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY, "embed: no host memory for %d image plans", n);
  }
  const int threads = host_threads(e, n);
  parallel_for(n, threads, [&](int k) {
    status[k] = clip_image_plan_make(&imgs[k], k, S, &plans[k], NULL, 0);
  });
  int bad = -1;
  for (int k = 0; k < n && bad < 0; k++)
    if (status[k] != CLIP_OK) bad = k;
  if (bad >= 0) {
    for (int k = 0; k < n; k++)
      if (status[k] == CLIP_OK) clip_image_plan_free(&plans[k]);
    clip_image_plan again;
    char err[256];
    clip_status s = clip_image_plan_make(&imgs[bad], bad, S, &again, err, sizeof err);
    if (s == CLIP_OK) { /* cannot happen (plans are deterministic); keep the first status */
      clip_image_plan_free(&again);
      return clip_set_error(e, status[bad], "embed: image %d: resize plan failed", bad);
    }
    return clip_set_error(e, s, "%s", err);
  }

  /* 2. Chunks that fit a staging slot and the intermediate: offsets assigned in order, then
        the images and tables packed into the pinned slot in parallel (disjoint ranges). */
  clip_status s = CLIP_OK;
  int i = 0;
  while (i < n && s == CLIP_OK) {
    staging_slot *sl = NULL;
    s = slot_acquire(e, st, &sl);
    if (s != CLIP_OK) break;
    size_t off = desc_bytes, mid = 0, max_mid_pixels = 0;
    int m = 0;
    while (i + m < n && m < max_chunk) {
      const clip_image_plan *p = &plans[i + m];
      const size_t need = p->src_bytes + p->plan_bytes;
      if (off + need > sl->cap || mid + p->mid_bytes > st->mid_cap) {
        if (m > 0) break; /* close this chunk; the image starts the next one */
        /* A single image larger than an empty slot: grow (syncs both streams; `sl` keeps
           pointing at the same slot, now with larger buffers). */
        s = staging_grow(e, st, desc_bytes + need, p->mid_bytes);
        if (s != CLIP_OK) break;
      }
      src_off[i + m] = off;
      mid_off[i + m] = mid;
      off += need;
      mid += p->mid_bytes;
      if ((size_t)p->d.ny * S > max_mid_pixels) max_mid_pixels = (size_t)p->d.ny * S;
      m++;
    }
    if (s != CLIP_OK) break;
    const int first = i;
    uint8_t *host = (uint8_t *)sl->host;
    parallel_for(m, host_threads(e, m), [&](int j) {
      size_t o = src_off[first + j], mo = mid_off[first + j];
      clip_image_plan_pack(&imgs[first + j], &plans[first + j], S, host, &o, &mo);
    });
    for (int j = 0; j < m; j++) st->descs_host[j] = plans[first + j].d;
    memcpy(sl->host, st->descs_host, (size_t)m * sizeof(clip_resize_desc));
    s = slot_upload(e, st, sl, off);
    if (s != CLIP_OK) break;
    cudaError_t err = clip_resize_launch((const clip_resize_desc *)sl->dev, m, sl->dev, st->mid, S,
                                         max_mid_pixels, st->lut, st->input, st->dt, u8out,
                                         st->compute);
    if (err == cudaSuccess) err = cudaEventRecord(sl->consumed, st->compute);
    if (err != cudaSuccess) {
      s = clip_set_error(e, CLIP_ERR_BACKEND, "%s:%d: device preprocessing: %s", __FILE__,
                         __LINE__, cudaGetErrorString(err));
      break;
    }
    i += m;
  }
  for (int k = 0; k < n; k++) clip_image_plan_free(&plans[k]);
  return s;
}

/* ---- the forward ---- */

#define STAGE_ALL (-1)

/* The forward for n images on st->input. stage == STAGE_ALL: the whole forward (the only form
   that is captured in graphs). stage >= 0 (clip_cuda_debug_forward_stage): stop early, with
     0            st->x = the token sequence (patch embedding + class token + positions)
     1            st->x = after ln_pre
     2 + l        st->x = the residual stream after block l (all rows, the last block too)
     layers + 2   st->cls_ln = ln_post of the class tokens
     layers + 3   st->emb = the embeddings
   The staged run computes the same floats as the whole forward: after the last block it
   stores x + delta for every row first and then normalizes the class rows in a second kernel,
   which reads back exactly the sums the fused kernel would have used. */
static clip_status forward_impl(clip_engine *e, cuda_state *st, int n, int stage) {
  const clip_config *c = &e->w.cfg;
  const int S = c->image_size, P = c->patch_size, GG = c->grid * c->grid, T = c->tokens;
  const int W = c->width, M = c->mlp_width, E = c->embed_dim, K = 3 * P * P;
  const int rows = n * T;
  const clip_dtype dt = st->dt;
  const float eps = c->ln_eps;
  cudaStream_t cs = st->compute;
  clip_gemm_ctx *g = &st->gemm;

  prof_mark(st, P_PATCH);
  CU_TRY(e, clip_im2col_launch(st->input, st->col, dt, n, S, P, cs));
  ST_TRY(clip_gemm(e, g, dt, st->col, K, st->patch_w, NULL, st->pout, W, n * GG, W, K, cs));
  CU_TRY(e, clip_assemble_tokens_launch(st->pout, dt, st->cls, st->pos, st->x, n, T, W, cs));
  if (stage == 0) return CLIP_OK;
  prof_mark(st, P_LAYERNORM);
  /* CLIP's residual stream starts as ln_pre's output (x = ln_pre(x)), in place. */
  CU_TRY(e, clip_layernorm_launch(st->x, W, NULL, dt, 0, st->ln_pre_w, st->ln_pre_b, st->x,
                                  CLIP_DT_F32, W, rows, W, eps, cs));
  if (stage == 1) return CLIP_OK;
  CU_TRY(e, clip_layernorm_launch(st->x, W, NULL, dt, 0, st->layer[0].ln1_w, st->layer[0].ln1_b,
                                  st->ln, dt, W, rows, W, eps, cs));
  for (int l = 0; l < c->layers; l++) {
    const dev_layer *L = &st->layer[l];
    /* x = x + attn(ln1(x)): st->ln holds ln1(x) here */
    prof_mark(st, P_QKV);
    ST_TRY(clip_gemm(e, g, dt, st->ln, W, L->qkv_w, L->qkv_b, st->qkv, 3 * W, rows, 3 * W, W, cs));
    prof_mark(st, P_ATTENTION);
    CU_TRY(e, clip_attention_launch(st->qkv, st->att, dt, n, T, W, c->heads, cs));
    prof_mark(st, P_OUT);
    ST_TRY(clip_gemm(e, g, dt, st->att, W, L->out_w, L->out_b, st->tmp, W, rows, W, W, cs));
    prof_mark(st, P_LAYERNORM);
    /* x += attn; ln = ln2(x) */
    CU_TRY(e, clip_layernorm_launch(st->x, W, st->tmp, dt, W, L->ln2_w, L->ln2_b, st->ln, dt, W,
                                    rows, W, eps, cs));
    /* x = x + mlp(ln2(x)) */
    prof_mark(st, P_FC1);
    ST_TRY(clip_gemm(e, g, dt, st->ln, W, L->fc1_w, L->fc1_b, st->h, M, rows, M, W, cs));
    prof_mark(st, P_GELU);
    CU_TRY(e, clip_gelu_launch(st->h, dt, (size_t)rows * M, c->quick_gelu, cs));
    prof_mark(st, P_FC2);
    ST_TRY(clip_gemm(e, g, dt, st->h, M, L->fc2_w, L->fc2_b, st->tmp, W, rows, W, M, cs));
    prof_mark(st, P_LAYERNORM);
    if (l + 1 < c->layers) {
      /* x += mlp; ln = ln1 of the next block */
      CU_TRY(e, clip_layernorm_launch(st->x, W, st->tmp, dt, W, st->layer[l + 1].ln1_w,
                                      st->layer[l + 1].ln1_b, st->ln, dt, W, rows, W, eps, cs));
    } else if (stage == STAGE_ALL) {
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
  prof_mark(st, P_HEAD);
  ST_TRY(clip_gemm(e, g, CLIP_DT_F32, st->cls_ln, W, st->proj, NULL, st->emb, E, n, E, W, cs));
  return CLIP_OK;
}

/* ---- CUDA graphs (one per batch size) ---- */

static void graphs_clear(cuda_state *st) {
  for (int i = 0; i < GRAPH_CACHE; i++) {
    if (st->graph[i].exec) cudaGraphExecDestroy(st->graph[i].exec);
    st->graph[i].exec = NULL;
    st->graph[i].n = 0;
  }
}

/* Graphs stay off for this engine from now on; the reason is kept, the error is cleared. */
static void graphs_give_up(clip_engine *e, cuda_state *st, const char *what, cudaError_t err,
                           const char *detail) {
  cudaGetLastError();
  st->graphs_failed = 1;
  snprintf(st->graph_note, sizeof st->graph_note, "%s failed: %s%s%s", what,
           err != cudaSuccess ? cudaGetErrorName(err) : "", detail && detail[0] ? ": " : "",
           detail ? detail : "");
  (void)e;
}

static cudaError_t graph_instantiate(cudaGraphExec_t *exec, cudaGraph_t graph) {
#if CUDART_VERSION >= 12000
  return cudaGraphInstantiate(exec, graph, 0ULL);
#else
  return cudaGraphInstantiate(exec, graph, NULL, NULL, 0);
#endif
}

/* Captures forward(n) into a graph and caches its exec. Nothing in forward_impl allocates,
   synchronizes or copies (the GEMM plans for n exist: the eager forward just made them), and
   the capture is thread-local so other threads' CUDA calls are not affected. Any failure only
   turns graphs off. */
static void graph_capture(clip_engine *e, cuda_state *st, int n) {
  cudaError_t err = cudaStreamBeginCapture(st->compute, cudaStreamCaptureModeThreadLocal);
  if (err != cudaSuccess) {
    graphs_give_up(e, st, "cudaStreamBeginCapture", err, NULL);
    return;
  }
  char saved[CLIP_ERR_LEN];
  memcpy(saved, e->last_error, sizeof saved);
  const clip_status s = forward_impl(e, st, n, STAGE_ALL);
  cudaGraph_t graph = NULL;
  err = cudaStreamEndCapture(st->compute, &graph); /* always ends the capture */
  if (s != CLIP_OK || err != cudaSuccess || !graph) {
    char detail[CLIP_ERR_LEN];
    snprintf(detail, sizeof detail, "%s", s != CLIP_OK ? e->last_error : "");
    memcpy(e->last_error, saved, sizeof saved);
    if (graph) cudaGraphDestroy(graph);
    graphs_give_up(e, st, "capture", err, detail);
    return;
  }
  cudaGraphExec_t exec = NULL;
  err = graph_instantiate(&exec, graph);
  cudaGraphDestroy(graph);
  if (err != cudaSuccess || !exec) {
    graphs_give_up(e, st, "cudaGraphInstantiate", err, NULL);
    return;
  }
  int slot = -1;
  for (int i = 0; i < GRAPH_CACHE && slot < 0; i++)
    if (!st->graph[i].n) slot = i;
  if (slot < 0) { /* full: replace the least recently used */
    slot = 0;
    for (int i = 1; i < GRAPH_CACHE; i++)
      if (st->graph[i].stamp < st->graph[slot].stamp) slot = i;
  }
  /* An exec still running is freed by the driver when it completes. */
  if (st->graph[slot].exec) cudaGraphExecDestroy(st->graph[slot].exec);
  st->graph[slot].n = n;
  st->graph[slot].exec = exec;
  st->graph[slot].stamp = ++st->graph_clock;
  st->graph_captures++;
}

/* The whole forward for n: a cached graph's replay, or direct launches (then a capture for
   next time when graphs are on). */
static clip_status forward(clip_engine *e, cuda_state *st, int n) {
  if (!st->graphs_on || st->graphs_failed) return forward_impl(e, st, n, STAGE_ALL);
  for (int i = 0; i < GRAPH_CACHE; i++) {
    graph_entry *gr = &st->graph[i];
    if (gr->n != n || !gr->exec) continue;
    const cudaError_t err = cudaGraphLaunch(gr->exec, st->compute);
    if (err == cudaSuccess) {
      gr->stamp = ++st->graph_clock;
      st->graph_launches++;
      return CLIP_OK;
    }
    /* Not expected; direct launches still work unless the context is broken, in which case
       they report the error. */
    graphs_give_up(e, st, "cudaGraphLaunch", err, NULL);
    graphs_clear(st);
    return forward_impl(e, st, n, STAGE_ALL);
  }
  ST_TRY(forward_impl(e, st, n, STAGE_ALL));
  graph_capture(e, st, n);
  return CLIP_OK;
}

/* Forward + copy of the embeddings to the caller. */
static clip_status forward_and_fetch(clip_engine *e, cuda_state *st, int n, float *out) {
  const size_t E = e->w.cfg.embed_dim;
  ST_TRY(forward(e, st, n));
  CU_TRY(e, cudaMemcpyAsync(st->host_out, st->emb, (size_t)n * E * 4, cudaMemcpyDeviceToHost,
                            st->compute));
  prof_mark(st, -1);
  CU_TRY(e, cudaStreamSynchronize(st->compute));
  prof_collect(st);
  memcpy(out, st->host_out, (size_t)n * E * 4);
  return CLIP_OK;
}

static clip_status cuda_embed_pixels(clip_engine *e, const float *pixels, int n, float *out) {
  cuda_state *st = state_of(e);
  CU_TRY(e, cudaSetDevice(st->device));
  st->prof_n = 0;
  ST_TRY(upload_pixels(e, st, pixels, n));
  return forward_and_fetch(e, st, n, out);
}

static clip_status cuda_embed_images(clip_engine *e, const clip_image *images, int n, float *out) {
  cuda_state *st = state_of(e);
  CU_TRY(e, cudaSetDevice(st->device));
  st->prof_n = 0;
  ST_TRY(preprocess_images(e, st, images, n, NULL));
  return forward_and_fetch(e, st, n, out);
}

static void cuda_destroy(clip_engine *e) {
  cuda_state *st = state_of(e);
  if (!st) return;
  cudaSetDevice(st->device);
  if (st->compute) cudaStreamSynchronize(st->compute);
  if (st->copy) cudaStreamSynchronize(st->copy);
  graphs_clear(st);
  if (st->gemm_ready) clip_gemm_destroy(&st->gemm);
  for (int i = 0; i < 2; i++) {
    slot_release(&st->slot[i]);
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
  free(st->descs_host);
  free(st->layer);
  free(st);
  e->backend_state = NULL;
}

static const clip_backend_impl cuda_impl = {cuda_embed_pixels, cuda_embed_images, cuda_destroy};

static const char *dtype_label(clip_dtype dt) {
  return dt == CLIP_DT_F16 ? "fp16" : dt == CLIP_DT_BF16 ? "bf16" : "fp32";
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
  const size_t smem = clip_attention_smem_bytes(c->tokens, hd);
  if (smem > (size_t)smem_optin)
    return clip_set_error(e, CLIP_ERR_UNSUPPORTED,
                          "cuda: attention over %d tokens (head dim %d) needs %zu bytes of shared "
                          "memory; the device allows %d",
                          c->tokens, hd, smem, smem_optin);
  return CLIP_OK;
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

  st->layer = (dev_layer *)calloc((size_t)c->layers, sizeof(dev_layer));
  st->descs_host = (clip_resize_desc *)malloc(sizeof(clip_resize_desc) * (size_t)(mb < 65535 ? mb : 65535));
  if (!st->layer || !st->descs_host)
    return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY, "cuda: out of host memory");

  /* Size everything first, then check it against the free device memory. */
  arena wa = {NULL, 0}, aa = {NULL, 0};
  layout_weights(st, c, &wa);
  layout_activations(st, c, mb, &aa);
  const size_t staging = 2 * STAGING_SLOT_BYTES + MID_BYTES;
  const size_t convert_tmp = st->dt == CLIP_DT_F32 ? 0 : (size_t)c->mlp_width * c->width * 4 * 3;
  const size_t need = wa.off + aa.off + staging + convert_tmp + ((size_t)64 << 20) /* cuBLASLt, context slack */;
  size_t free_b = 0, total_b = 0;
  CU_TRY(e, cudaMemGetInfo(&free_b, &total_b));
  if (need > free_b)
    return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY,
                          "cuda: max_batch %d at %s needs about %zu bytes of device memory "
                          "(weights %zu, activations %zu, staging %zu); %zu of %zu are free",
                          mb, dtype_label(st->dt), need, wa.off, aa.off, staging, free_b, total_b);

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
  if (merr != cudaSuccess) return cuda_fail(e, merr, "cudaMalloc (weights/activations)", __LINE__);
  wa.base = (char *)st->wmem;
  wa.off = 0;
  aa.base = (char *)st->amem;
  aa.off = 0;
  layout_weights(st, c, &wa);
  layout_activations(st, c, mb, &aa);
  /* Zeroed once, so no buffer ever holds garbage (NaN) bit patterns. */
  CU_TRY(e, cudaMemset(st->amem, 0, st->abytes));

  CU_TRY(e, cudaStreamCreateWithFlags(&st->compute, cudaStreamNonBlocking));
  CU_TRY(e, cudaStreamCreateWithFlags(&st->copy, cudaStreamNonBlocking));
  for (int i = 0; i < 2; i++) {
    CU_TRY(e, cudaEventCreateWithFlags(&st->slot[i].copied, cudaEventDisableTiming));
    CU_TRY(e, cudaEventCreateWithFlags(&st->slot[i].consumed, cudaEventDisableTiming));
    ST_TRY(slot_alloc(e, &st->slot[i], STAGING_SLOT_BYTES));
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

  ST_TRY(upload_weights(e, st));

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

/* ---- debug entry points (cuda_debug.h) ---- */

static clip_status debug_state(clip_engine *e, cuda_state **out) {
  if (!e) return CLIP_ERR_INVALID_ARGUMENT;
  if (e->impl != &cuda_impl || !e->backend_state)
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
  clip_status s = preprocess_images(e, st, imgs, n, dev);
  if (s == CLIP_OK) {
    cudaError_t err = cudaStreamSynchronize(st->compute);
    if (err == cudaSuccess) err = cudaMemcpy(out, dev, bytes, cudaMemcpyDeviceToHost);
    if (err != cudaSuccess) s = cuda_fail(e, err, "debug_preprocess_u8 copy", __LINE__);
  }
  cudaStreamSynchronize(st->compute);
  prof_collect(st);
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
    ST_TRY(forward(e, st, n));
    prof_mark(st, -1);
    CU_TRY(e, cudaStreamSynchronize(st->compute));
    prof_collect(st);
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
    s = forward(e, st, n);
    if (s != CLIP_OK) break;
    prof_mark(st, -1);
    err = cudaEventRecord(b, st->compute);
    if (err == cudaSuccess) err = cudaEventSynchronize(b);
    if (err == cudaSuccess) err = cudaEventElapsedTime(&ms[i], a, b);
    prof_collect(st);
  }
  if (s == CLIP_OK && err != cudaSuccess) s = cuda_fail(e, err, "debug_time_forward", __LINE__);
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
  ST_TRY(upload_pixels(e, st, pixels, n));
  ST_TRY(forward_impl(e, st, n, stage));
  const void *src = st->x;
  size_t count = (size_t)n * c->tokens * c->width;
  if (stage == c->layers + 2) {
    src = st->cls_ln;
    count = (size_t)n * c->width;
  } else if (stage == c->layers + 3) {
    src = st->emb;
    count = (size_t)n * c->embed_dim;
  }
  prof_mark(st, -1);
  CU_TRY(e, cudaStreamSynchronize(st->compute));
  prof_collect(st);
  CU_TRY(e, cudaMemcpy(out, src, count * sizeof(float), cudaMemcpyDeviceToHost));
  return CLIP_OK;
}

extern "C" CLIP_API clip_status clip_cuda_debug_graphs(clip_engine *e, int enable, char *buf, size_t len) {
  cuda_state *st = NULL;
  ST_TRY(debug_state(e, &st));
  if (enable == 0) {
    CU_TRY(e, cudaStreamSynchronize(st->compute));
    graphs_clear(st);
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
