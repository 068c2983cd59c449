/* attention.cuh: fused multi-head self-attention for short sequences (CLIP ViT: T = 50,
   head_dim 64; CLIP's text tower: T = 77, causal): one block per (sequence, head), K and V in
   shared memory, scores and softmax in fp32 per query row, nothing of size T*T in global
   memory. */
#ifndef CLIP_CUDA_ATTENTION_CUH
#define CLIP_CUDA_ATTENTION_CUH
#include "common.cuh"

#define CLIP_ATTN_THREADS 256

/* Dynamic shared memory one block needs (bytes). */
size_t clip_attention_smem_bytes(int tokens, int head_dim);

/* Raises the kernel's dynamic shared memory limit when smem_bytes > 48 KiB (call once at
   init, per dtype; fails when the device cannot give that much). */
cudaError_t clip_attention_prepare(clip_dtype dt, size_t smem_bytes);

/* qkv (n*T, 3W): row (b*T + t) holds q | k | v, head h at columns h*D .. h*D+D-1 of each
   -> out (n*T, W): softmax(q k^T / sqrt(D)) v, head h at columns h*D... head_dim D must be a
   multiple of 4. causal: query t attends to keys 0..t only (CLIP's text mask, -inf above the
   diagonal). */
cudaError_t clip_attention_launch(const void *qkv, void *out, clip_dtype dt, int n, int tokens,
                                  int width, int heads, int causal, cudaStream_t stream);
/* The two implementations clip_attention_launch chooses between (exposed for the lab):
   tensor cores (fp16/bf16, head_dim 64, tokens <= 64, sm_80+; else cudaErrorInvalidValue)
   and fp32 CUDA cores (any dtype and shape that fits shared memory). The tensor-core one is
   taken when it applies, unless CLIP_CUDA_ATTN_SIMT is set in the environment. */
cudaError_t clip_attention_tc_launch(const void *qkv, void *out, clip_dtype dt, int n, int tokens,
                                     int width, int heads, int causal, cudaStream_t stream);
cudaError_t clip_attention_simt_launch(const void *qkv, void *out, clip_dtype dt, int n, int tokens,
                                       int width, int heads, int causal, cudaStream_t stream);
#endif
