/* backend.cuh: the CUDA backend's per-engine state and error macros, shared by the host-side
   files of cuda/: backend.cu (the orchestrator: create, the forward, embed, destroy),
   memory.cu (device arenas, weights upload), staging.cu (pinned staging, packing, uploads),
   graphs.cu (CUDA graphs of the forward), thread_pool.cu (host workers), debug.cu
   (profiling and the clipengine_cuda.h entry points) and text_tower.cu (the text tower's
   forward). Private to cuda/. */
#ifndef CLIP_CUDA_BACKEND_CUH
#define CLIP_CUDA_BACKEND_CUH

#include <string.h>

#include "common.cuh"
#include "gemm.cuh"
#include "internal.h"
#include "resize.cuh"
#include "thread_pool.cuh"

#define ALIGN 256
#define STAGING_SLOT_BYTES ((size_t)64 << 20)
#define MID_BYTES ((size_t)64 << 20)
#define WORKSPACE_BYTES ((size_t)32 << 20)
#define PROFILE_EVENTS 1024
#define GRAPH_CACHE 8 /* batch sizes with a cached graph; the least recently used goes */
#define HOST_THREADS_MAX 16 /* beyond ~16 the memcpy bandwidth of one socket is reached */

static inline size_t clip_align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

/* Records a CUDA error on the engine as "<file>:<line>: what: message (name)" and returns
   CLIP_ERR_OUT_OF_MEMORY or CLIP_ERR_BACKEND. */
clip_status clip_cuda_fail(clip_engine *e, cudaError_t err, const char *what, const char *file,
                           int line);

#define CU_TRY(e, call)                                                                       \
  do {                                                                                        \
    cudaError_t err_ = (call);                                                                \
    if (err_ != cudaSuccess) return clip_cuda_fail((e), err_, #call, __FILE__, __LINE__);     \
  } while (0)

#define ST_TRY(call)                                                                          \
  do {                                                                                        \
    clip_status s_ = (call);                                                                  \
    if (s_ != CLIP_OK) return s_;                                                             \
  } while (0)

/* Op classes for CLIP_CUDA_PROFILE. */
enum { P_UPLOAD, P_PREPROCESS, P_PATCH, P_LAYERNORM, P_QKV, P_ATTENTION, P_OUT, P_FC1, P_GELU, P_FC2,
       P_HEAD, P_COUNT };

typedef struct dev_layer {
  float *ln1_w, *ln1_b, *ln2_w, *ln2_b; /* (W) fp32 */
  void *qkv_w, *qkv_b;                  /* (3W, W), (3W) dtype */
  void *out_w, *out_b;                  /* (W, W), (W) */
  void *fc1_w, *fc1_b;                  /* (M, W), (M) */
  void *fc2_w, *fc2_b;                  /* (W, M), (W) */
} dev_layer;

/* The text tower on the device (text_tower.cu), made at the engine's first
   clip_engine_embed_tokens so that image-only engines spend no device memory on it. */
typedef struct text_state {
  void *wmem; /* weights arena */
  size_t wbytes;
  float *tok, *pos;       /* (V, W), (C, W) fp32 */
  float *lnf_w, *lnf_b;   /* (W) fp32 */
  float *proj;            /* (E, W) fp32 */
  dev_layer *layer;       /* [layers] (host array of device pointers) */
  void *amem; /* activations arena, sized for max_batch sequences */
  size_t abytes;
  int32_t *ids;           /* (mb*C) token ids */
  int32_t *eot;           /* (mb) end-token positions */
  float *x;               /* (mb*C, W) residual stream, fp32 */
  void *ln, *qkv, *att, *tmp, *h; /* (mb*C, W), (mb*C, 3W), (mb*C, W), (mb*C, W), (mb*C, M) dtype */
  float *sel;             /* (mb, W) the end-token rows, then ln_final of them */
  float *emb;             /* (mb, E) */
} text_state;

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
  clip_thread_pool *pool; /* host workers, started at create */

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

  text_state *text;           /* the text tower (text_tower.cu); NULL until first used */

  struct clip_jpeg_dev *jpeg; /* nvJPEG decoding (decode.cu); NULL: JPEGs decode on the CPU */
  int jpeg_mode;              /* CLIP_JPEG_* (decode.cuh) */
  char jpeg_note[256];        /* how JPEGs are decoded, or why nvJPEG is off */
} cuda_state;

static inline cuda_state *state_of(clip_engine *e) { return (cuda_state *)e->backend_state; }

/* The engine's CUDA state, or NULL when e does not run on the CUDA backend (backend.cu). */
cuda_state *clip_cuda_engine_state(clip_engine *e);

/* CLIP_ERR_UNSUPPORTED (the message naming tower: "" or "text ") when attention over tokens
   with head dim hd needs more shared memory than the device's opt-in limit (backend.cu). */
clip_status clip_cuda_attention_fits(clip_engine *e, const char *tower, int tokens, int hd,
                                     int smem_optin);

/* The forward's ops for n images on st->input (backend.cu). stage CLIP_STAGE_ALL: the whole
   forward, the only form captured in graphs; stage >= 0 stops early (see
   clip_cuda_debug_forward_stage in clipengine_cuda.h). */
#define CLIP_STAGE_ALL (-1)
clip_status clip_cuda_forward_ops(clip_engine *e, cuda_state *st, int n, int stage);

#endif /* CLIP_CUDA_BACKEND_CUH */
