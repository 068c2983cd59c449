/* decode.cuh: JPEG decoding on the device for clip_engine_embed_encoded (decode.cu): nvJPEG
   (the GPU's hardware JPEG engines through the batched API where the device has them, the
   decoupled hybrid decoder otherwise) into a device arena, then the device resize of
   cuda/resize.cu straight from there; per-image fallback to the CPU decoder (jpeg.c). */
#ifndef CLIP_CUDA_DECODE_CUH
#define CLIP_CUDA_DECODE_CUH
#include "backend.cuh"

/* Which decoder the CUDA backend uses for JPEGs (clip_cuda_set_jpeg_decoder). */
enum {
  CLIP_JPEG_AUTO = 0,       /* hardware engines for what they take, the hybrid decoder for the rest */
  CLIP_JPEG_HYBRID = 1,     /* nvJPEG's hybrid decoder only (Huffman on the CPU, IDCT on the GPU) */
  CLIP_JPEG_GPU_HYBRID = 2, /* nvJPEG's GPU-hybrid decoder only (Huffman on the GPU too) */
  CLIP_JPEG_CPU = 3         /* libjpeg-turbo on the CPU for every image */
};

/* The decode arena's bytes for max_batch (decoded RGB of a chunk of images and their resize
   tables), and the estimate clip_decode_device_bytes reports (arena + nvJPEG's own buffers). */
size_t clip_jpeg_arena_bytes(int max_batch);
int64_t clip_jpeg_device_bytes(int max_batch);

/* Sets up nvJPEG for the engine (handles, states, buffers, the arena, a decode stream).
   nvJPEG failing to start is not an error: st->jpeg stays NULL, every JPEG goes to the CPU
   decoder, and st->jpeg_note says why. CLIP_ERR_OUT_OF_MEMORY when the arena cannot be had. */
clip_status clip_jpeg_init(clip_engine *e, cuda_state *st);
void clip_jpeg_destroy(cuda_state *st);

/* Decodes the n encoded images into input slots 0..n-1 (slot i = image i; a failed image's
   slot is zeroed), on the device where it can and on the CPU otherwise; sets per_image, the
   per-image reasons and the decode counters. The forward is the caller's. */
clip_status clip_jpeg_decode_to_input(clip_engine *e, cuda_state *st, const uint8_t *const *data,
                                      const size_t *sizes, int n, clip_status *per_image);

/* One line describing the decoder (for clip_cuda_jpeg_info). */
void clip_jpeg_describe(cuda_state *st, char *buf, size_t len);

#endif /* CLIP_CUDA_DECODE_CUH */
