/* decode.cu: the CUDA backend's JPEG path for clip_engine_embed_encoded.

   Per call:
     1. host, on the pool: every image's header through the CPU decoder's own header reader
        (jpeg.c: the same failures, the same pixel limit, the colour space), then a route:
          device    YCbCr or grayscale, 8-bit, its end marker present, no EXIF transpose
                    asked for, small enough for the arena;
          cpu       everything else (CMYK/YCCK/Adobe RGB, a missing end marker, which the CPU
                    decoder calls truncated, EXIF orientation to apply, a huge image);
          failed    the header already failed (corrupt, too many pixels, not a JPEG).
        In auto mode on a GPU with hardware JPEG engines, device images they take
        (nvjpegDecodeBatchedSupported: baseline, not 4:1:0/4:1:1) go to the batched
        hardware decode and the rest to the CPU decoder (all the engine's threads, exact);
        on a GPU without them, to nvJPEG's decoupled GPU-hybrid decoder. The other modes
        (clip_cuda_set_jpeg_decoder) force one decoder, for measuring.
     2. device, in chunks that fit the arena: nvJPEG decodes into the arena (interleaved RGB,
        full size) on the decode stream; the resize tables follow on the same stream; the
        compute stream waits for both and runs the device resize (cuda/resize.cu) straight
        from the arena into the image's input slot. The next chunk's decode waits only for
        the previous chunk's resize, so chunk k+1 decodes while chunk k resizes. An image
        nvJPEG refuses (a hybrid host-phase error, a failed hardware batch is retried on the
        hybrid decoder first) joins the CPU list.
     3. host, while the device works: the CPU list decoded by libjpeg-turbo (per-image
        failures there are final), then resized on the device through the staging path.
   The forward (backend.cu) runs on the whole batch afterwards: one engine call is
   synchronous, so the overlap is within a call (decode of chunk k+1 with the resize of chunk
   k, CPU fallbacks with the device decodes), not across calls.

   Exactness: the CPU decoder is the Go decoder's twin; nvJPEG's IDCT, upsampling and colour
   conversion are its own, so a device-decoded image can differ from it by rounding (the GPU
   check measures by how much). Device memory: the arena (clip_jpeg_arena_bytes) at create,
   plus nvJPEG's internal buffers, which grow with the largest chunk decoded (estimated in
   clip_jpeg_device_bytes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <new>
#include <vector>

#include <nvjpeg.h>

#include "backend.cuh"
#include "decode.cuh"
#include "jpeg.h"
#include "resize_plan.cuh"
#include "staging.cuh"

#define ARENA_MIN ((size_t)64 << 20)
#define ARENA_MAX ((size_t)1 << 30)
#define ARENA_PER_IMAGE ((size_t)1024 * 768 * 3) /* a web original, decoded */

size_t clip_jpeg_arena_bytes(int max_batch) {
  const size_t mb = max_batch > 0 ? (size_t)max_batch : 64; /* engine.c's default */
  size_t a = mb * ARENA_PER_IMAGE;
  if (a < ARENA_MIN) a = ARENA_MIN;
  if (a > ARENA_MAX) a = ARENA_MAX;
  return clip_align_up(a, ALIGN);
}

/* nvJPEG keeps, per image of a chunk in flight, its coefficients (int16 per sample: at most
   6 bytes a pixel at 4:4:4, 3 at 4:2:0) and the bitstream; a chunk's decoded RGB is at most the
   arena (3 bytes a pixel), so its buffers stay under two arenas. Plus ~32 MB of fixed state
   (handles, the hybrid decoder's device buffer for one image, the hardware decoder's queues). */
int64_t clip_jpeg_device_bytes(int max_batch) {
  return (int64_t)(3 * clip_jpeg_arena_bytes(max_batch) + ((size_t)32 << 20));
}

/* clip_decode_device_bytes (encoded.c) for a build with the CUDA backend. */
extern "C" int64_t clip_cuda_decode_device_bytes(int max_batch) {
  return clip_jpeg_device_bytes(max_batch);
}

struct clip_jpeg_dev {
  nvjpegHandle_t hw;            /* NULL: no hardware JPEG engine (or CLIP_JPEG_* says no) */
  nvjpegJpegState_t hw_state;
  nvjpegJpegStream_t hw_parse;  /* header parse for nvjpegDecodeBatchedSupported */
  unsigned hw_engines, hw_cores;
  nvjpegHandle_t h;             /* the decoupled decoders */
  nvjpegJpegDecoder_t dec[2];   /* [0] NVJPEG_BACKEND_HYBRID, [1] NVJPEG_BACKEND_GPU_HYBRID */
  nvjpegJpegState_t state[2];
  nvjpegBufferPinned_t pinned[2]; /* alternated between consecutive images */
  nvjpegBufferDevice_t devbuf;
  nvjpegJpegStream_t jstream[2];
  nvjpegDecodeParams_t params;  /* interleaved RGB, EXIF orientation ignored */
  cudaEvent_t pinned_free[2];   /* the device phase that read pinned[k] finished */
  cudaStream_t stream;          /* decodes and table uploads */
  cudaEvent_t decoded;          /* a chunk's decodes and tables are on the device */
  cudaEvent_t arena_free;       /* the resize reading a chunk's arena finished */
  cudaEvent_t tables_copied[2]; /* tables_host[k] was uploaded: the host may rewrite it */
  uint8_t *arena;               /* device: [descs | tables | decoded images] of one chunk */
  size_t arena_cap;
  uint8_t *tables_host[2];      /* pinned, tables_cap bytes each, alternated between chunks so
                                   the host packs chunk k+1 while chunk k's upload waits for
                                   its decodes */
  size_t tables_cap;
  unsigned chunks;              /* chunks so far: which tables_host is next */
};

static const char *nvjpeg_status_name(nvjpegStatus_t s) {
  switch (s) {
  case NVJPEG_STATUS_SUCCESS: return "success";
  case NVJPEG_STATUS_NOT_INITIALIZED: return "not initialized";
  case NVJPEG_STATUS_INVALID_PARAMETER: return "invalid parameter";
  case NVJPEG_STATUS_BAD_JPEG: return "bad jpeg";
  case NVJPEG_STATUS_JPEG_NOT_SUPPORTED: return "jpeg not supported";
  case NVJPEG_STATUS_ALLOCATOR_FAILURE: return "allocator failure";
  case NVJPEG_STATUS_EXECUTION_FAILED: return "execution failed";
  case NVJPEG_STATUS_ARCH_MISMATCH: return "arch mismatch";
  case NVJPEG_STATUS_INTERNAL_ERROR: return "internal error";
  case NVJPEG_STATUS_IMPLEMENTATION_NOT_SUPPORTED: return "implementation not supported";
  default: return "unknown status";
  }
}

#define NJ_TRY(e, call)                                                                       \
  do {                                                                                        \
    nvjpegStatus_t nj_ = (call);                                                              \
    if (nj_ != NVJPEG_STATUS_SUCCESS)                                                         \
      return clip_set_error((e), nj_ == NVJPEG_STATUS_ALLOCATOR_FAILURE ? CLIP_ERR_OUT_OF_MEMORY  \
                                                                       : CLIP_ERR_BACKEND,    \
                            "decode.cu:%d: %s: nvjpeg %s (%d)", __LINE__, #call,              \
                            nvjpeg_status_name(nj_), (int)nj_);                               \
  } while (0)

void clip_jpeg_destroy(cuda_state *st) {
  clip_jpeg_dev *j = st->jpeg;
  if (!j) return;
  if (j->stream) cudaStreamSynchronize(j->stream);
  for (int k = 0; k < 2; k++) {
    if (j->jstream[k]) nvjpegJpegStreamDestroy(j->jstream[k]);
    if (j->state[k]) nvjpegJpegStateDestroy(j->state[k]);
    if (j->dec[k]) nvjpegDecoderDestroy(j->dec[k]);
    if (j->pinned[k]) nvjpegBufferPinnedDestroy(j->pinned[k]);
    if (j->pinned_free[k]) cudaEventDestroy(j->pinned_free[k]);
  }
  if (j->devbuf) nvjpegBufferDeviceDestroy(j->devbuf);
  if (j->params) nvjpegDecodeParamsDestroy(j->params);
  if (j->hw_parse) nvjpegJpegStreamDestroy(j->hw_parse);
  if (j->hw_state) nvjpegJpegStateDestroy(j->hw_state);
  if (j->hw) nvjpegDestroy(j->hw);
  if (j->h) nvjpegDestroy(j->h);
  if (j->decoded) cudaEventDestroy(j->decoded);
  if (j->arena_free) cudaEventDestroy(j->arena_free);
  for (int k = 0; k < 2; k++) {
    if (j->tables_copied[k]) cudaEventDestroy(j->tables_copied[k]);
    if (j->tables_host[k]) cudaFreeHost(j->tables_host[k]);
  }
  if (j->stream) cudaStreamDestroy(j->stream);
  if (j->arena) cudaFree(j->arena);
  cudaGetLastError();
  delete j;
  st->jpeg = NULL;
}

/* Everything but the arena; on failure st->jpeg_note says what failed. */
static clip_status init_nvjpeg(clip_engine *e, clip_jpeg_dev *j) {
  /* The hardware engines (A100, A30, H100, H200...): creating a handle with the hardware
     backend fails on a GPU without them. */
  if (nvjpegCreateEx(NVJPEG_BACKEND_HARDWARE, NULL, NULL, NVJPEG_FLAGS_DEFAULT, &j->hw) ==
      NVJPEG_STATUS_SUCCESS) {
    if (nvjpegJpegStateCreate(j->hw, &j->hw_state) != NVJPEG_STATUS_SUCCESS ||
        nvjpegJpegStreamCreate(j->hw, &j->hw_parse) != NVJPEG_STATUS_SUCCESS) {
      if (j->hw_parse) nvjpegJpegStreamDestroy(j->hw_parse);
      if (j->hw_state) nvjpegJpegStateDestroy(j->hw_state);
      nvjpegDestroy(j->hw);
      j->hw = NULL;
      j->hw_state = NULL;
      j->hw_parse = NULL;
    } else {
      nvjpegGetHardwareDecoderInfo(j->hw, &j->hw_engines, &j->hw_cores);
    }
  } else {
    j->hw = NULL;
  }
  NJ_TRY(e, nvjpegCreateEx(NVJPEG_BACKEND_DEFAULT, NULL, NULL, NVJPEG_FLAGS_DEFAULT, &j->h));
  const nvjpegBackend_t kinds[2] = {NVJPEG_BACKEND_HYBRID, NVJPEG_BACKEND_GPU_HYBRID};
  NJ_TRY(e, nvjpegBufferDeviceCreate(j->h, NULL, &j->devbuf));
  for (int k = 0; k < 2; k++) {
    NJ_TRY(e, nvjpegDecoderCreate(j->h, kinds[k], &j->dec[k]));
    NJ_TRY(e, nvjpegDecoderStateCreate(j->h, j->dec[k], &j->state[k]));
    NJ_TRY(e, nvjpegStateAttachDeviceBuffer(j->state[k], j->devbuf));
    NJ_TRY(e, nvjpegBufferPinnedCreate(j->h, NULL, &j->pinned[k]));
    NJ_TRY(e, nvjpegJpegStreamCreate(j->h, &j->jstream[k]));
  }
  NJ_TRY(e, nvjpegDecodeParamsCreate(j->h, &j->params));
  NJ_TRY(e, nvjpegDecodeParamsSetOutputFormat(j->params, NVJPEG_OUTPUT_RGBI));
  /* Best effort: CMYK never reaches nvJPEG (routed to the CPU), and NORMAL is the default. */
  nvjpegDecodeParamsSetAllowCMYK(j->params, 0);
  nvjpegDecodeParamsSetExifOrientation(j->params, NVJPEG_ORIENTATION_NORMAL);
  return CLIP_OK;
}

clip_status clip_jpeg_init(clip_engine *e, cuda_state *st) {
  st->jpeg = NULL;
  st->jpeg_mode = CLIP_JPEG_AUTO;
  clip_jpeg_dev *j = new (std::nothrow) clip_jpeg_dev();
  if (!j) return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY, "cuda: out of host memory");
  st->jpeg = j;
  char saved[CLIP_ERR_LEN];
  snprintf(saved, sizeof saved, "%s", e->last_error);
  if (init_nvjpeg(e, j) != CLIP_OK) {
    /* No nvJPEG (a library without it, a failing driver): the CPU decodes every JPEG. */
    snprintf(st->jpeg_note, sizeof st->jpeg_note, "nvjpeg off: %.200s", e->last_error);
    snprintf(e->last_error, sizeof e->last_error, "%s", saved);
    clip_jpeg_destroy(st);
    return CLIP_OK;
  }
  CU_TRY(e, cudaStreamCreateWithFlags(&j->stream, cudaStreamNonBlocking));
  for (int k = 0; k < 2; k++) CU_TRY(e, cudaEventCreateWithFlags(&j->pinned_free[k], cudaEventDisableTiming));
  CU_TRY(e, cudaEventCreateWithFlags(&j->decoded, cudaEventDisableTiming));
  CU_TRY(e, cudaEventCreateWithFlags(&j->arena_free, cudaEventDisableTiming));
  for (int k = 0; k < 2; k++) CU_TRY(e, cudaEventCreateWithFlags(&j->tables_copied[k], cudaEventDisableTiming));
  j->arena_cap = clip_jpeg_arena_bytes(e->max_batch);
  /* The tables of a chunk: a descriptor and 2 * (S*2 + S*taps) int32 per image, taps ~ 4r+1
     for a downscale by r: ~30 KB for a 1024x768 photo at S = 224, ~100 KB for 4000x3000.
     64 KB an image of max_batch, at least 8 MB, at most a quarter of the arena; a chunk is
     closed early when its tables would not fit. */
  size_t tables = (size_t)(e->max_batch > 0 ? e->max_batch : 64) * ((size_t)64 << 10);
  if (tables < ((size_t)8 << 20)) tables = (size_t)8 << 20;
  if (tables > j->arena_cap / 4) tables = j->arena_cap / 4;
  j->tables_cap = clip_align_up(tables, ALIGN);
  cudaError_t err = cudaMalloc((void **)&j->arena, j->arena_cap);
  for (int k = 0; k < 2 && err == cudaSuccess; k++)
    err = cudaHostAlloc((void **)&j->tables_host[k], j->tables_cap, cudaHostAllocDefault);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return clip_set_error(e, err == cudaErrorMemoryAllocation ? CLIP_ERR_OUT_OF_MEMORY : CLIP_ERR_BACKEND,
                          "cuda: the JPEG decode arena (%zu device bytes, 2 x %zu pinned) cannot "
                          "be allocated: %s (lower max_batch)",
                          j->arena_cap, j->tables_cap, cudaGetErrorString(err));
  }
  snprintf(st->jpeg_note, sizeof st->jpeg_note, "nvjpeg %s + hybrid, arena %zu MB",
           j->hw ? "hardware" : "(no hardware engine)", j->arena_cap >> 20);
  return CLIP_OK;
}

void clip_jpeg_describe(cuda_state *st, char *buf, size_t len) {
  static const char *const modes[] = {"auto", "hybrid", "gpu-hybrid", "cpu"};
  clip_jpeg_dev *j = st->jpeg;
  if (!j) {
    snprintf(buf, len, "mode %s; %s", modes[st->jpeg_mode & 3], st->jpeg_note[0] ? st->jpeg_note : "nvjpeg off");
    return;
  }
  snprintf(buf, len, "mode %s; hardware engines %u (cores %u); arena %zu MB; tables 2 x %zu MB",
           modes[st->jpeg_mode & 3], j->hw ? j->hw_engines : 0u, j->hw ? j->hw_cores : 0u,
           j->arena_cap >> 20, j->tables_cap >> 20);
}

/* ---- one call ---- */

enum { ROUTE_FAILED = 0, ROUTE_CPU, ROUTE_HW, ROUTE_HYBRID };

/* A TurboJPEG handle per host thread (the pool's workers and the caller), freed when the
   thread ends (the pool's with the engine). */
struct thread_decoder {
  clip_jpeg_decoder *d = nullptr;
  ~thread_decoder() { clip_jpeg_decoder_free(d); }
};
static thread_local thread_decoder tl_decoder;

static clip_jpeg_decoder *my_decoder() {
  if (!tl_decoder.d) tl_decoder.d = clip_jpeg_decoder_new();
  return tl_decoder.d;
}

struct image_job {
  int route;
  int width, height;
  int orientation; /* EXIF, 0 when none */
  clip_image_plan plan;
  int planned;
  size_t img_off; /* in the arena */
};

/* Decodes chunk images[first..first+m) (their arena offsets assigned) on the decode stream.
   Images nvJPEG refuses get route ROUTE_CPU. */
static clip_status decode_chunk(clip_engine *e, cuda_state *st, const uint8_t *const *data,
                                const size_t *sizes, std::vector<image_job> &jobs,
                                const int *chunk, int m) {
  clip_jpeg_dev *j = st->jpeg;
  std::vector<const unsigned char *> hw_data;
  std::vector<size_t> hw_len;
  std::vector<nvjpegImage_t> hw_out;
  std::vector<int> hw_idx, hy_idx;
  for (int k = 0; k < m; k++) {
    const int i = chunk[k];
    nvjpegImage_t out;
    memset(&out, 0, sizeof out);
    out.channel[0] = j->arena + jobs[i].img_off;
    out.pitch[0] = (size_t)jobs[i].width * 3;
    if (jobs[i].route == ROUTE_HW) {
      hw_data.push_back(data[i]);
      hw_len.push_back(sizes[i]);
      hw_out.push_back(out);
      hw_idx.push_back(i);
    } else {
      hy_idx.push_back(i);
    }
  }
  if (!hw_idx.empty()) {
    nvjpegStatus_t s = nvjpegDecodeBatchedInitialize(j->hw, j->hw_state, (int)hw_idx.size(), 1,
                                                     NVJPEG_OUTPUT_RGBI);
    if (s == NVJPEG_STATUS_SUCCESS)
      s = nvjpegDecodeBatched(j->hw, j->hw_state, hw_data.data(), hw_len.data(), hw_out.data(),
                              j->stream);
    if (s != NVJPEG_STATUS_SUCCESS) {
      /* One bad image fails the hardware batch: decode its images on the hybrid decoder,
         which fails them one by one (into the same arena places, on the same stream). */
      for (int i : hw_idx) {
        jobs[i].route = ROUTE_HYBRID;
        hy_idx.push_back(i);
      }
    }
  }
  /* The decoupled decoder: hybrid when asked for, or for a failed hardware batch's retry;
     GPU-hybrid when asked for, or in auto mode on a GPU without hardware engines. */
  const int which = st->jpeg_mode == CLIP_JPEG_GPU_HYBRID || (st->jpeg_mode == CLIP_JPEG_AUTO && !j->hw) ? 1 : 0;
  for (size_t k = 0; k < hy_idx.size(); k++) {
    const int i = hy_idx[k], b = (int)(k & 1);
    nvjpegImage_t out;
    memset(&out, 0, sizeof out);
    out.channel[0] = j->arena + jobs[i].img_off;
    out.pitch[0] = (size_t)jobs[i].width * 3;
    /* pinned[b] was last read by the device phase of image k-2: wait for it. */
    CU_TRY(e, cudaEventSynchronize(j->pinned_free[b]));
    nvjpegStatus_t s = nvjpegStateAttachPinnedBuffer(j->state[which], j->pinned[b]);
    if (s == NVJPEG_STATUS_SUCCESS)
      s = nvjpegJpegStreamParse(j->h, data[i], sizes[i], 0, 0, j->jstream[b]);
    if (s == NVJPEG_STATUS_SUCCESS)
      s = nvjpegDecodeJpegHost(j->h, j->dec[which], j->state[which], j->params, j->jstream[b]);
    if (s == NVJPEG_STATUS_SUCCESS)
      s = nvjpegDecodeJpegTransferToDevice(j->h, j->dec[which], j->state[which], j->jstream[b],
                                           j->stream);
    if (s == NVJPEG_STATUS_SUCCESS)
      s = nvjpegDecodeJpegDevice(j->h, j->dec[which], j->state[which], &out, j->stream);
    CU_TRY(e, cudaEventRecord(j->pinned_free[b], j->stream));
    if (s != NVJPEG_STATUS_SUCCESS) jobs[i].route = ROUTE_CPU;
  }
  return CLIP_OK;
}

/* Packs the chunk's descriptors and tables (images still ROUTE_HW/HYBRID) into the pinned
   tables buffer, uploads them to the arena's start on the decode stream, and resizes on the
   compute stream once the decodes are done. */
static clip_status resize_chunk(clip_engine *e, cuda_state *st, std::vector<image_job> &jobs,
                                const int *chunk, int m, size_t desc_bytes) {
  clip_jpeg_dev *j = st->jpeg;
  const int S = e->w.cfg.image_size;
  const int t = (int)(j->chunks++ & 1);
  uint8_t *tables_host = j->tables_host[t];
  CU_TRY(e, cudaEventSynchronize(j->tables_copied[t])); /* the upload two chunks ago read it */
  size_t off = desc_bytes, mid = 0, max_mid_pixels = 0;
  int nd = 0;
  clip_resize_desc *descs = (clip_resize_desc *)tables_host;
  for (int k = 0; k < m; k++) {
    image_job &jb = jobs[chunk[k]];
    if (jb.route != ROUTE_HW && jb.route != ROUTE_HYBRID) continue;
    clip_image_plan_pack_tables(&jb.plan, S, tables_host, &off, &mid);
    clip_resize_desc d = jb.plan.d;
    /* The source is the whole decoded image in the arena: rows from y0, pitch width*3. */
    d.x0 = 0;
    d.src_w = jb.width;
    d.src_off = (int64_t)(jb.img_off + (size_t)d.y0 * (size_t)jb.width * 3);
    descs[nd++] = d;
    if ((size_t)d.ny * S > max_mid_pixels) max_mid_pixels = (size_t)d.ny * S;
  }
  if (nd == 0) return CLIP_OK;
  CU_TRY(e, cudaMemcpyAsync(j->arena, tables_host, off, cudaMemcpyHostToDevice, j->stream));
  CU_TRY(e, cudaEventRecord(j->tables_copied[t], j->stream));
  CU_TRY(e, cudaEventRecord(j->decoded, j->stream));
  CU_TRY(e, cudaStreamWaitEvent(st->compute, j->decoded, 0));
  cudaError_t err = clip_resize_launch((const clip_resize_desc *)j->arena, nd, j->arena, st->mid, S,
                                       max_mid_pixels, st->lut, st->input, st->dt, NULL, st->compute);
  if (err != cudaSuccess)
    return clip_set_error(e, CLIP_ERR_BACKEND, "%s:%d: device preprocessing of decoded jpegs: %s",
                          __FILE__, __LINE__, cudaGetErrorString(err));
  CU_TRY(e, cudaEventRecord(j->arena_free, st->compute));
  return CLIP_OK;
}

clip_status clip_jpeg_decode_to_input(clip_engine *e, cuda_state *st, const uint8_t *const *data,
                                      const size_t *sizes, int n, clip_status *per_image) {
  const int S = e->w.cfg.image_size;
  clip_jpeg_dev *j = st->jpeg;
  const int device_ok = j && st->jpeg_mode != CLIP_JPEG_CPU;
  std::vector<image_job> jobs;
  try {
    jobs.resize(n);
  } catch (const std::bad_alloc &) {
    return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY, "embed_encoded: no host memory for %d images", n);
  }

  /* 1. Headers and routes, on the pool. */
  int threads = e->threads < HOST_THREADS_MAX ? e->threads : HOST_THREADS_MAX;
  if (threads < 1) threads = 1;
  /* A chunk of one image: its descriptor and tables, then the image (as the chunking below
     lays it out). */
  const size_t desc_one = clip_align_up(sizeof(clip_resize_desc), ALIGN);
  st->pool->parallel_for(n, threads, [&](int i) {
    image_job &jb = jobs[i];
    jb.route = ROUTE_FAILED;
    jb.planned = 0;
    char msg[CLIP_IMAGE_ERR_LEN] = "";
    int cs = -1;
    clip_jpeg_decoder *d = my_decoder();
    if (!d) {
      per_image[i] = CLIP_ERR_OUT_OF_MEMORY;
      snprintf(e->image_err[i], sizeof e->image_err[i], "out of memory (jpeg decoder)");
      return;
    }
    const clip_status hs = clip_jpeg_header(d, data[i], sizes[i], &e->decode_opt, &jb.width,
                                            &jb.height, &cs, msg, sizeof msg);
    if (hs != CLIP_OK) {
      per_image[i] = hs;
      snprintf(e->image_err[i], sizeof e->image_err[i], "%s", msg);
      return;
    }
    jb.route = ROUTE_CPU;
    if (!device_ok) return;
    if (!clip_jpeg_is_ycc_or_gray(cs) || !clip_jpeg_has_eoi(data[i], sizes[i])) return;
    jb.orientation = clip_jpeg_orientation(data[i], sizes[i]);
    if (e->decode_opt.apply_exif_orientation && jb.orientation > 1) return;
    const clip_image shape = {NULL, jb.width, jb.height, 0};
    if (clip_image_plan_make(&shape, i, S, &jb.plan, NULL, 0) != CLIP_OK) return; /* the CPU path says why */
    jb.planned = 1;
    const size_t img = clip_align_up((size_t)jb.width * jb.height * 3, ALIGN);
    if (img + clip_align_up(desc_one + jb.plan.plan_bytes, ALIGN) > j->arena_cap ||
        desc_one + jb.plan.plan_bytes > j->tables_cap || jb.plan.mid_bytes > st->mid_cap)
      return;
    jb.route = ROUTE_HYBRID;
  });
  /* Auto with hardware engines: what they take goes to them, the rest (progressive, 4:1:1,
     an EXIF orientation: the batched call takes no decode parameters) to the CPU decoder,
     which runs on all the engine's threads and is exact, where the hybrid decoder's host
     phase runs on this one thread. The hardware check parses the header once more
     (nvJPEG's own parser), on this thread (one parse stream). Auto without hardware
     engines keeps the GPU-hybrid decoder. */
  if (device_ok && j->hw && st->jpeg_mode == CLIP_JPEG_AUTO) {
    for (int i = 0; i < n; i++) {
      if (jobs[i].route != ROUTE_HYBRID) continue;
      int unsupported = 1;
      if (jobs[i].orientation <= 1 &&
          nvjpegJpegStreamParseHeader(j->hw, data[i], sizes[i], j->hw_parse) == NVJPEG_STATUS_SUCCESS &&
          nvjpegDecodeBatchedSupported(j->hw, j->hw_parse, &unsupported) == NVJPEG_STATUS_SUCCESS &&
          unsupported == 0)
        jobs[i].route = ROUTE_HW;
      else
        jobs[i].route = ROUTE_CPU;
    }
  }

  /* 2. Device chunks: images in order while the arena, the tables and the intermediate
        hold them. */
  clip_status s = CLIP_OK;
  if (device_ok) {
    std::vector<int> chunk;
    int i = 0;
    while (i < n && s == CLIP_OK) {
      chunk.clear();
      size_t desc_bytes = 0, tables = 0, images = 0, mid = 0;
      for (; i < n; i++) {
        image_job &jb = jobs[i];
        if (jb.route != ROUTE_HW && jb.route != ROUTE_HYBRID) continue;
        const size_t img = clip_align_up((size_t)jb.width * jb.height * 3, ALIGN);
        const size_t nd = clip_align_up((chunk.size() + 1) * sizeof(clip_resize_desc), ALIGN);
        const size_t t = tables + jb.plan.plan_bytes;
        const size_t head = clip_align_up(nd + t, ALIGN);
        if (!chunk.empty() && (head + images + img > j->arena_cap || nd + t > j->tables_cap ||
                               mid + jb.plan.mid_bytes > st->mid_cap || chunk.size() >= 65535))
          break;
        chunk.push_back(i);
        desc_bytes = nd;
        tables = t;
        images += img;
        mid += jb.plan.mid_bytes;
      }
      if (chunk.empty()) break;
      /* Offsets: the images after the descriptors and tables. */
      size_t at = clip_align_up(desc_bytes + tables, ALIGN);
      for (int k : chunk) {
        jobs[k].img_off = at;
        at += clip_align_up((size_t)jobs[k].width * jobs[k].height * 3, ALIGN);
      }
      /* The arena is free once the previous chunk's resize is done. */
      CU_TRY(e, cudaStreamWaitEvent(j->stream, j->arena_free, 0));
      s = decode_chunk(e, st, data, sizes, jobs, chunk.data(), (int)chunk.size());
      if (s == CLIP_OK) s = resize_chunk(e, st, jobs, chunk.data(), (int)chunk.size(), desc_bytes);
    }
  }
  for (int i = 0; i < n; i++)
    if (jobs[i].planned) clip_image_plan_free(&jobs[i].plan);
  if (s != CLIP_OK) return s;
  if (device_ok) {
    /* Whatever the decode stream still holds (a chunk whose every image nvJPEG refused has
       no resize to wait for it) is done before the compute stream goes on: the caller's
       bytes must not be read after the call returns, which syncs the compute stream. */
    CU_TRY(e, cudaEventRecord(j->decoded, j->stream));
    CU_TRY(e, cudaStreamWaitEvent(st->compute, j->decoded, 0));
  }

  /* 3. The CPU list, decoded while the device works, then resized through staging; in
        windows, so that only a window's decoded images are in host memory at once (the
        staging path copies them into pinned buffers before it returns). */
  std::vector<int> cpu;
  for (int i = 0; i < n; i++)
    if (jobs[i].route == ROUTE_CPU) cpu.push_back(i);
  const int window = 2 * threads > 32 ? 2 * threads : 32;
  for (size_t w0 = 0; w0 < cpu.size(); w0 += (size_t)window) {
    const int m = (int)(cpu.size() - w0 < (size_t)window ? cpu.size() - w0 : (size_t)window);
    const int *idx = cpu.data() + w0;
    std::vector<uint8_t *> rgb(m, nullptr);
    std::vector<int> w(m), h(m), slots;
    std::vector<clip_image> imgs;
    clip_decode_cpu(e, data, sizes, idx, m, per_image, rgb.data(), w.data(), h.data());
    for (int k = 0; k < m; k++) {
      const int i = idx[k];
      if (per_image[i] != CLIP_OK) continue;
      const clip_image im = {rgb[k], w[k], h[k], 0};
      clip_image_plan probe;
      if (clip_image_plan_make(&im, i, S, &probe, NULL, 0) != CLIP_OK) {
        per_image[i] = CLIP_ERR_UNSUPPORTED;
        snprintf(e->image_err[i], sizeof e->image_err[i],
                 "cannot preprocess a %dx%d image (too elongated)", w[k], h[k]);
        continue;
      }
      clip_image_plan_free(&probe);
      imgs.push_back(im);
      slots.push_back(i);
    }
    if (!imgs.empty())
      s = clip_cuda_preprocess_images(e, st, imgs.data(), (int)imgs.size(), NULL, slots.data());
    for (int k = 0; k < m; k++) free(rgb[k]);
    if (s != CLIP_OK) return s;
  }

  /* Statuses and counters; failed slots zeroed so the forward never reads stale data. */
  const size_t slot_bytes = (size_t)3 * S * S * st->esz;
  for (int i = 0; i < n; i++) {
    if (jobs[i].route == ROUTE_HW || jobs[i].route == ROUTE_HYBRID) per_image[i] = CLIP_OK;
    if (per_image[i] == CLIP_OK) {
      if (jobs[i].route == ROUTE_CPU) {
        e->decode_stats.cpu_decoded++;
      } else {
        e->decode_stats.device_decoded++;
        if (jobs[i].route == ROUTE_HW) e->decode_stats.hardware_decoded++;
      }
    } else {
      e->decode_stats.failed++;
      CU_TRY(e, cudaMemsetAsync((char *)st->input + (size_t)i * slot_bytes, 0, slot_bytes, st->compute));
    }
    if (jobs[i].route == ROUTE_CPU) e->decode_stats.cpu_fallbacks++;
  }
  return CLIP_OK;
}
