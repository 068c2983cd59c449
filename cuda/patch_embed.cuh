/* patch_embed.cuh: the patch embedding around its GEMM: im2col of the input pixels, and the
   assembly of the token sequence (class token + patch tokens + positional embedding). */
#ifndef CLIP_CUDA_PATCH_EMBED_CUH
#define CLIP_CUDA_PATCH_EMBED_CUH
#include "common.cuh"

/* pixels (n, 3, S, S) -> col (n*G*G, 3*P*P), column order [c][ky][kx] like conv1's weight,
   row order [image][gy][gx]; G = S / P. Both in dtype dt. */
cudaError_t clip_im2col_launch(const void *pixels, void *col, clip_dtype dt, int n, int S, int P,
                               cudaStream_t stream);

/* patches (n*G*G, W) in dtype dt -> x (n, T, W) float32, T = G*G + 1:
   x[b,0] = cls + pos[0]; x[b,1+p] = patches[b*G*G+p] + pos[1+p]. */
cudaError_t clip_assemble_tokens_launch(const void *patches, clip_dtype dt, const float *cls,
                                        const float *pos, float *x, int n, int tokens, int width,
                                        cudaStream_t stream);
#endif
