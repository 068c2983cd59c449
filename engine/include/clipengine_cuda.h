/* clipengine_cuda.h: the CUDA backend's extras, beside clipengine.h (as ggml-cuda.h is beside
   ggml.h): debug and measurement entry points for the GPU check (bench/gpu-check.sh,
   tests/reference/gpu_check.py), the C tests and kernel work. They are not part of the
   fixed contract of clipengine.h and may change with CLIP_API_VERSION.

   Only a libclipengine built with the CUDA backend exports these symbols (`make install`
   installs this header only then); a program that must also run on a CPU-only build looks
   them up with dlsym instead of linking them. Each call returns CLIP_ERR_UNSUPPORTED, with
   clip_engine_last_error saying so, when the engine does not run on the CUDA backend, and
   CLIP_ERR_INVALID_ARGUMENT for a NULL engine. */
#ifndef CLIPENGINE_CUDA_H
#define CLIPENGINE_CUDA_H

#include "clipengine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The device's uint8 preprocessing (resize + center crop, before /255) of n images (n <=
   max_batch) -> out[n * S * S * 3], interleaved RGB like clip_preprocess_image_u8. */
CLIP_API clip_status clip_cuda_debug_preprocess_u8(clip_engine *e, const clip_image *imgs, int n,
                                                   uint8_t *out);

/* Runs the forward alone (no transfers) on the device input buffer as the last embed call
   left it, warmup + iters times for batch n, and returns the median per-forward time in ms
   from CUDA events. Call embed_pixels/embed_images with n real images first. Uses the CUDA
   graph for n when graphs are on (the first warm-up captures it). */
CLIP_API clip_status clip_cuda_debug_time_forward(clip_engine *e, int n, int warmup, int iters,
                                                  float *median_ms);

/* With CLIP_CUDA_PROFILE=1 in the environment at create: per-op-class device time summed
   over the forwards since the last read, as text lines "name ms count\n" into buf; resets the
   sums. Without it: an empty string. */
CLIP_API clip_status clip_cuda_debug_profile(clip_engine *e, char *buf, size_t len);

/* The forward of n float32 images [n,3,S,S] (as embed_pixels takes them), stopped at a stage,
   for locating a numerical difference (always direct launches, never a graph):
     stage 0            out[n*T*W]: tokens after patch embedding + class token + positions
     stage 1            out[n*T*W]: after ln_pre (the residual stream's start)
     stage 2 + l        out[n*T*W]: the residual stream after block l (l < layers)
     stage layers + 2   out[n*W]:   ln_post of the class tokens
     stage layers + 3   out[n*E]:   the embeddings (the same floats embed_pixels returns)
   Values are the backend's fp32 residual stream whatever the compute precision. */
CLIP_API clip_status clip_cuda_debug_forward_stage(clip_engine *e, const float *pixels, int n, int stage,
                                                   float *out);

/* CUDA graphs of the forward: enable 1 turns them on (unless CLIP_CUDA_PROFILE is set), 0 off
   (and drops the cached graphs), -1 leaves them as they are. When buf is not NULL, writes a
   one-line status: on/off, captures, replays, the cached batch sizes and why graphs are off
   (a failed capture or instantiate turns them off for the engine's life). */
CLIP_API clip_status clip_cuda_debug_graphs(clip_engine *e, int enable, char *buf, size_t len);

/* The JPEG decoder clip_engine_embed_encoded uses on this engine (for the GPU check's
   comparisons and per-backend timings; the default, 0, is what users want):
     0  auto: on a GPU with hardware JPEG engines (A100/A30/H100/H200...), nvJPEG's
        hardware decoder for the baseline JPEGs they take and libjpeg-turbo on the CPU (all
        the engine's threads) for the rest (progressive, 4:1:1, an EXIF orientation tag); on a
        GPU without them, nvJPEG's GPU-hybrid decoder (a failed hardware batch is retried
        image by image on the hybrid decoder)
     1  nvJPEG's hybrid decoder for every device-decodable JPEG
     2  nvJPEG's GPU-hybrid decoder (Huffman on the GPU too) for every device-decodable JPEG
     3  libjpeg-turbo on the CPU for every JPEG (then the device resize): the CPU backend's
        pixels, so embeddings match embed_images after the Go decoder up to the CUDA forward
   Whatever the mode, these go to the CPU decoder, one by one (counted in
   clip_decode_stats.cpu_fallbacks): CMYK/YCCK and Adobe-RGB JPEGs (Pillow's CMYK conversion,
   which nvJPEG does not do), a JPEG without its end marker (the CPU decoder decides
   truncation as the Go decoder does), an EXIF orientation to apply
   (clip_decode_options.apply_exif_orientation), an image too large for the decode arena,
   and anything nvJPEG refuses. A device-decoded image can differ from the CPU decoder's by
   nvJPEG's IDCT, upsampling and colour-conversion rounding; and a JPEG whose entropy-coded
   data is damaged while its headers and end marker are intact may be decoded by nvJPEG where
   the CPU decoder refuses it (or the reverse: then it falls back and fails alike).
   CLIP_ERR_INVALID_ARGUMENT for another mode. */
CLIP_API clip_status clip_cuda_set_jpeg_decoder(clip_engine *e, int mode);

/* The JPEG half of clip_engine_embed_encoded alone, for timing the decoders: decodes the n
   images (n <= max_batch) as embed_encoded does (the mode of clip_cuda_set_jpeg_decoder, the
   decode options, the counters of clip_engine_decode_stats, per_image and
   clip_engine_image_error) and resizes them into the device input buffer, then waits for the
   device; no forward, no embeddings. */
CLIP_API clip_status clip_cuda_debug_decode(clip_engine *e, const uint8_t *const *data,
                                            const size_t *sizes, int n, clip_status *per_image);

/* One line on the engine's JPEG decoding: the mode, the hardware engines nvJPEG reports, the
   decode arena's size; or why nvJPEG is off (every JPEG then decodes on the CPU). */
CLIP_API clip_status clip_cuda_jpeg_info(clip_engine *e, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* CLIPENGINE_CUDA_H */
