/* graphs.cuh: the forward through cached CUDA graphs (graphs.cu). */
#ifndef CLIP_CUDA_GRAPHS_CUH
#define CLIP_CUDA_GRAPHS_CUH
#include "backend.cuh"

/* The whole forward for n: a cached graph's replay, or direct launches (then a capture for
   next time when graphs are on). */
clip_status clip_cuda_forward(clip_engine *e, cuda_state *st, int n);

/* Drops every cached graph. */
void clip_graphs_clear(cuda_state *st);

#endif /* CLIP_CUDA_GRAPHS_CUH */
