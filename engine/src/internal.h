/* internal.h: private types shared by the engine core, the CPU backend and the CUDA backend
   (model config, canonical fp32 weights, the backend table, error helpers). Not installed. */
#ifndef CLIP_INTERNAL_H
#define CLIP_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "clipengine.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CLIP_ERR_LEN 512

/* The vision tower's shape, derived from tensor shapes plus an optional config file. */
typedef struct clip_config {
  int image_size, patch_size, width, layers, heads, mlp_width, embed_dim;
  int quick_gelu; /* 1: x*sigmoid(1.702x); 0: exact erf GELU */
  float ln_eps;   /* LayerNorm epsilon, 1e-5 unless the config says otherwise */
  int grid;       /* image_size / patch_size */
  int tokens;     /* grid*grid + 1 (class token first) */
} clip_config;

/* One pre-LN residual block. Linear weights use PyTorch's [out, in] row-major layout. */
typedef struct clip_layer_weights {
  const float *ln1_w, *ln1_b; /* (W) */
  const float *qkv_w;         /* (3W, W): rows 0..W-1 = q, W..2W-1 = k, 2W..3W-1 = v */
  const float *qkv_b;         /* (3W) */
  const float *out_w, *out_b; /* (W, W), (W) */
  const float *ln2_w, *ln2_b; /* (W) */
  const float *fc1_w, *fc1_b; /* (M, W), (M) */
  const float *fc2_w, *fc2_b; /* (W, M), (W) */
} clip_layer_weights;

/* The text tower's shape (OpenAI's encode_text), derived like the vision tower's. */
typedef struct clip_text_config {
  int context_length, vocab_size, width, layers, heads, mlp_width, embed_dim;
  int quick_gelu;
  float ln_eps;
} clip_text_config;

/* Which file a weights struct was loaded from (stat fields), to notice it changing. */
typedef struct clip_file_id {
  int64_t dev, ino, size, mtime_ns, ctime_ns;
} clip_file_id;

/* The text tower's canonical fp32 weights (pointers into clip_weights.text_arena; all NULL
   until clip_weights_load_text). */
typedef struct clip_text_weights {
  clip_text_config cfg;
  const float *token_emb;             /* (V, W) */
  const float *pos_emb;               /* (ctx, W) */
  clip_layer_weights *layer;          /* [cfg.layers], same layout as the vision blocks */
  const float *ln_final_w, *ln_final_b; /* (W) */
  const float *proj;                  /* (E, W): embedding = proj @ ln_final(x_eot) */
} clip_text_weights;

/* Canonical fp32 weights, whatever the file's naming and dtype. All pointers point into
   `arena` (one allocation owned by this struct). */
typedef struct clip_weights {
  clip_config cfg;
  const float *patch_w;   /* (W, 3*P*P): conv1 weight flattened as [c][ky][kx]; no bias */
  const float *class_emb; /* (W) */
  const float *pos_emb;   /* (T, W) */
  const float *ln_pre_w, *ln_pre_b;   /* (W) */
  clip_layer_weights *layer;          /* [cfg.layers] */
  const float *ln_post_w, *ln_post_b; /* (W) */
  const float *proj;                  /* (E, W): embedding = proj @ ln_post(x_cls) */
  /* The text tower: checked and configured at load, converted at the first text call so
     that image-only engines keep no copy of it (B/32: 250 MB of fp32). */
  int has_text;         /* 1: the file has a text tower this library runs; text.cfg is set */
  clip_text_weights text;
  char text_absent[CLIP_ERR_LEN]; /* has_text == 0: why the text calls are unsupported (one line) */
  void *text_arena;     /* the text tower's fp32 weights; NULL until clip_weights_load_text */
  size_t text_arena_bytes;
  char *source;         /* the .safetensors file (malloc'd), for clip_weights_load_text */
  clip_file_id source_id;
  void *arena;
  size_t arena_bytes;
  char naming[16]; /* "openai" or "hf": which naming the file used */
} clip_weights;

/* Loads `path` (a .safetensors file or a directory holding model.safetensors, or
   open_clip_model.safetensors, beside an optional config.json / open_clip_config.json).
   On failure returns CLIP_ERR_IO / CLIP_ERR_BAD_WEIGHTS / CLIP_ERR_OUT_OF_MEMORY with a
   message naming the problem in err, and leaves *w zeroed. */
CLIP_API clip_status clip_weights_load(const char *path, clip_weights *w, char *err, size_t err_len);
CLIP_API void clip_weights_free(clip_weights *w); /* zeroed or loaded; safe twice */
/* Converts the text tower of loaded weights w (has_text) from w->source into w->text_arena;
   CLIP_OK at once when it already is. CLIP_ERR_IO when the file changed since w was loaded
   (another file's text tower must not join this vision tower); CLIP_ERR_UNSUPPORTED without
   a text tower; CLIP_ERR_OUT_OF_MEMORY. */
CLIP_API clip_status clip_weights_load_text(clip_weights *w, char *err, size_t err_len);
/* The config alone: the same files, checks and messages as clip_weights_load (every tensor
   present and of the right shape and dtype), without converting a tensor. On failure *cfg is
   zeroed. Behind clip_weights_probe. */
clip_status clip_weights_read_config(const char *path, clip_config *cfg, char *err,
                                     size_t err_len);
/* The text tower's config alone, as clip_weights_read_config: *has_text 0 (with the reason
   in absent[absent_len]) when the file has no text tower we can run. */
CLIP_API clip_status clip_weights_read_text_config(const char *path, clip_text_config *cfg,
                                                   int *has_text, char *absent,
                                                   size_t absent_len, char *err, size_t err_len);
/* The public view of a config (clip_engine_info and clip_weights_probe). */
clip_model_info clip_model_info_of(const clip_config *c);
clip_text_info clip_text_info_of(const clip_text_config *c);

/* Internal functions marked CLIP_API are exported (prefix clip_) only so the C tests can
   call them; they are not part of the public contract. */

/* ---- preprocessing (engine/src/preprocess.c) ---- */

/* CLIP's normalization constants. */
CLIP_API extern const float clip_mean[3];
CLIP_API extern const float clip_std[3];

/* torchvision Resize(size) on a w x h image -> rw x rh, then CenterCrop(size) offsets. */
CLIP_API void clip_resize_geometry(int w, int h, int size, int *rw, int *rh, int *crop_x, int *crop_y);

/* Pillow's bicubic resample plan for one axis (in_size -> out_size, whole image, no box):
   output index i reads taps bounds[2i] .. bounds[2i]+bounds[2i+1]-1 with fixed-point
   coefficients kk[i*ksize + t] (22 fraction bits, Pillow's rounding). */
typedef struct clip_axis_plan {
  int in_size, out_size, ksize;
  int *bounds;  /* (out_size, 2) */
  int32_t *kk;  /* (out_size, ksize) */
} clip_axis_plan;
#define CLIP_PRECISION_BITS 22
CLIP_API clip_status clip_axis_plan_make(int in_size, int out_size, clip_axis_plan *p);
/* Same as clip_axis_plan_make, for outputs out_first .. out_first+out_count-1 of an
   in_size -> out_size resize (e.g. the centre-crop window): entry i is output
   out_first + i, and p->out_size is out_count. */
CLIP_API clip_status clip_axis_plan_make_range(int in_size, int out_size, int out_first,
                                               int out_count, clip_axis_plan *p);
CLIP_API void clip_axis_plan_free(clip_axis_plan *p);

/* ---- engine and backends ---- */

typedef struct clip_backend_impl {
  /* float32 [n,3,S,S] normalized pixels -> out[n*E] */
  clip_status (*embed_pixels)(clip_engine *e, const float *pixels, int n, float *out);
  /* raw images -> out[n*E]; NULL means: the engine preprocesses on the CPU and calls
     embed_pixels. */
  clip_status (*embed_images)(clip_engine *e, const clip_image *images, int n, float *out);
  void (*destroy)(clip_engine *e); /* frees backend_state */
  /* encoded images -> out[n*E] and per_image[n] (clip_engine_embed_encoded's contract, with
     the arguments checked, per-image messages in e->image_err and the counters in
     e->decode_stats); NULL means: the engine decodes on the CPU (engine/src/encoded.c). */
  clip_status (*embed_encoded)(clip_engine *e, const uint8_t *const *data, const size_t *sizes,
                               int n, float *out, clip_status *per_image);
  /* n token sequences (n*ctx int32 ids, checked) -> out[n*E] of the text tower; eot[i] is
     sequence i's EOT position (the argmax of its ids). NULL: the backend has no text forward. */
  clip_status (*embed_tokens)(clip_engine *e, const int32_t *tokens, const int *eot, int n,
                              float *out);
} clip_backend_impl;

struct clip_engine {
  clip_engine_params params; /* weights_path is NULLed after create (not owned) */
  clip_weights w;
  clip_model_info info;
  int max_batch;   /* resolved */
  int threads;     /* resolved CPU threads */
  clip_precision precision; /* resolved */
  const clip_backend_impl *impl;
  void *backend_state;
  char backend_name[128];
  char last_error[CLIP_ERR_LEN];
  clip_decode_options decode_opt; /* clip_engine_set_decode_options; zero = defaults */
  clip_decode_stats decode_stats; /* clip_engine_decode_stats */
  char (*image_err)[160];         /* [max_batch] reasons of the last embed_encoded call
                                     (CLIP_IMAGE_ERR_LEN), allocated at its first call */
  int image_err_n;                /* entries valid in image_err */
};

/* clip_engine_embed_encoded's checks and bookkeeping (also clip_cuda_debug_decode's): clears
   last_error and the per-image reasons, checks the arrays, n and NULL data, sets every
   per_image to CLIP_ERR_BACKEND (the backend overwrites each), and returns in *d a malloc'ed
   copy of data with NULL (empty) images pointing at a valid empty buffer (NULL for n == 0). */
clip_status clip_encoded_prepare(clip_engine *e, const uint8_t *const *data, const size_t *sizes,
                                 int n, clip_status *per_image, const uint8_t ***d);

/* The CPU decode path of clip_engine_embed_encoded (engine/src/encoded.c), also the CUDA
   backend's fallback for the images it does not decode: decodes images idx[0..m) of data on
   the CPU (idx NULL: images 0..m-1), writes their statuses and reasons, and hands the
   decoded images to the caller through rgb[k] (malloc'ed, freed by the caller; NULL for a
   failed image) / w[k] / h[k] for k < m. The caller counts the images in decode_stats. */
void clip_decode_cpu(clip_engine *e, const uint8_t *const *data, const size_t *sizes,
                     const int *idx, int m, clip_status *per_image, uint8_t **rgb, int *w,
                     int *h);

/* printf into the engine's last_error (and return status for chaining). */
clip_status clip_set_error(clip_engine *e, clip_status s, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* printf into a caller buffer (NULL/0 allowed). */
void clip_format_error(char *err, size_t err_len, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* CPU backend (engine/src/cpu_backend.c): sets e->impl, e->backend_state, e->backend_name. */
clip_status clip_cpu_backend_init(clip_engine *e);

/* CUDA backend (cuda/device.cu, cuda/backend.cu), only when built with CLIP_HAVE_CUDA. */
#ifdef CLIP_HAVE_CUDA
/* Whether CUDA device `device` can run this backend (a driver, the device, compute
   capability 8.0+), allocating nothing on the device; its name (NUL-terminated, truncated to
   name_len) and total memory. On failure: CLIP_ERR_UNSUPPORTED with the reason in err
   (starting "cuda: "), the message clip_engine_create gives for the same device. */
clip_status clip_cuda_device_query(int device, char *name, size_t name_len,
                                   int64_t *memory_bytes, char *err, size_t err_len);
clip_status clip_cuda_backend_init(clip_engine *e);
#endif

/* float16 / bfloat16 bit patterns -> float */
CLIP_API float clip_half_to_float(uint16_t h);
CLIP_API float clip_bf16_to_float(uint16_t h);

#ifdef __cplusplus
}
#endif
#endif /* CLIP_INTERNAL_H */
