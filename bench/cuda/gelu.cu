/* bench/cuda/gelu.cu: kernel lab for the MLP activation (cuda/gelu.cu), QuickGELU and exact
   GELU in place on fp16.
   Variant 0: naive, one element per thread, fp16 loads and stores.
   Variant 1: the production kernel (16-byte vectors, grid-stride, a scalar tail).
   Each is checked against a double-precision CPU reference at odd sizes (so the tail runs),
   both activations, then timed on the B/32 batch-1024 fc1 output (1024 x 50 x 3072 halves).
   This pass is memory-bound: the time to beat is its bytes (read + write) over the card's
   copy bandwidth; only fusing it into a neighbour removes it.
   Build: make -C bench/cuda lab ARCH=90 */
#include "../../cuda/gelu.cu"
#include "lab.cuh"

__global__ void gelu_naive(__half *h, size_t n, int quick) {
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) h[i] = __float2half(act(__half2float(h[i]), quick));
}

static double act_ref(double x, int quick) {
  return quick ? x / (1.0 + exp(-1.702 * x)) : 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
}

static void run_variant(int v, __half *d, size_t n, int quick) {
  if (v == 0) {
    gelu_naive<<<(unsigned)((n + 255) / 256), 256>>>(d, n, quick);
    LAB_CHECK(cudaGetLastError());
  } else {
    LAB_CHECK(clip_gelu_launch(d, CLIP_DT_F16, n, quick, 0));
  }
}

int main() {
  cudaDeviceProp prop;
  LAB_CHECK(cudaGetDeviceProperties(&prop, 0));
  printf("gelu lab on %s\n", prop.name);
  int fails = 0;
  const size_t sizes[] = {1, 7, 8, 9, 1000003, (size_t)64 * 50 * 3072 + 5};
  for (size_t n : sizes) {
    std::vector<float> f(n);
    std::vector<__half> h(n), out(n);
    lab_fill_half(f, h, 6.0f); /* [-6, 6): both tails of the activation */
    __half *d;
    LAB_CHECK(cudaMalloc(&d, n * 2));
    for (int quick = 0; quick < 2; quick++)
      for (int v = 0; v < 2; v++) {
        LAB_CHECK(cudaMemcpy(d, h.data(), n * 2, cudaMemcpyHostToDevice));
        run_variant(v, d, n, quick);
        LAB_CHECK(cudaMemcpy(out.data(), d, n * 2, cudaMemcpyDeviceToHost));
        double maxerr = 0;
        for (size_t i = 0; i < n; i++) {
          const double ref = act_ref(f[i], quick), got = __half2float(out[i]);
          /* fp16 output: half an ulp of the result plus the fast-math exp/erf error */
          const double e = fabs(got - ref) / (fabs(ref) * 1e-3 + 1e-3);
          if (e > maxerr || e != e) maxerr = e != e ? INFINITY : e;
        }
        const bool ok = maxerr <= 1.0;
        fails += !ok;
        printf("%s variant %d %s n=%zu: max error %.2f of the bound (|err| <= 1e-3*|ref| + 1e-3)\n",
               ok ? "PASS" : "FAIL", v, quick ? "quickgelu" : "gelu", n, maxerr);
      }
    cudaFree(d);
  }
  const size_t n = (size_t)1024 * 50 * 3072;
  std::vector<float> f(n);
  std::vector<__half> h(n);
  lab_fill_half(f, h, 6.0f);
  __half *d;
  LAB_CHECK(cudaMalloc(&d, n * 2));
  LAB_CHECK(cudaMemcpy(d, h.data(), n * 2, cudaMemcpyHostToDevice));
  for (int quick = 0; quick < 2; quick++)
    for (int v = 0; v < 2; v++) {
      /* in place: later runs see activated values, which is fine for timing (no zeros) */
      const float ms = lab_time_ms([&] { run_variant(v, d, n, quick); });
      printf("TIME variant %d %s n=%zu: %.3f ms per layer (%.0f GB/s read+write, x12 layers = %.2f ms)\n", v,
             quick ? "quickgelu" : "gelu", n, ms, 4.0 * n / ms / 1e6, 12 * ms);
    }
  cudaFree(d);
  return fails ? 1 : 0;
}
