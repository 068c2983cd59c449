/* lab.cuh: helpers shared by the kernel-lab programs: status checks that exit (these are
   stand-alone tools, not the library), random fills, fp16 rounding, event timing. */
#ifndef CLIP_LAB_CUH
#define CLIP_LAB_CUH
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <algorithm>
#include <vector>

#define LAB_CHECK(call)                                                                        \
  do {                                                                                         \
    cudaError_t err_ = (call);                                                                 \
    if (err_ != cudaSuccess) {                                                                 \
      fprintf(stderr, "FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(err_)); \
      exit(1);                                                                                 \
    }                                                                                          \
  } while (0)

static unsigned long long lab_rng = 88172645463325252ull;
static float lab_uniform() { /* [-1, 1) */
  lab_rng ^= lab_rng << 13;
  lab_rng ^= lab_rng >> 7;
  lab_rng ^= lab_rng << 17;
  return (float)((lab_rng >> 40) / 8388608.0 - 1.0);
}

/* Rounds to fp16 and back, so the CPU reference sees what the device sees. */
static void lab_fill_half(std::vector<float> &f, std::vector<__half> &h, float scale) {
  for (size_t i = 0; i < f.size(); i++) {
    h[i] = __float2half(scale * lab_uniform());
    f[i] = __half2float(h[i]);
  }
}

/* Median milliseconds of `iters` runs of fn() (after one warm-up), CUDA events. */
template <typename F> static float lab_time_ms(F fn, int iters = 20) {
  cudaEvent_t a, b;
  LAB_CHECK(cudaEventCreate(&a));
  LAB_CHECK(cudaEventCreate(&b));
  fn();
  LAB_CHECK(cudaDeviceSynchronize());
  std::vector<float> ms(iters);
  for (int i = 0; i < iters; i++) {
    LAB_CHECK(cudaEventRecord(a));
    fn();
    LAB_CHECK(cudaEventRecord(b));
    LAB_CHECK(cudaEventSynchronize(b));
    LAB_CHECK(cudaEventElapsedTime(&ms[i], a, b));
  }
  std::sort(ms.begin(), ms.end());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms[iters / 2];
}
#endif
