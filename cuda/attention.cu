/* attention.cu: fused attention, one block per (sequence, head), optionally causal (the text
   tower). K and V of the head are loaded
   once into shared memory as fp32 rows padded to D+4 floats (16-byte aligned rows whose
   starting banks differ between neighbouring keys, so a quarter-warp's float4 loads do not
   conflict). Each warp takes query rows in turn: lane j scores key j (+32, +64...), the warp
   reduces max and sum, then each lane accumulates two output dims over all keys. */
#include <math.h>
#include <mma.h>

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
                 int hd, float scale, int causal) {
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
    /* Causal (the text tower): query t sees keys 0..t; the masked scores are -inf in CLIP,
       whose exp is 0, so they are simply left out. */
    const int keys = causal ? t + 1 : tokens;

    float mx = -INFINITY;
    for (int j = lane; j < keys; j += 32) {
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
    for (int j = lane; j < keys; j += 32) {
      const float ev = __expf(p[j] - mx);
      p[j] = ev;
      sum += ev;
    }
    const float inv = 1.f / warp_sum_f(sum);
    __syncwarp(); /* every lane's p[j] visible to the whole warp */

    T *orow = out + (row0 + t) * (size_t)width + (size_t)h * hd;
    for (int d = 2 * lane; d < hd; d += 64) {
      float a0 = 0.f, a1 = 0.f;
      for (int j = 0; j < keys; j++) {
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

/* ---- tensor-core path: fp16/bf16, head_dim 64, T <= 64 (CLIP ViT-B/32: T = 50) ----
   One block of 4 warps per (image, head). Q, K, V of the head go to shared memory as
   64 x 64 tiles (rows >= T zero), padded to 72 elements per row (144 bytes: rows start on
   different banks). Warp w owns query rows 16w..16w+15: S = Q K^T on the tensor cores
   (wmma m16n16k16, fp32 accumulate) into an fp32 tile, softmax per row in fp32 (keys >= T
   masked), P written in the compute type over the warp's own Q rows, O = P V on the tensor
   cores into the warp's own rows of the fp32 tile, then rows < T go to global memory. No
   block-wide barrier after the loads: each warp only touches its own rows of Q/P and S/O. */
#define ATTN_TC_T 64
#define ATTN_TC_D 64
#define ATTN_TC_LDH 72 /* halves per row of Q/K/V/P */
#define ATTN_TC_LDF 68 /* floats per row of S/O */
#define ATTN_TC_THREADS 128

static const size_t attn_tc_smem =
    3 * ATTN_TC_T * ATTN_TC_LDH * 2 + ATTN_TC_T * ATTN_TC_LDF * 4; /* 45056 bytes */

template <typename T>
__global__ void __launch_bounds__(ATTN_TC_THREADS)
attention_tc_kernel(const T *__restrict__ qkv, T *__restrict__ out, int tokens, int width,
                    int heads, float scale, int causal) {
#if __CUDA_ARCH__ >= 800
  using namespace nvcuda;
  extern __shared__ float4 smem4[];
  T *Qs = reinterpret_cast<T *>(smem4);     /* (64, 72), later P */
  T *Ks = Qs + ATTN_TC_T * ATTN_TC_LDH;     /* (64, 72) */
  T *Vs = Ks + ATTN_TC_T * ATTN_TC_LDH;     /* (64, 72) */
  float *Ss = reinterpret_cast<float *>(Vs + ATTN_TC_T * ATTN_TC_LDH); /* (64, 68), later O */

  const int b = blockIdx.x / heads, h = blockIdx.x % heads;
  const size_t row0 = (size_t)b * tokens;
  const size_t ld = 3 * (size_t)width;
  const T *base = qkv + row0 * ld + (size_t)h * ATTN_TC_D;

  /* Load q, k, v rows as 16-byte vectors: 8 per 64-element row; rows >= T are zero. */
  for (int idx = threadIdx.x; idx < 3 * ATTN_TC_T * 8; idx += blockDim.x) {
    const int which = idx / (ATTN_TC_T * 8), rem = idx % (ATTN_TC_T * 8);
    const int t = rem / 8, c = rem % 8;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (t < tokens) v = *reinterpret_cast<const uint4 *>(base + (size_t)t * ld + (size_t)which * width + c * 8);
    *reinterpret_cast<uint4 *>(Qs + (size_t)which * ATTN_TC_T * ATTN_TC_LDH + t * ATTN_TC_LDH + c * 8) = v;
  }
  __syncthreads();

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int r0 = warp * 16;
  if (r0 >= tokens) return; /* no query row of this warp is real (T <= 48) */

  wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fbk;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fbv;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;

  /* S[r0.., 16j..] = Q[r0.., :] K[16j.., :]^T */
  for (int j = 0; j < ATTN_TC_T / 16; j++) {
    wmma::fill_fragment(acc, 0.0f);
    for (int k = 0; k < ATTN_TC_D / 16; k++) {
      wmma::load_matrix_sync(fa, Qs + r0 * ATTN_TC_LDH + k * 16, ATTN_TC_LDH);
      wmma::load_matrix_sync(fbk, Ks + j * 16 * ATTN_TC_LDH + k * 16, ATTN_TC_LDH);
      wmma::mma_sync(acc, fa, fbk, acc);
    }
    wmma::store_matrix_sync(Ss + r0 * ATTN_TC_LDF + j * 16, acc, ATTN_TC_LDF, wmma::mem_row_major);
  }
  __syncwarp();

  /* softmax over keys < T (causal: keys <= r), row by row; lane holds keys lane and
     lane + 32. Every row keeps key 0, so mx is finite. */
  for (int r = r0; r < r0 + 16; r++) {
    const float *srow = Ss + r * ATTN_TC_LDF;
    const int keys = causal && r + 1 < tokens ? r + 1 : tokens;
    const float a0 = lane < keys ? srow[lane] * scale : -INFINITY;
    const float a1 = lane + 32 < keys ? srow[lane + 32] * scale : -INFINITY;
    const float mx = warp_max_f(fmaxf(a0, a1));
    const float e0 = lane < keys ? __expf(a0 - mx) : 0.f;
    const float e1 = lane + 32 < keys ? __expf(a1 - mx) : 0.f;
    const float inv = 1.f / warp_sum_f(e0 + e1);
    T *prow = Qs + r * ATTN_TC_LDH;
    prow[lane] = clip_from_f<T>(e0 * inv);
    prow[lane + 32] = clip_from_f<T>(e1 * inv);
  }
  __syncwarp();

  /* O[r0.., 16n..] = P[r0.., :] V[:, 16n..] */
  for (int n = 0; n < ATTN_TC_D / 16; n++) {
    wmma::fill_fragment(acc, 0.0f);
    for (int k = 0; k < ATTN_TC_T / 16; k++) {
      wmma::load_matrix_sync(fa, Qs + r0 * ATTN_TC_LDH + k * 16, ATTN_TC_LDH);
      wmma::load_matrix_sync(fbv, Vs + k * 16 * ATTN_TC_LDH + n * 16, ATTN_TC_LDH);
      wmma::mma_sync(acc, fa, fbv, acc);
    }
    wmma::store_matrix_sync(Ss + r0 * ATTN_TC_LDF + n * 16, acc, ATTN_TC_LDF, wmma::mem_row_major);
  }
  __syncwarp();

  /* rows < T to global, two elements per lane per step */
  for (int i = lane; i < 16 * (ATTN_TC_D / 2); i += 32) {
    const int r = r0 + i / (ATTN_TC_D / 2), d = 2 * (i % (ATTN_TC_D / 2));
    if (r >= tokens) break; /* i grows with r: the rest of this lane's rows are padding */
    const float *orow = Ss + r * ATTN_TC_LDF;
    T *dst = out + (row0 + r) * (size_t)width + (size_t)h * ATTN_TC_D + d;
    dst[0] = clip_from_f<T>(orow[d]);
    dst[1] = clip_from_f<T>(orow[d + 1]);
  }
#endif
}

/* Whether the tensor-core path serves this shape and dtype. */
static bool attention_tc_ok(clip_dtype dt, int tokens, int width, int heads) {
  if (dt == CLIP_DT_F32 || heads <= 0 || width % heads != 0) return false;
  if (width / heads != ATTN_TC_D || tokens > ATTN_TC_T || tokens <= 0 || width % 8 != 0) return false;
  /* Decided once per process (every device clipd drives is sm_80+ or none is; the binary
     only carries sm_80/sm_90 code): no driver calls per launch or inside a graph capture. */
  static int decided = -1;
  if (decided < 0) {
    int dev = 0, major = 0;
    const int ok = !getenv("CLIP_CUDA_ATTN_SIMT") && /* for A/B timing and debugging */
                   cudaGetDevice(&dev) == cudaSuccess &&
                   cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
                   major >= 8;
    decided = ok;
  }
  return decided == 1;
}

cudaError_t clip_attention_prepare(clip_dtype dt, size_t smem_bytes) {
  if (smem_bytes <= 48 * 1024) return cudaSuccess;
  CLIP_DISPATCH_DTYPE(dt, return cudaFuncSetAttribute(attention_kernel<T>,
                                                      cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                      (int)smem_bytes));
  return cudaSuccess;
}

cudaError_t clip_attention_tc_launch(const void *qkv, void *out, clip_dtype dt, int n, int tokens,
                                     int width, int heads, int causal, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (dt == CLIP_DT_F32 || heads <= 0 || width % heads != 0 || width / heads != ATTN_TC_D ||
      tokens <= 0 || tokens > ATTN_TC_T || width % 8 != 0)
    return cudaErrorInvalidValue;
  const float scale = 1.0f / sqrtf((float)ATTN_TC_D);
  if (dt == CLIP_DT_F16)
    attention_tc_kernel<__half><<<(unsigned)(n * heads), ATTN_TC_THREADS, attn_tc_smem, stream>>>(
        (const __half *)qkv, (__half *)out, tokens, width, heads, scale, causal);
  else
    attention_tc_kernel<__nv_bfloat16><<<(unsigned)(n * heads), ATTN_TC_THREADS, attn_tc_smem, stream>>>(
        (const __nv_bfloat16 *)qkv, (__nv_bfloat16 *)out, tokens, width, heads, scale, causal);
  return cudaGetLastError();
}

cudaError_t clip_attention_simt_launch(const void *qkv, void *out, clip_dtype dt, int n, int tokens,
                                       int width, int heads, int causal, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  const int hd = width / heads;
  if (hd % 4 != 0 || hd * heads != width) return cudaErrorInvalidValue;
  const size_t smem = clip_attention_smem_bytes(tokens, hd);
  const float scale = 1.0f / sqrtf((float)hd);
  CLIP_DISPATCH_DTYPE(dt, attention_kernel<T><<<(unsigned)(n * heads), CLIP_ATTN_THREADS, smem,
                                                 stream>>>((const T *)qkv, (T *)out, tokens, width,
                                                           heads, hd, scale, causal));
  return cudaGetLastError();
}

cudaError_t clip_attention_launch(const void *qkv, void *out, clip_dtype dt, int n, int tokens,
                                  int width, int heads, int causal, cudaStream_t stream) {
  if (attention_tc_ok(dt, tokens, width, heads))
    return clip_attention_tc_launch(qkv, out, dt, n, tokens, width, heads, causal, stream);
  return clip_attention_simt_launch(qkv, out, dt, n, tokens, width, heads, causal, stream);
}
