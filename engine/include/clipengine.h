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
  CLIP_ERR_UNSUPPORTED = -6,
  /* Per-image statuses of clip_engine_embed_encoded only (no call returns them): */
  CLIP_ERR_IMAGE_CORRUPT = -7,   /* the JPEG data is damaged or not decodable */
  CLIP_ERR_IMAGE_TRUNCATED = -8, /* the JPEG data ends early */
  CLIP_ERR_IMAGE_TOO_LARGE = -9  /* more pixels than clip_decode_options.max_pixels allows */
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

/* ---- encoded images in (JPEG) ---- */

/* n encoded images -> decode -> the preprocessing and forward of clip_engine_embed_images ->
   out[n * embed_dim] float32 (NOT L2-normalized), with a status per image in per_image[n].
   data[i] points at sizes[i] bytes of image i (the caller's; never kept after the call).

   Formats: baseline and progressive JPEG (8-bit; JFIF/Exif/Adobe; 4:4:4, 4:2:2, 4:2:0, 4:4:0,
   4:1:1, restart markers), YCbCr and RGB, grayscale (replicated to R=G=B, as Pillow's L ->
   RGB), CMYK and YCCK (Adobe-inverted, converted to RGB as Pillow converts "CMYK;I" JPEGs).
   Anything else (PNG, GIF, WebP, an empty buffer, ...) is CLIP_ERR_UNSUPPORTED for that
   image: callers decode other formats themselves and use clip_engine_embed_images.
   Decoding is exactly libjpeg-turbo's defaults (accurate integer DCT, fancy upsampling, full
   size), the bytes Pillow's decoder gives: for every image this call decodes, its embedding
   equals clip_engine_embed_images of the same pixels (bit for bit on the CPU backend, whose
   forwards take the good images in slices of 16 as embed_images does; on the CUDA backend
   JPEGs are decoded on the GPU by nvJPEG where it can, and a device-decoded image may differ
   from libjpeg-turbo's by IDCT, upsampling and colour rounding: see clipengine_cuda.h for
   which decoder takes which image and how to choose). EXIF orientation is ignored unless
   clip_decode_options.apply_exif_orientation is set (CLIP's reference preprocessing ignores
   it). Progressive JPEGs with more than 500 scans are refused (corrupt) so a crafted file
   cannot keep the engine busy. Damage libjpeg only warns about is accepted when the end
   marker is there (as Pillow accepts it) and every row was decoded: TurboJPEG reports a
   fatal error that follows a warning as a warning, without writing the rows after it; such
   an image is CLIP_ERR_IMAGE_CORRUPT ("decoding stopped before the last row"), as Pillow
   refuses it (a warned image is decoded twice more to tell the two apart).

   per_image[i] is one of
     CLIP_OK                   decoded and embedded; row i of out is its embedding
     CLIP_ERR_UNSUPPORTED      not a JPEG, a JPEG this build cannot decode (no libturbojpeg),
                               or an image too elongated to resize (as embed_images refuses)
     CLIP_ERR_IMAGE_CORRUPT    damaged or undecodable JPEG data (libjpeg's message says why;
                               12-bit JPEGs land here too, as in the Go decoder)
     CLIP_ERR_IMAGE_TRUNCATED  the data ends before the image does (Pillow: "image file is
                               truncated"); also a damaged file without its end marker
     CLIP_ERR_IMAGE_TOO_LARGE  width * height above clip_decode_options.max_pixels
     CLIP_ERR_OUT_OF_MEMORY    no memory to decode this image
   A failed image never fails the others: its row of out is all zeros and the rest of the
   batch is embedded. clip_engine_image_error(e, i) gives the failed image's reason as text.
   The return value is for the call as a whole: CLIP_OK when the batch ran (whatever the
   per-image statuses; 0 good images is CLIP_OK), CLIP_ERR_INVALID_ARGUMENT (NULL arrays with
   n > 0, a NULL data[i] with sizes[i] > 0, n > max_batch), or an engine failure
   (CLIP_ERR_BACKEND, CLIP_ERR_OUT_OF_MEMORY for the batch's buffers) with
   clip_engine_last_error set; after an engine failure neither out nor per_image is
   meaningful. Thread-safety: as every call on an engine, one thread at a time per engine;
   the CPU backend decodes the batch on the engine's `threads` threads. */
CLIP_API clip_status clip_engine_embed_encoded(clip_engine *e, const uint8_t *const *data,
                                               const size_t *sizes, int n, float *out,
                                               clip_status *per_image);

/* The reason image i of the last clip_engine_embed_encoded call failed, as the Go decoder
   words it ("truncated jpeg", "corrupt jpeg: Bogus marker length", "too many pixels
   (30000x30000)", "not a jpeg (png)"); "" for an image that succeeded, an index out of range,
   or a NULL engine. Valid until the next clip_engine_embed_encoded call on e. */
CLIP_API const char *clip_engine_image_error(const clip_engine *e, int i);

/* How clip_engine_embed_encoded decodes. The zero value is the default. */
typedef struct clip_decode_options {
  int64_t max_pixels;         /* refuse images with more pixels before decoding them:
                                 0 = 89478485 (Pillow's Image.MAX_IMAGE_PIXELS), < 0 = no limit */
  int apply_exif_orientation; /* 1: rotate/flip by the EXIF orientation tag as Pillow's
                                 ImageOps.exif_transpose; 0: ignore it (CLIP's preprocessing) */
} clip_decode_options;

/* Sets e's decode options for the following clip_engine_embed_encoded calls.
   CLIP_ERR_INVALID_ARGUMENT for a NULL engine or options, or apply_exif_orientation not 0/1. */
CLIP_API clip_status clip_engine_set_decode_options(clip_engine *e, const clip_decode_options *o);

/* Counters of clip_engine_embed_encoded since the engine was created. Every image passed is
   counted once: device_decoded + cpu_decoded + failed = images passed. */
typedef struct clip_decode_stats {
  int64_t device_decoded;  /* decoded on the GPU by nvJPEG (CUDA backend) */
  int64_t hardware_decoded;/* of device_decoded: by the GPU's hardware JPEG engine */
  int64_t cpu_decoded;     /* decoded by the CPU decoder (libjpeg-turbo): every image of the
                              CPU backend, and the CUDA backend's per-image fallbacks */
  int64_t failed;          /* per_image status not CLIP_OK */
  int64_t cpu_fallbacks;   /* of cpu_decoded + failed: images the CUDA backend handed to the
                              CPU decoder (what the hardware engines do not take, CMYK/YCCK,
                              no end marker, an EXIF orientation to apply, too large for the
                              decode arena, nvJPEG refusals; see clipengine_cuda.h); 0 on the
                              CPU backend */
} clip_decode_stats;

/* Fills *out with e's counters. CLIP_ERR_INVALID_ARGUMENT for a NULL engine or out. */
CLIP_API clip_status clip_engine_decode_stats(const clip_engine *e, clip_decode_stats *out);

/* Device memory (bytes) that device JPEG decoding adds to a CUDA engine created with this
   max_batch (0 = the engine default): the decode arena, allocated at create (max_batch x
   1024x768x3 bytes, within 64 MB .. 1 GB; images of a batch are decoded in chunks that fit
   it, and an image larger than it goes to the CPU decoder), plus an upper estimate of
   nvJPEG's own buffers, which it allocates as images need them (coefficients and bitstreams
   of a chunk: at most two arenas) and 32 MB of fixed state. The CUDA engine's create-time
   memory check includes it; memory planners add it to the weights and activations. 0 for a
   build without the CUDA backend; the value does not depend on a device being present.
   CLIP_ERR_INVALID_ARGUMENT for a NULL out or a negative max_batch. */
CLIP_API clip_status clip_decode_device_bytes(int max_batch, int64_t *out);

/* ---- the text tokenizer ---- */

/* CLIP's byte-level BPE tokenizer: text -> the context_length (77) ids the text tower reads.

   What it computes, exactly (tests/reference/tokenizer_ref.py is the same algorithm in
   Python, and the tests compare the two id for id): OpenAI's SimpleTokenizer.encode
   (clip/simple_tokenizer.py) with ftfy.fix_text replaced by unicodedata.normalize("NFC"):
     NFC; html.unescape twice; str.strip(); regex \s+ -> " "; str.strip(); str.lower();
     regex.findall of <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|
       [\p{N}]|[^\s\p{L}\p{N}]+ (IGNORECASE); each piece's UTF-8 bytes through
       bytes_to_unicode, "</w>" on the last symbol, merged by merges.txt rank; a piece that is
       exactly <|startoftext|> or <|endoftext|> is that token;
     then clip.tokenize(truncate=True): [start] + ids + [end], cut so the end token stays
     last, zero-padded.
   Character classes and case are Python's for every code point: str.lower (full mappings,
   U+0130 -> "i\u0307", the final sigma), str.isspace, NFC from Python 3.11's unicodedata
   (Unicode 14.0); \p{L}, \p{N}, \s from the `regex` module 2022.10.31 (Unicode 15.0); the
   HTML5 entities and numeric-reference rules of Python 3.11's html module.

   Where this differs from the tokenizers people run (all agree on text that ftfy leaves
   alone apart from NFC and that has no HTML entity, which covers ordinary captions):
   - OpenAI's SimpleTokenizer with ftfy (6.x, whose fix_text ends in NFC; ftfy 5 used NFKC):
     fix_text also uncurls quotes (U+2018..U+201B -> ', U+201C..U+201F -> "; so "don\u2019t"
     is don + 't there, don + \u2019 + t here), splits Latin ligatures (U+FB01 -> fi),
     narrows full-width forms (U+FF01..U+FF5E -> ASCII), repairs mojibake, removes control
     and terminal-escape characters, and unescapes HTML entities itself when the text has
     no '<' (a third unescape: &amp;amp;amp; differs). None of these are done here.
   - Hugging Face CLIPTokenizer (slow) with ftfy: no html.unescape at all (only ftfy's); a
     special token written in the text is split out before the pattern runs ("!<|endoftext|>"
     is ! + <|endoftext|> there, the pieces !<| endoftext |> here).
     Without ftfy it uses BasicTokenizer instead: control characters dropped, spaces put
     around CJK ideographs (which changes the BPE of mixed CJK/Latin runs), NFC, lower-case,
     no HTML unescaping. It maps a token missing from vocab.json to <|endoftext|>; here
     clip_tokenizer_create refuses such files instead.
   - Hugging Face CLIPTokenizerFast (tokenizers): NFC, \s+ -> " ", lower-case, then the same
     pattern; no HTML unescaping, no ftfy.
   - merges.txt: the first line is skipped only when it starts with "#version" (Hugging
     Face always skips it); every pair line is used (OpenAI and Hugging Face take 48,894),
     which is the whole file for CLIP's vocabulary.
   - Python raises for a numeric reference of more than 4,300 digits; here it is U+FFFD. */
typedef struct clip_tokenizer clip_tokenizer; /* opaque; immutable after create, usable from many threads */

/* vocab_json: the path of a Hugging Face vocab.json (token -> id); merges_txt: the path of its
   merges.txt ("#version" first line optional). The special tokens are <|startoftext|> and
   <|endoftext|> from the vocabulary. Errors (message in err, may be NULL):
   CLIP_ERR_INVALID_ARGUMENT, CLIP_ERR_IO (a file cannot be read), CLIP_ERR_BAD_WEIGHTS (not
   a CLIP byte-level BPE vocabulary: no special tokens, a byte token missing, a merge whose
   result the vocabulary lacks), CLIP_ERR_OUT_OF_MEMORY. */
CLIP_API clip_status clip_tokenizer_create(const char *vocab_json, const char *merges_txt,
                                           clip_tokenizer **out, char *err, size_t err_len);
/* Finds the vocabulary beside weights: a folder (or the folder of a .safetensors file)
   holding vocab.json + merges.txt (what `clipd weights fetch` downloads); CLIP_ERR_IO saying
   which file is missing where. Otherwise as clip_tokenizer_create. */
CLIP_API clip_status clip_tokenizer_open(const char *weights_path, clip_tokenizer **out,
                                         char *err, size_t err_len);
CLIP_API void clip_tokenizer_destroy(clip_tokenizer *t); /* NULL is fine */
/* UTF-8 text (len bytes; may hold NULs) -> ids[context_length]: start token, BPE ids
   (truncated so that the end token still fits), end token, zeros. *n_tokens (may be NULL)
   gets the BPE token count before truncation (so callers can say a text was cut: it was
   when *n_tokens > context_length - 2). Errors: CLIP_ERR_INVALID_ARGUMENT (NULL t or ids,
   NULL text with len > 0, context_length < 2, text that is not valid UTF-8: overlong forms,
   surrogates and code points past U+10FFFF included), CLIP_ERR_OUT_OF_MEMORY; ids are then
   not written. Cost: linear in the text apart from BPE, n log n in a piece's length. */
CLIP_API clip_status clip_tokenize(const clip_tokenizer *t, const char *text, size_t len,
                                   int32_t *ids, int context_length, int *n_tokens);

/* ---- text tower (CLIP's encode_text) ---- */

/* The text tower's shape. Every CLIP checkpoint carries one: OpenAI/open_clip names
   (token_embedding.weight, positional_embedding, transformer.resblocks.N.*, ln_final,
   text_projection beside visual.*) or Hugging Face names (text_model.*, text_projection.weight).
   Its config comes from the shapes plus the same config file as the vision tower's (Hugging Face
   config.json text_config; open_clip_config.json model_cfg.text_cfg and quick_gelu); without
   one, heads = width/64 and QuickGELU. */
typedef struct clip_text_info {
  int context_length, vocab_size, width, layers, heads, embed_dim;
  int quick_gelu; /* 1: x*sigmoid(1.702x) (OpenAI); 0: exact erf GELU */
} clip_text_info;

/* The text tower of e's weights. CLIP_ERR_UNSUPPORTED when the weights have no text tower (a
   vision-only file) or one this library cannot run (the reason in clip_engine_last_error);
   CLIP_ERR_INVALID_ARGUMENT for NULL arguments. */
CLIP_API clip_status clip_engine_text_info(const clip_engine *e, clip_text_info *out);

/* n token sequences, each context_length int32 ids (start token, BPE ids, end token, then 0s,
   as clip_tokenize writes them) -> out[n * embed_dim] float32, NOT L2-normalized (same as
   model.encode_text): token + positional embedding, the pre-LN blocks under a causal mask,
   ln_final, and the state at each sequence's end token, which is taken to be the position of
   its largest id (the first, if it repeats; OpenAI's text.argmax(-1)), @ text_projection.
   n <= max_batch. An id outside [0, vocab_size) is CLIP_ERR_INVALID_ARGUMENT (naming the
   sequence and position); weights without a text tower give CLIP_ERR_UNSUPPORTED. Rows that
   overflow hold NaN/Inf, as in clip_engine_embed_images. One thread at a time per engine.
   clip_engine_create checks the text tower but converts it only here, at the first call (and
   the CUDA backend uploads it then), so engines that only embed images hold no copy; that
   first call reads the weights file again and fails with CLIP_ERR_IO if the file changed
   since create. */
CLIP_API clip_status clip_engine_embed_tokens(clip_engine *e, const int32_t *tokens, int n,
                                              float *out);

/* The text tower's config of a weights file without building an engine, as clip_weights_probe
   (the same files, checks and messages: a file that probes CLIP_OK loads). CLIP_ERR_UNSUPPORTED
   with the reason in err when the file has no text tower this library can run. */
CLIP_API clip_status clip_weights_probe_text(const char *weights_path, clip_text_info *out,
                                             char *err, size_t err_len);

#ifdef __cplusplus
}
#endif
#endif /* CLIPENGINE_H */
