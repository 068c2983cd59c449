/* text_embed.cuh: the text tower's two gathers around its blocks: the token + positional
   embedding at the start, and the end-token rows (with the last block's residual) at the end. */
#ifndef CLIP_CUDA_TEXT_EMBED_CUH
#define CLIP_CUDA_TEXT_EMBED_CUH
#include "common.cuh"

/* ids (n*C) int32, each in [0, vocab) (checked on the host) -> x (n*T, W) float32, the first
   T <= C positions of each sequence: x[b*T + t] = tok[ids[b*C + t]] + pos[t]; tok (vocab, W),
   pos (C, W) float32. */
cudaError_t clip_text_embed_launch(const int32_t *ids, const float *tok, const float *pos, float *x,
                                   int n, int ctx, int tokens, int width, cudaStream_t stream);

/* The end-token rows: sel[b] = x[b*T + eot[b]] + delta[b*T + eot[b]] for b < n, float32 out;
   x float32 (n*T, W), delta (n*T, W) in dtype dt (the last block's MLP output), eot (n)
   int32 in [0, T). */
cudaError_t clip_text_gather_launch(const float *x, const void *delta, clip_dtype dt,
                                    const int32_t *eot, float *sel, int n, int tokens, int width,
                                    cudaStream_t stream);
#endif
