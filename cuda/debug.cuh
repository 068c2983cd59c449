/* debug.cuh: per-op-class profiling of the CUDA backend (CLIP_CUDA_PROFILE=1; debug.cu). */
#ifndef CLIP_CUDA_DEBUG_CUH
#define CLIP_CUDA_DEBUG_CUH
#include "backend.cuh"

/* Records an event on the compute stream opening an interval of op class cat (P_*); -1 only
   closes the previous one. A no-op unless profiling. */
void clip_prof_mark(cuda_state *st, int cat);
/* After the compute stream is synchronized: adds the intervals' times to their classes. */
void clip_prof_collect(cuda_state *st);

#endif /* CLIP_CUDA_DEBUG_CUH */
