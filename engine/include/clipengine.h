/* clipengine.h: the public C API of libclipengine, a CLIP ViT image-embedding engine
   (CPU and CUDA backends). This is the only header other programs include. */
#ifndef CLIPENGINE_H
#define CLIPENGINE_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define CLIP_API __declspec(dllexport)
#elif defined(__GNUC__)
#define CLIP_API __attribute__((visibility("default")))
#else
#define CLIP_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define CLIP_API_VERSION 1

typedef struct clip_engine clip_engine; /* opaque */

typedef enum clip_status {
  CLIP_OK = 0,
  CLIP_ERR_INVALID_ARGUMENT = -1,
  CLIP_ERR_IO = -2,
  CLIP_ERR_BAD_WEIGHTS = -3,
  CLIP_ERR_OUT_OF_MEMORY = -4,
  CLIP_ERR_BACKEND = -5,
  CLIP_ERR_UNSUPPORTED = -6
} clip_status;

typedef enum clip_backend {
  CLIP_BACKEND_AUTO = 0,
  CLIP_BACKEND_CPU = 1,
  CLIP_BACKEND_CUDA = 2
} clip_backend;

typedef enum clip_precision {
  CLIP_PRECISION_AUTO = 0,
  CLIP_PRECISION_FP32 = 1,
  CLIP_PRECISION_FP16 = 2,
  CLIP_PRECISION_BF16 = 3
} clip_precision;

typedef struct clip_engine_params {
  const char *weights_path; /* a .safetensors file, or a directory with model.safetensors [+ config.json] */
  clip_backend backend;     /* AUTO: CUDA if built and a device exists, else CPU */
  int device;               /* CUDA device ordinal */
  int max_batch;            /* largest n one call may pass; 0 = engine default */
  clip_precision precision; /* AUTO: fp16 on CUDA, fp32 on CPU */
  int threads;              /* CPU backend threads; 0 = all cores */
} clip_engine_params;

typedef struct clip_model_info {
  int image_size, patch_size, width, layers, heads, mlp_width, embed_dim;
  int quick_gelu; /* 1: x*sigmoid(1.702x) (OpenAI); 0: exact erf GELU (LAION open_clip) */
} clip_model_info;

typedef struct clip_image {
  const uint8_t *rgb; /* interleaved 8-bit RGB, row-major */
  int width, height;
  int stride; /* bytes per row; 0 = width*3 */
} clip_image;

CLIP_API clip_engine_params clip_engine_default_params(void);
CLIP_API clip_status clip_engine_create(const clip_engine_params *p, clip_engine **out, char *err,
                                        size_t err_len);
CLIP_API void clip_engine_destroy(clip_engine *e); /* NULL is fine */
CLIP_API clip_status clip_engine_info(const clip_engine *e, clip_model_info *out);
CLIP_API const char *clip_engine_backend_name(const clip_engine *e); /* e.g. "cpu 2 threads fp32" */
CLIP_API const char *clip_engine_last_error(const clip_engine *e);
CLIP_API const char *clip_status_string(clip_status s);
CLIP_API const char *clip_version(void);

/* n images of any size -> CLIP preprocessing (shorter side to image_size with PIL-exact
   antialiased bicubic, center crop, /255, normalize with CLIP mean/std) -> forward ->
   out[n * embed_dim] float32, NOT L2-normalized (same as model.encode_image).
   Every backend writes the forward's values as they come out: where the weights overflow
   for an image, its row holds NaN or Inf and the call still returns CLIP_OK, so that one
   image never costs the batch; the caller checks each row (clipd fails that image). */
CLIP_API clip_status clip_engine_embed_images(clip_engine *e, const clip_image *images, int n,
                                              float *out);
/* n preprocessed images, float32 [n,3,S,S] already normalized -> out[n * embed_dim] */
CLIP_API clip_status clip_engine_embed_pixels(clip_engine *e, const float *pixels, int n,
                                              float *out);
/* CPU reference preprocessing of one image -> float32 [3,S,S] */
CLIP_API clip_status clip_preprocess_image(const clip_image *img, int image_size, float *out);

/* ---- additions beyond the fixed contract ---- */

/* The uint8 stage of clip_preprocess_image: Pillow-exact bicubic resize of the shorter side
   to image_size and the torchvision center crop -> out[image_size * image_size * 3],
   interleaved RGB8 (what PIL's image holds before ToTensor). */
CLIP_API clip_status clip_preprocess_image_u8(const clip_image *img, int image_size, uint8_t *out);

/* The model config of a weights file, without building an engine or converting a tensor:
   weights_path takes the forms clip_engine_params.weights_path takes, and the file gets the
   same checks with the same messages as clip_engine_create (every tensor present, of the
   right shape and a convertible dtype; a config file beside it agreeing with the shapes), so
   a file that probes CLIP_OK loads. *out is what clip_engine_info of an engine on that file
   returns. Errors: CLIP_ERR_INVALID_ARGUMENT, CLIP_ERR_IO, CLIP_ERR_BAD_WEIGHTS,
   CLIP_ERR_UNSUPPORTED, CLIP_ERR_OUT_OF_MEMORY, with the message in err (may be NULL). */
CLIP_API clip_status clip_weights_probe(const char *weights_path, clip_model_info *out, char *err,
                                        size_t err_len);

/* What a backend request resolves to on this machine, before any engine exists. */
typedef struct clip_backend_info {
  clip_backend backend; /* CLIP_BACKEND_CPU or CLIP_BACKEND_CUDA, never AUTO */
  int device;           /* the CUDA device ordinal asked for; 0 on the CPU */
  char device_name[128];/* CUDA: the device's name (e.g. "NVIDIA H200"); CPU: "cpu" */
  int64_t memory_bytes; /* CUDA: the device's total memory; CPU: 0 */
} clip_backend_info;

/* Resolves `backend` for `device` as clip_engine_create does, without creating an engine,
   allocating device memory or reading weights:
     AUTO  -> CUDA when this library was built with CUDA and CUDA device `device` can run
              it (a driver, the device, compute capability 8.0+), else CPU with CLIP_OK (a
              CPU-only build, no driver, no such device, an older device);
     CPU   -> CPU;
     CUDA  -> CUDA under the same conditions, else CLIP_ERR_UNSUPPORTED with the reason in
              err (the message clip_engine_create gives for that device).
   clip_engine_create resolves through this call, so its answer is the engine's backend
   (short of the device failing or being taken meanwhile). Other errors:
   CLIP_ERR_INVALID_ARGUMENT (NULL out, negative device, unknown backend). */
CLIP_API clip_status clip_backend_resolve(clip_backend backend, int device, clip_backend_info *out,
                                          char *err, size_t err_len);

#ifdef __cplusplus
}
#endif
#endif /* CLIPENGINE_H */
