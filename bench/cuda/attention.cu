/* bench/cuda/attention.cu: kernel lab for the fused attention (cuda/attention.cu).
   Variant 0: naive, one thread per (image, head, query), scores in local memory.
   Variant 1: the production kernel (K, V in shared memory, a warp per query row).
   Variant 2: a candidate: like 1, but each warp takes QB=4 query rows at once, so every K and
   V element read from shared memory serves 4 queries (1/4 of variant 1's shared-memory
   traffic, which bounds variant 1). Moves into cuda/ once it has passed here on a GPU.
   Variant 3: the tensor-core kernel (wmma, fp16; cuda/attention.cu's path for head_dim 64,
   T <= 64): S = QK^T and O = PV as 16x16x16 tiles, softmax in fp32.
   Each is checked against a CPU reference at several shapes (CLIP B/32's T=50, a tiny one,
   and L/14's T=257 which needs opted-in shared memory), then timed at batch 1024 (B/32).
   Build: make -C bench/cuda lab ARCH=90 */
#include "../../cuda/attention.cu"
#include "lab.cuh"

/* qkv (n*T, 3W) -> out (n*T, W), double accumulation. */
static void attention_cpu(const float *qkv, float *out, int n, int T, int W, int H) {
  const int D = W / H;
  std::vector<double> s(T);
  for (int b = 0; b < n; b++)
    for (int h = 0; h < H; h++)
      for (int t = 0; t < T; t++) {
        const float *q = qkv + ((size_t)b * T + t) * 3 * W + h * D;
        double mx = -1e300;
        for (int j = 0; j < T; j++) {
          const float *k = qkv + ((size_t)b * T + j) * 3 * W + W + h * D;
          double acc = 0;
          for (int d = 0; d < D; d++) acc += (double)q[d] * k[d];
          s[j] = acc / sqrt((double)D);
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (int j = 0; j < T; j++) sum += (s[j] = exp(s[j] - mx));
        for (int d = 0; d < D; d++) {
          double acc = 0;
          for (int j = 0; j < T; j++) acc += s[j] * qkv[((size_t)b * T + j) * 3 * W + 2 * W + h * D + d];
          out[((size_t)b * T + t) * W + h * D + d] = (float)(acc / sum);
        }
      }
}

__global__ void attention_naive(const __half *qkv, __half *out, int n, int T, int W, int H) {
  const int D = W / H;
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= n * H * T) return;
  const int t = idx % T, h = (idx / T) % H, b = idx / (T * H);
  float s[320];
  const __half *q = qkv + ((size_t)b * T + t) * 3 * W + h * D;
  float mx = -INFINITY;
  for (int j = 0; j < T; j++) {
    const __half *k = qkv + ((size_t)b * T + j) * 3 * W + W + h * D;
    float acc = 0;
    for (int d = 0; d < D; d++) acc += __half2float(q[d]) * __half2float(k[d]);
    s[j] = acc * rsqrtf((float)D);
    mx = fmaxf(mx, s[j]);
  }
  float sum = 0;
  for (int j = 0; j < T; j++) sum += (s[j] = __expf(s[j] - mx));
  for (int d = 0; d < D; d++) {
    float acc = 0;
    for (int j = 0; j < T; j++) acc += s[j] * __half2float(qkv[((size_t)b * T + j) * 3 * W + 2 * W + h * D + d]);
    out[((size_t)b * T + t) * W + h * D + d] = __float2half(acc / sum);
  }
}

#define QB 4
__global__ void __launch_bounds__(CLIP_ATTN_THREADS)
attention_qb(const __half *__restrict__ qkv, __half *__restrict__ out, int tokens, int width, int heads, int hd,
             float scale) {
  extern __shared__ float4 smem4b[];
  float *sm = reinterpret_cast<float *>(smem4b);
  const int ks = hd + 4;
  float *Ks = sm;                                /* (T, ks) */
  float *Vs = Ks + (size_t)tokens * ks;          /* (T, ks) */
  float *Qs = Vs + (size_t)tokens * ks;          /* (warps, QB, hd) */
  float *Ps = Qs + (size_t)ATTN_WARPS * QB * hd; /* (warps, QB, T) */
  const int b = blockIdx.x / heads, h = blockIdx.x % heads;
  const size_t row0 = (size_t)b * tokens, ld = 3 * (size_t)width;
  const __half *base = qkv + row0 * ld + (size_t)h * hd;
  for (int idx = threadIdx.x; idx < tokens * hd; idx += blockDim.x) {
    const int t = idx / hd, d = idx % hd;
    const __half *r = base + (size_t)t * ld + d;
    Ks[t * ks + d] = __half2float(r[width]);
    Vs[t * ks + d] = __half2float(r[2 * width]);
  }
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float *q = Qs + (size_t)warp * QB * hd;
  float *p = Ps + (size_t)warp * QB * tokens;
  for (int t0 = warp * QB; t0 < tokens; t0 += ATTN_WARPS * QB) {
    const int nq = tokens - t0 < QB ? tokens - t0 : QB;
    for (int i = lane; i < QB * hd; i += 32) {
      const int qi = i / hd, d = i % hd;
      q[i] = qi < nq ? __half2float(base[(size_t)(t0 + qi) * ld + d]) * scale : 0.f;
    }
    __syncwarp();
    float mx[QB], sum[QB];
#pragma unroll
    for (int qi = 0; qi < QB; qi++) mx[qi] = -INFINITY, sum[qi] = 0.f;
    for (int j = lane; j < tokens; j += 32) {
      const float4 *kr = reinterpret_cast<const float4 *>(Ks + j * ks);
      float s[QB] = {};
      for (int d4 = 0; d4 < hd / 4; d4++) {
        const float4 kv = kr[d4];
#pragma unroll
        for (int qi = 0; qi < QB; qi++) {
          const float4 qv = reinterpret_cast<const float4 *>(q + qi * hd)[d4];
          s[qi] += qv.x * kv.x + qv.y * kv.y + qv.z * kv.z + qv.w * kv.w;
        }
      }
#pragma unroll
      for (int qi = 0; qi < QB; qi++) {
        p[qi * tokens + j] = s[qi];
        mx[qi] = fmaxf(mx[qi], s[qi]);
      }
    }
#pragma unroll
    for (int qi = 0; qi < QB; qi++) mx[qi] = warp_max_f(mx[qi]);
    for (int j = lane; j < tokens; j += 32)
#pragma unroll
      for (int qi = 0; qi < QB; qi++) {
        const float ev = __expf(p[qi * tokens + j] - mx[qi]);
        p[qi * tokens + j] = ev;
        sum[qi] += ev;
      }
#pragma unroll
    for (int qi = 0; qi < QB; qi++) sum[qi] = 1.f / warp_sum_f(sum[qi]);
    __syncwarp();
    for (int d = 2 * lane; d < hd; d += 64) {
      float a0[QB] = {}, a1[QB] = {};
      for (int j = 0; j < tokens; j++) {
        const float2 vv = *reinterpret_cast<const float2 *>(Vs + j * ks + d);
#pragma unroll
        for (int qi = 0; qi < QB; qi++) {
          const float pj = p[qi * tokens + j];
          a0[qi] += pj * vv.x;
          a1[qi] += pj * vv.y;
        }
      }
#pragma unroll
      for (int qi = 0; qi < QB; qi++)
        if (qi < nq) {
          __half *orow = out + (row0 + t0 + qi) * (size_t)width + (size_t)h * hd;
          orow[d] = __float2half(a0[qi] * sum[qi]);
          orow[d + 1] = __float2half(a1[qi] * sum[qi]);
        }
    }
    __syncwarp();
  }
}

static size_t qb_smem(int T, int hd) {
  return sizeof(float) * (2 * (size_t)T * (hd + 4) + (size_t)ATTN_WARPS * QB * hd + (size_t)ATTN_WARPS * QB * T);
}

static void run_variant(int v, const __half *dq, __half *dout, int n, int T, int W, int H) {
  if (v == 0) {
    const int total = n * H * T;
    attention_naive<<<(total + 127) / 128, 128>>>(dq, dout, n, T, W, H);
    LAB_CHECK(cudaGetLastError());
  } else if (v == 1) {
    LAB_CHECK(clip_attention_simt_launch(dq, dout, CLIP_DT_F16, n, T, W, H, 0, 0));
  } else if (v == 3) {
    LAB_CHECK(clip_attention_tc_launch(dq, dout, CLIP_DT_F16, n, T, W, H, 0, 0));
  } else {
    const size_t smem = qb_smem(T, W / H);
    if (smem > 48 * 1024)
      LAB_CHECK(cudaFuncSetAttribute(attention_qb, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    attention_qb<<<n * H, CLIP_ATTN_THREADS, smem>>>(dq, dout, T, W, H, W / H, 1.0f / sqrtf((float)(W / H)));
    LAB_CHECK(cudaGetLastError());
  }
}

int main() {
  int dev = 0;
  cudaDeviceProp prop;
  LAB_CHECK(cudaGetDeviceProperties(&prop, dev));
  printf("attention lab on %s\n", prop.name);
  struct { int n, T, W, H; } shapes[] = {{64, 50, 768, 12}, {7, 17, 128, 2}, {3, 257, 1024, 16}, {2, 5, 64, 1}};
  int fails = 0;
  for (auto sh : shapes) {
    const size_t nq = (size_t)sh.n * sh.T * 3 * sh.W, no = (size_t)sh.n * sh.T * sh.W;
    std::vector<float> fq(nq), ref(no);
    std::vector<__half> hq(nq), hout(no);
    lab_fill_half(fq, hq, 2.0f);
    attention_cpu(fq.data(), ref.data(), sh.n, sh.T, sh.W, sh.H);
    __half *dq, *dout;
    LAB_CHECK(cudaMalloc(&dq, nq * 2));
    LAB_CHECK(cudaMalloc(&dout, no * 2));
    LAB_CHECK(cudaMemcpy(dq, hq.data(), nq * 2, cudaMemcpyHostToDevice));
    LAB_CHECK(clip_attention_prepare(CLIP_DT_F16, clip_attention_smem_bytes(sh.T, sh.W / sh.H)));
    for (int v = 0; v < 4; v++) {
      if (v == 3 && (sh.W / sh.H != 64 || sh.T > 64)) {
        printf("SKIP variant 3 n=%d T=%d W=%d H=%d: tensor-core path needs head_dim 64, T <= 64\n", sh.n, sh.T,
               sh.W, sh.H);
        continue;
      }
      LAB_CHECK(cudaMemset(dout, 0xFF, no * 2)); /* NaN pattern: unwritten outputs show */
      run_variant(v, dq, dout, sh.n, sh.T, sh.W, sh.H);
      LAB_CHECK(cudaMemcpy(hout.data(), dout, no * 2, cudaMemcpyDeviceToHost));
      double maxerr = 0;
      for (size_t i = 0; i < no; i++) {
        const double e = fabs((double)__half2float(hout[i]) - ref[i]);
        maxerr = (e > maxerr || e != e) ? (e != e ? INFINITY : e) : maxerr;
      }
      const bool ok = maxerr < 4e-3;
      fails += !ok;
      printf("%s variant %d n=%d T=%d W=%d H=%d: max abs err %.2e\n", ok ? "PASS" : "FAIL", v, sh.n, sh.T, sh.W,
             sh.H, maxerr);
    }
    cudaFree(dq);
    cudaFree(dout);
  }
  /* Timing at B/32 batch 1024. */
  const int n = 1024, T = 50, W = 768, H = 12;
  const size_t nq = (size_t)n * T * 3 * W, no = (size_t)n * T * W;
  std::vector<float> fq(nq);
  std::vector<__half> hq(nq);
  lab_fill_half(fq, hq, 2.0f);
  __half *dq, *dout;
  LAB_CHECK(cudaMalloc(&dq, nq * 2));
  LAB_CHECK(cudaMalloc(&dout, no * 2));
  LAB_CHECK(cudaMemcpy(dq, hq.data(), nq * 2, cudaMemcpyHostToDevice));
  for (int v = 0; v < 4; v++) {
    const float ms = lab_time_ms([&] { run_variant(v, dq, dout, n, T, W, H); });
    const double bytes = (nq + no) * 2.0;
    printf("TIME variant %d n=%d T=%d: %.3f ms per layer (%.0f GB/s of qkv+out, x12 layers = %.2f ms)\n", v, n, T,
           ms, bytes / ms / 1e6, 12 * ms);
  }
  cudaFree(dq);
  cudaFree(dout);
  return fails ? 1 : 0;
}
