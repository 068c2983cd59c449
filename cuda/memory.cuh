/* memory.cuh: the CUDA backend's device arenas (weights, activations) and the weights
   upload at create. */
#ifndef CLIP_CUDA_MEMORY_CUH
#define CLIP_CUDA_MEMORY_CUH
#include "backend.cuh"

/* Carves 256-byte-aligned pieces out of one allocation; with base == NULL it only counts. */
typedef struct clip_arena {
  char *base;
  size_t off;
} clip_arena;

/* Points st's weight (activation) buffers into a, or with a->base == NULL only sizes them:
   a->off is then the bytes to allocate. */
void clip_layout_weights(cuda_state *st, const clip_config *c, clip_arena *a);
void clip_layout_activations(cuda_state *st, const clip_config *c, int mb, clip_arena *a);

/* e->w (host fp32) -> the weights arena in st->dt, and the normalization table; synchronous. */
clip_status clip_upload_weights(clip_engine *e, cuda_state *st);

/* The text tower's arenas (ts->layer must hold c->layers entries), as the vision tower's. */
void clip_layout_text_weights(cuda_state *st, text_state *ts, const clip_text_config *c,
                              clip_arena *a);
void clip_layout_text_activations(cuda_state *st, text_state *ts, const clip_text_config *c,
                                  int mb, clip_arena *a);
/* e->w.text (host fp32) -> ts's weights arena in st->dt; synchronous. */
clip_status clip_upload_text_weights(clip_engine *e, cuda_state *st, text_state *ts);

#endif /* CLIP_CUDA_MEMORY_CUH */
