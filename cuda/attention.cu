/* attention.cu: fused attention, one block per (image, head). K and V of the head are loaded
   once into shared memory as fp32 rows padded to D+4 floats (16-byte aligned rows whose
   starting banks differ between neighbouring keys, so a quarter-warp's float4 loads do not
   conflict). Each warp takes query rows in turn: lane j scores key j (+32, +64...), the warp
   reduces max and sum, then each lane accumulates two output dims over all keys. */
#include <math.h>

#include "attention.cuh"

#define ATTN_WARPS (CLIP_ATTN_THREADS / 32)

__device__ __forceinline__ float warp_max_f(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum_f(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

size_t clip_attention_smem_bytes(int tokens, int head_dim) {
  const size_t ks = (size_t)head_dim + 4;
  return sizeof(float) * (2 * (size_t)tokens * ks + ATTN_WARPS * (size_t)head_dim +
                          ATTN_WARPS * (size_t)tokens);
}

template <typename T>
__global__ void __launch_bounds__(CLIP_ATTN_THREADS)
attention_kernel(const T *__restrict__ qkv, T *__restrict__ out, int tokens, int width, int heads,
                 int hd, float scale) {
  extern __shared__ float4 smem4[]; /* float4 for 16-byte alignment */
  float *sm = reinterpret_cast<float *>(smem4);
  const int ks = hd + 4;
  float *Ks = sm;                           /* (T, ks) */
  float *Vs = Ks + (size_t)tokens * ks;     /* (T, ks) */
  float *Qs = Vs + (size_t)tokens * ks;     /* (warps, hd) */
  float *Ps = Qs + (size_t)ATTN_WARPS * hd; /* (warps, T) */

  const int b = blockIdx.x / heads, h = blockIdx.x % heads;
  const size_t row0 = (size_t)b * tokens;
  const size_t ld = 3 * (size_t)width;
  const T *base = qkv + row0 * ld + (size_t)h * hd;

  for (int idx = threadIdx.x; idx < tokens * hd; idx += blockDim.x) {
    const int t = idx / hd, d = idx % hd;
    const T *r = base + (size_t)t * ld + d;
    Ks[t * ks + d] = clip_to_f(r[width]);
    Vs[t * ks + d] = clip_to_f(r[2 * width]);
  }
  __syncthreads();

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float *q = Qs + warp * hd;
  float *p = Ps + warp * tokens;
  for (int t = warp; t < tokens; t += ATTN_WARPS) {
    const T *qr = base + (size_t)t * ld;
    for (int d = lane; d < hd; d += 32) q[d] = clip_to_f(qr[d]) * scale;
    __syncwarp();

    float mx = -INFINITY;
    for (int j = lane; j < tokens; j += 32) {
      const float4 *kr = reinterpret_cast<const float4 *>(Ks + j * ks);
      const float4 *q4 = reinterpret_cast<const float4 *>(q);
      float s = 0.f;
      for (int d4 = 0; d4 < hd / 4; d4++) {
        const float4 kv = kr[d4], qv = q4[d4];
        s += qv.x * kv.x + qv.y * kv.y + qv.z * kv.z + qv.w * kv.w;
      }
      p[j] = s;
      mx = fmaxf(mx, s);
    }
    mx = warp_max_f(mx);
    float sum = 0.f;
    for (int j = lane; j < tokens; j += 32) {
      const float ev = __expf(p[j] - mx);
      p[j] = ev;
      sum += ev;
    }
    const float inv = 1.f / warp_sum_f(sum);
    __syncwarp(); /* every lane's p[j] visible to the whole warp */

    T *orow = out + (row0 + t) * (size_t)width + (size_t)h * hd;
    for (int d = 2 * lane; d < hd; d += 64) {
      float a0 = 0.f, a1 = 0.f;
      for (int j = 0; j < tokens; j++) {
        const float2 vv = *reinterpret_cast<const float2 *>(Vs + j * ks + d);
        const float pj = p[j];
        a0 += pj * vv.x;
        a1 += pj * vv.y;
      }
      orow[d] = clip_from_f<T>(a0 * inv);
      orow[d + 1] = clip_from_f<T>(a1 * inv);
    }
    __syncwarp(); /* q and p are rewritten by the next row */
  }
}

cudaError_t clip_attention_prepare(clip_dtype dt, size_t smem_bytes) {
  if (smem_bytes <= 48 * 1024) return cudaSuccess;
  CLIP_DISPATCH_DTYPE(dt, return cudaFuncSetAttribute(attention_kernel<T>,
                                                      cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                      (int)smem_bytes));
  return cudaSuccess;
}

cudaError_t clip_attention_launch(const void *qkv, void *out, clip_dtype dt, int n, int tokens,
                                  int width, int heads, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  const int hd = width / heads;
  if (hd % 4 != 0 || hd * heads != width) return cudaErrorInvalidValue;
  const size_t smem = clip_attention_smem_bytes(tokens, hd);
  const float scale = 1.0f / sqrtf((float)hd);
  CLIP_DISPATCH_DTYPE(dt, attention_kernel<T><<<(unsigned)(n * heads), CLIP_ATTN_THREADS, smem,
                                                 stream>>>((const T *)qkv, (T *)out, tokens, width,
                                                           heads, hd, scale));
  return cudaGetLastError();
}
