/* staging.cu: the CUDA backend's host -> device path for each call: two pinned staging slots
   (with their device twins and events) that let the host pack and upload chunk k+1 while the
   device works on chunk k, float32 pixels in (converted to the compute dtype on the device),
   and raw RGB8 images in (per-image resize plans and packing on the host thread pool, then
   the device resize/crop/normalize of cuda/resize.cu). Uploads run on the `copy` stream,
   kernels on `compute`. */
#include <stdio.h>
#include <string.h>

#include <new>
#include <vector>

#include "backend.cuh"
#include "convert.cuh"
#include "resize_plan.cuh"
#include "staging.cuh"
#include "debug.cuh"

void clip_staging_slot_release(staging_slot *sl) {
  if (sl->host) cudaFreeHost(sl->host);
  if (sl->dev) cudaFree(sl->dev);
  sl->host = NULL;
  sl->dev = NULL;
  sl->cap = 0;
}

clip_status clip_staging_slot_alloc(clip_engine *e, staging_slot *sl, size_t cap) {
  cudaError_t err = cudaHostAlloc((void **)&sl->host, cap, cudaHostAllocDefault);
  if (err == cudaSuccess) err = cudaMalloc((void **)&sl->dev, cap);
  if (err != cudaSuccess) {
    if (err != cudaErrorMemoryAllocation) return clip_cuda_fail(e, err, "staging slot allocation", __FILE__, __LINE__);
    cudaGetLastError();
    return clip_set_error(e, CLIP_ERR_OUT_OF_MEMORY,
                          "staging.cu:%d: cannot allocate a staging slot of %zu bytes (pinned host + "
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
    const size_t cap = clip_align_up(slot_need > 2 * have ? slot_need : 2 * have, ALIGN);
    for (int i = 0; i < 2; i++) clip_staging_slot_release(&st->slot[i]);
    for (int i = 0; i < 2; i++) {
      clip_status s = clip_staging_slot_alloc(e, &st->slot[i], cap);
      if (s != CLIP_OK) {
        clip_staging_slot_release(&st->slot[0]);
        clip_staging_slot_release(&st->slot[1]);
        return s;
      }
    }
  }
  if (mid_need > st->mid_cap) {
    size_t cap = clip_align_up(mid_need > 2 * st->mid_cap ? mid_need : 2 * st->mid_cap, ALIGN);
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

/* ---- host threads ---- */

/* Host threads for packing/planning: the engine's thread count (all cores by default),
   capped at HOST_THREADS_MAX (the pool has that many, the caller included). */
static int host_threads(const clip_engine *e, int work_items) {
  int t = e->threads > 0 ? e->threads : 1;
  if (t > HOST_THREADS_MAX) t = HOST_THREADS_MAX;
  if (t > work_items) t = work_items;
  return t < 1 ? 1 : t;
}

/* memcpy of a large block on several threads (pageable -> pinned copies are bound by one
   core's copy speed otherwise). */
static void parallel_memcpy(clip_thread_pool *pool, void *dst, const void *src, size_t bytes,
                            int threads) {
  const size_t piece = (size_t)4 << 20;
  const int pieces = (int)((bytes + piece - 1) / piece);
  if (pieces <= 1 || threads <= 1) {
    memcpy(dst, src, bytes);
    return;
  }
  pool->parallel_for(pieces, threads, [&](int k) {
    const size_t a = (size_t)k * piece, len = a + piece <= bytes ? piece : bytes - a;
    memcpy((char *)dst + a, (const char *)src + a, len);
  });
}

/* ---- pixels in ---- */

/* Caller's float32 (n, 3, S, S) -> st->input in the compute dtype, in slot-sized chunks. */
clip_status clip_cuda_upload_pixels(clip_engine *e, cuda_state *st, const float *pixels, int n) {
  const size_t S = e->w.cfg.image_size, per = 3 * S * S;
  clip_prof_mark(st, P_UPLOAD);
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
    parallel_memcpy(st->pool, sl->host, pixels + (size_t)i0 * per, bytes, host_threads(e, 16));
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
clip_status clip_cuda_preprocess_images(clip_engine *e, cuda_state *st, const clip_image *imgs, int n,
                                     uint8_t *u8out, const int *slots) {
  const int S = e->w.cfg.image_size;
  const int max_chunk = n < 65535 ? n : 65535;
  const size_t desc_bytes = clip_align_up((size_t)max_chunk * sizeof(clip_resize_desc), ALIGN);
  clip_prof_mark(st, P_PREPROCESS);

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
  st->pool->parallel_for(n, threads, [&](int k) {
    status[k] = clip_image_plan_make(&imgs[k], slots ? slots[k] : k, S, &plans[k], NULL, 0);
  });
  int bad = -1;
  for (int k = 0; k < n && bad < 0; k++)
    if (status[k] != CLIP_OK) bad = k;
  if (bad >= 0) {
    for (int k = 0; k < n; k++)
      if (status[k] == CLIP_OK) clip_image_plan_free(&plans[k]);
    clip_image_plan again;
    char err[256];
    clip_status s = clip_image_plan_make(&imgs[bad], slots ? slots[bad] : bad, S, &again, err, sizeof err);
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
    st->pool->parallel_for(m, host_threads(e, m), [&](int j) {
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
