/* text_tower.cuh: the CUDA backend's text tower (text_tower.cu). */
#ifndef CLIP_CUDA_TEXT_TOWER_CUH
#define CLIP_CUDA_TEXT_TOWER_CUH
#include "backend.cuh"

/* clip_backend_impl.embed_tokens of the CUDA backend: ids and eot checked by the engine. The
   first call uploads the text weights and makes its activations arena (max_batch sequences). */
clip_status clip_cuda_embed_tokens(clip_engine *e, const int32_t *tokens, const int *eot, int n,
                                   float *out);

/* Frees st->text (NULL is fine). */
void clip_cuda_text_destroy(cuda_state *st);

#endif
