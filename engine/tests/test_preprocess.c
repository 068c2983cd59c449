/* test_preprocess.c: edge cases of the CPU preprocessing (engine/src/preprocess.c) that the
   Pillow comparison (tests/reference/test_preprocess.py) does not reach: argument checks,
   the torchvision geometry on hand-worked cases, properties of the fixed-point coefficient
   tables, degenerate and extreme image shapes, and row strides. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"


/* CLIP's normalization constants (openai/CLIP clip.py), restated here so a typo in
   preprocess.c cannot pass unnoticed. */
static const float want_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float want_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

static int failures = 0;

#define CHECK(cond)                                                     \
  do {                                                                  \
    if (!(cond)) {                                                      \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                       \
    }                                                                   \
  } while (0)

#define CHECK_EQ_INT(got, want)                                                        \
  do {                                                                                 \
    long long g_ = (long long)(got), w_ = (long long)(want);                           \
    if (g_ != w_) {                                                                    \
      fprintf(stderr, "%s:%d: %s = %lld, want %lld\n", __FILE__, __LINE__, #got, g_, w_); \
      failures++;                                                                      \
    }                                                                                  \
  } while (0)

/* xorshift64*, fixed seed: reproducible "random" pixels. */
static uint64_t rng = 0x243F6A8885A308D3ull;
static uint8_t rand_u8(void) {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return (uint8_t)((rng * 0x2545F4914F6CDD1Dull) >> 56);
}

static uint8_t *random_image(int w, int h) {
  uint8_t *p = (uint8_t *)malloc((size_t)w * h * 3);
  for (size_t i = 0; i < (size_t)w * h * 3; i++) p[i] = rand_u8();
  return p;
}

static uint8_t *constant_image(int w, int h, const uint8_t rgb[3]) {
  uint8_t *p = (uint8_t *)malloc((size_t)w * h * 3);
  for (size_t i = 0; i < (size_t)w * h; i++) memcpy(p + 3 * i, rgb, 3);
  return p;
}

static void test_invalid_arguments(void) {
  uint8_t px[4 * 4 * 3] = {0};
  uint8_t out[8 * 8 * 3];
  float fout[3 * 8 * 8];
  clip_image ok = {px, 4, 4, 0};
  CHECK_EQ_INT(clip_preprocess_image_u8(&ok, 8, out), CLIP_OK);
  CHECK_EQ_INT(clip_preprocess_image(&ok, 8, fout), CLIP_OK);

  CHECK_EQ_INT(clip_preprocess_image_u8(NULL, 8, out), CLIP_ERR_INVALID_ARGUMENT);
  CHECK_EQ_INT(clip_preprocess_image_u8(&ok, 8, NULL), CLIP_ERR_INVALID_ARGUMENT);
  CHECK_EQ_INT(clip_preprocess_image(NULL, 8, fout), CLIP_ERR_INVALID_ARGUMENT);
  CHECK_EQ_INT(clip_preprocess_image(&ok, 8, NULL), CLIP_ERR_INVALID_ARGUMENT);

  const clip_image bad[] = {
      {NULL, 4, 4, 0}, /* no pixels */
      {px, 0, 4, 0},   /* zero width */
      {px, 4, 0, 0},   /* zero height */
      {px, -1, 4, 0},  /* negative width */
      {px, 4, -3, 0},  /* negative height */
      {px, 4, 4, 11},  /* stride < width * 3 */
      {px, 4, 4, -12}, /* negative stride */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK_EQ_INT(clip_preprocess_image_u8(&bad[i], 8, out), CLIP_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(clip_preprocess_image(&bad[i], 8, fout), CLIP_ERR_INVALID_ARGUMENT);
  }
  CHECK_EQ_INT(clip_preprocess_image_u8(&ok, 0, out), CLIP_ERR_INVALID_ARGUMENT);
  CHECK_EQ_INT(clip_preprocess_image_u8(&ok, -224, out), CLIP_ERR_INVALID_ARGUMENT);
  CHECK_EQ_INT(clip_preprocess_image(&ok, 0, fout), CLIP_ERR_INVALID_ARGUMENT);

  clip_axis_plan p;
  CHECK_EQ_INT(clip_axis_plan_make(0, 10, &p), CLIP_ERR_INVALID_ARGUMENT);
  CHECK_EQ_INT(clip_axis_plan_make(10, 0, &p), CLIP_ERR_INVALID_ARGUMENT);
  CHECK_EQ_INT(clip_axis_plan_make(10, 10, NULL), CLIP_ERR_INVALID_ARGUMENT);
  CHECK_EQ_INT(clip_axis_plan_make_range(10, 20, 15, 6, &p), CLIP_ERR_INVALID_ARGUMENT);
  CHECK_EQ_INT(clip_axis_plan_make_range(10, 20, -1, 5, &p), CLIP_ERR_INVALID_ARGUMENT);
  clip_axis_plan_free(&p); /* zeroed by the failed make: freeing is still safe */
  clip_axis_plan_free(NULL);
}

static void check_geometry(int w, int h, int size, int want_rw, int want_rh, int want_cx,
                           int want_cy) {
  int rw = -1, rh = -1, cx = -1, cy = -1;
  clip_resize_geometry(w, h, size, &rw, &rh, &cx, &cy);
  if (rw != want_rw || rh != want_rh || cx != want_cx || cy != want_cy) {
    fprintf(stderr, "geometry %dx%d @%d: got %dx%d crop (%d,%d), want %dx%d crop (%d,%d)\n", w,
            h, size, rw, rh, cx, cy, want_rw, want_rh, want_cx, want_cy);
    failures++;
  }
}

static void test_geometry(void) {
  /* 224*640/480 = 298.67 -> 298; (298-224)/2 = 37. */
  check_geometry(640, 480, 224, 298, 224, 37, 0);
  check_geometry(480, 640, 224, 224, 298, 0, 37);
  /* 224*640/427 = 335.74 -> 335; 111/2 = 55.5 -> 56 (55 is odd: half to even goes up). */
  check_geometry(640, 427, 224, 335, 224, 56, 0);
  check_geometry(427, 640, 224, 224, 335, 0, 56);
  /* 224*106/100 = 237.44 -> 237; 13/2 = 6.5 -> 6 (half to even goes down). */
  check_geometry(106, 100, 224, 237, 224, 6, 0);
  /* Unchanged sizes (no resampling), odd margins: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2. */
  check_geometry(225, 224, 224, 225, 224, 0, 0);
  check_geometry(224, 227, 224, 224, 227, 0, 2);
  check_geometry(229, 224, 224, 229, 224, 2, 0);
  check_geometry(224, 224, 224, 224, 224, 0, 0);
  /* Square and upscaling: 50x80 -> 224 x int(358.4) = 358; 134/2 = 67. */
  check_geometry(300, 300, 224, 224, 224, 0, 0);
  check_geometry(50, 80, 224, 224, 358, 0, 67);
  check_geometry(1, 1, 224, 224, 224, 0, 0);
  /* Extreme ratios: 224*4000/10 = 89600 (crop 44688); 224*100000 = 22400000. */
  check_geometry(4000, 10, 224, 89600, 224, 44688, 0);
  check_geometry(1, 100000, 224, 224, 22400000, 0, 11199888);
  /* 224*1000/37 = 6054.05 -> 6054; 5830/2 = 2915. */
  check_geometry(1000, 37, 224, 6054, 224, 2915, 0);
  /* Small model sizes: 32*640/480 = 42.67 -> 42, (42-32)/2 = 5; 64*300/200 = 96 -> 16. */
  check_geometry(640, 480, 32, 42, 32, 5, 0);
  check_geometry(200, 300, 64, 64, 96, 0, 16);
  /* NULL outputs are allowed. */
  clip_resize_geometry(640, 480, 224, NULL, NULL, NULL, NULL);
}

/* Every property the GPU kernel and the CPU passes rely on, for one axis. */
static void check_plan(int in_size, int out_size) {
  clip_axis_plan p;
  clip_status s = clip_axis_plan_make(in_size, out_size, &p);
  CHECK_EQ_INT(s, CLIP_OK);
  if (s != CLIP_OK) return;
  const double scale = (double)in_size / out_size;
  const double support = 2.0 * (scale > 1.0 ? scale : 1.0);
  CHECK_EQ_INT(p.in_size, in_size);
  CHECK_EQ_INT(p.out_size, out_size);
  CHECK_EQ_INT(p.ksize, 2 * (int)ceil(support) + 1);
  int prev_min = 0, prev_end = 0, bad = 0;
  for (int i = 0; i < out_size && bad < 5; i++) {
    const int xmin = p.bounds[2 * i], n = p.bounds[2 * i + 1];
    const int32_t *k = p.kk + (size_t)i * p.ksize;
    int ok = xmin >= 0 && n >= 1 && n <= p.ksize && xmin + n <= in_size;
    ok = ok && xmin >= prev_min && xmin + n >= prev_end; /* windows move forward */
    long long sum = 0;
    for (int t = 0; t < n; t++) sum += k[t];
    /* The doubles sum to 1; each tap rounds by at most 1/2 unit of 2^-22. */
    ok = ok && llabs(sum - (1LL << CLIP_PRECISION_BITS)) * 2 <= n;
    for (int t = n; t < p.ksize; t++) ok = ok && k[t] == 0;
    if (!ok) {
      fprintf(stderr, "plan %d -> %d: output %d has xmin %d, n %d, coefficient sum %lld\n",
              in_size, out_size, i, xmin, n, sum);
      failures++;
      bad++;
    }
    prev_min = xmin;
    prev_end = xmin + n;
  }

  /* A window of the outputs is exactly the same rows of the whole-axis plan. */
  const int first = out_size / 3, count = out_size - first < 7 ? out_size - first : 7;
  clip_axis_plan r;
  CHECK_EQ_INT(clip_axis_plan_make_range(in_size, out_size, first, count, &r), CLIP_OK);
  CHECK_EQ_INT(r.out_size, count);
  CHECK_EQ_INT(r.ksize, p.ksize);
  if (r.bounds && r.kk) {
    CHECK(memcmp(r.bounds, p.bounds + 2 * first, (size_t)count * 2 * sizeof(int)) == 0);
    CHECK(memcmp(r.kk, p.kk + (size_t)first * p.ksize,
                 (size_t)count * p.ksize * sizeof(int32_t)) == 0);
  }
  clip_axis_plan_free(&r);
  clip_axis_plan_free(&p);
  CHECK(p.bounds == NULL && p.kk == NULL);
  clip_axis_plan_free(&p); /* twice is fine */
}

static void test_axis_plans(void) {
  const int cases[][2] = {{1024, 298}, {768, 224}, {480, 224}, {640, 298}, {50, 224},
                          {80, 358},   {1, 224},   {7, 3},     {3, 7},     {2, 1},
                          {4000, 224}, {10, 224},  {225, 224}, {224, 225}, {100000, 3}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_plan(cases[i][0], cases[i][1]);

  clip_axis_plan p;
  /* 2 -> 1: scale 2, support 4, ksize 9; both taps at distance 0.25 after the stretch, so
     0.5 each = 2^21. */
  CHECK_EQ_INT(clip_axis_plan_make(2, 1, &p), CLIP_OK);
  CHECK_EQ_INT(p.ksize, 9);
  CHECK_EQ_INT(p.bounds[0], 0);
  CHECK_EQ_INT(p.bounds[1], 2);
  CHECK_EQ_INT(p.kk[0], 1 << 21);
  CHECK_EQ_INT(p.kk[1], 1 << 21);
  clip_axis_plan_free(&p);
  /* 3 -> 2: scale 1.5, support 3, ksize 7. Output 0 is centred at 0.75 and reads pixels
     0..2 at stretched distances 1/6, 1/2, 7/6: kernel 15/16, 9/16, -25/432, which normalized
     and scaled by 2^22 are 2726634.22, 1635980.53, -168310.75 (exact rationals): rounding
     half away from zero gives the values below (truncation would give -168310). */
  CHECK_EQ_INT(clip_axis_plan_make(3, 2, &p), CLIP_OK);
  CHECK_EQ_INT(p.ksize, 7);
  CHECK_EQ_INT(p.bounds[0], 0);
  CHECK_EQ_INT(p.bounds[1], 3);
  CHECK_EQ_INT(p.kk[0], 2726634);
  CHECK_EQ_INT(p.kk[1], 1635981);
  CHECK_EQ_INT(p.kk[2], -168311);
  CHECK_EQ_INT(p.kk[p.ksize + 0], -168311); /* output 1 mirrors output 0 */
  CHECK_EQ_INT(p.kk[p.ksize + 2], 2726634);
  clip_axis_plan_free(&p);
  /* Same size: the identity (the kernel is 1 at 0 and 0 at +-1, +-2). */
  CHECK_EQ_INT(clip_axis_plan_make(5, 5, &p), CLIP_OK);
  for (int i = 0; i < 5; i++) {
    const int xmin = p.bounds[2 * i];
    for (int t = 0; t < p.bounds[2 * i + 1]; t++)
      CHECK_EQ_INT(p.kk[i * p.ksize + t], xmin + t == i ? 1 << CLIP_PRECISION_BITS : 0);
  }
  clip_axis_plan_free(&p);
  /* 1 -> 3: a single source pixel, weight 1. */
  CHECK_EQ_INT(clip_axis_plan_make(1, 3, &p), CLIP_OK);
  for (int i = 0; i < 3; i++) {
    CHECK_EQ_INT(p.bounds[2 * i], 0);
    CHECK_EQ_INT(p.bounds[2 * i + 1], 1);
    CHECK_EQ_INT(p.kk[i * p.ksize], 1 << CLIP_PRECISION_BITS);
  }
  clip_axis_plan_free(&p);
}

/* A constant image stays that constant colour through any resize and crop. */
static void check_constant(int w, int h, int size) {
  static const uint8_t colour[3] = {12, 200, 255}; /* extremes must survive the rounding */
  uint8_t *px = constant_image(w, h, colour);
  uint8_t *out = (uint8_t *)malloc((size_t)size * size * 3);
  clip_image im = {px, w, h, 0};
  clip_status s = clip_preprocess_image_u8(&im, size, out);
  CHECK_EQ_INT(s, CLIP_OK);
  if (s == CLIP_OK) {
    size_t bad = 0;
    for (size_t i = 0; i < (size_t)size * size; i++) bad += memcmp(out + 3 * i, colour, 3) != 0;
    if (bad) {
      fprintf(stderr, "constant %dx%d -> %d: %zu pixels changed colour\n", w, h, size, bad);
      failures++;
    }
  }
  free(out);
  free(px);
}

static void test_shapes(void) {
  check_constant(1, 1, 224);
  check_constant(1, 100000, 224); /* resized to 224 x 22,400,000: only the crop is computed */
  check_constant(100000, 1, 224);
  check_constant(2, 3, 224);
  check_constant(1000, 700, 224);
  check_constant(4000, 10, 224);
  check_constant(1000, 700, 1);
  check_constant(3, 3, 1);

  /* 2x2 -> 1x1 (both coefficients 2^21 per axis): Pillow rounds the horizontal pass to
     uint8 before the vertical one. Red: rows (10+11+1)>>1 = 11 and (20+23+1)>>1 = 22, then
     (11+22+1)>>1 = 17, where one 2-D average would give (64+2)>>2 = 16. Green: 2, 4 -> 3. */
  const uint8_t px[2 * 2 * 3] = {10, 1, 0, 11, 2, 0, 20, 3, 0, 23, 4, 0};
  uint8_t out[3];
  clip_image im = {px, 2, 2, 0};
  CHECK_EQ_INT(clip_preprocess_image_u8(&im, 1, out), CLIP_OK);
  CHECK_EQ_INT(out[0], 17);
  CHECK_EQ_INT(out[1], 3);
  CHECK_EQ_INT(out[2], 0);

  /* Bicubic overshoot is clipped: a 5x1 image, four (255,255,0) pixels then (0,0,255),
     upscaled to 40 x 8, crop columns 16..23 (centres at source x 2.06..2.94). The step's
     ringing pushes red and green above 255 and blue below 0 there; Pillow clips both. */
  uint8_t step[5 * 3];
  for (int i = 0; i < 4; i++) step[3 * i] = step[3 * i + 1] = 255, step[3 * i + 2] = 0;
  step[12] = step[13] = 0, step[14] = 255;
  uint8_t step_out[8 * 8 * 3];
  clip_image sim = {step, 5, 1, 0};
  CHECK_EQ_INT(clip_preprocess_image_u8(&sim, 8, step_out), CLIP_OK);
  int step_bad = 0;
  for (int i = 0; i < 8 * 8; i++)
    step_bad += step_out[3 * i] != 255 || step_out[3 * i + 1] != 255 || step_out[3 * i + 2] != 0;
  CHECK_EQ_INT(step_bad, 0);

  /* The resized long side must fit an int: 1 x 10,000,000 at 224 would be 2.24e9 rows. */
  uint8_t *tall_px = (uint8_t *)calloc((size_t)10000000 * 3, 1);
  CHECK(tall_px != NULL);
  if (tall_px) {
    clip_image tall = {tall_px, 1, 10000000, 0};
    uint8_t *o224 = (uint8_t *)malloc(224 * 224 * 3);
    CHECK_EQ_INT(clip_preprocess_image_u8(&tall, 224, o224), CLIP_ERR_INVALID_ARGUMENT);
    free(o224);
    free(tall_px);
  }
}

/* A view with padded rows gives the same result as the packed image. */
static void check_stride(int w, int h, int size, int pad) {
  uint8_t *packed = random_image(w, h);
  const int stride = w * 3 + pad;
  uint8_t *padded = (uint8_t *)malloc((size_t)stride * h);
  for (int y = 0; y < h; y++) {
    memcpy(padded + (size_t)y * stride, packed + (size_t)y * w * 3, (size_t)w * 3);
    memset(padded + (size_t)y * stride + (size_t)w * 3, 0xA5, (size_t)pad); /* must be ignored */
  }
  const size_t n = (size_t)size * size * 3;
  uint8_t *a = (uint8_t *)malloc(n), *b = (uint8_t *)malloc(n);
  float *fa = (float *)malloc(n * sizeof(float)), *fb = (float *)malloc(n * sizeof(float));
  clip_image ip = {packed, w, h, 0}, iq = {padded, w, h, stride}, ie = {packed, w, h, w * 3};
  CHECK_EQ_INT(clip_preprocess_image_u8(&ip, size, a), CLIP_OK);
  CHECK_EQ_INT(clip_preprocess_image_u8(&iq, size, b), CLIP_OK);
  if (memcmp(a, b, n) != 0) {
    fprintf(stderr, "stride: %dx%d -> %d with %d bytes of padding differs\n", w, h, size, pad);
    failures++;
  }
  CHECK_EQ_INT(clip_preprocess_image_u8(&ie, size, b), CLIP_OK); /* explicit packed stride */
  CHECK(memcmp(a, b, n) == 0);
  CHECK_EQ_INT(clip_preprocess_image(&ip, size, fa), CLIP_OK);
  CHECK_EQ_INT(clip_preprocess_image(&iq, size, fb), CLIP_OK);
  CHECK(memcmp(fa, fb, n * sizeof(float)) == 0);

  /* The float output is ToTensor + Normalize of the u8 crop, planar [3][S][S]. */
  const size_t plane = (size_t)size * size;
  size_t bad = 0;
  for (size_t i = 0; i < plane; i++)
    for (int c = 0; c < 3; c++) {
      const float want = ((float)a[3 * i + c] / 255.0f - want_mean[c]) / want_std[c];
      bad += fa[c * plane + i] != want;
    }
  CHECK_EQ_INT(bad, 0);
  free(a);
  free(b);
  free(fa);
  free(fb);
  free(padded);
  free(packed);
}

static void test_strides(void) {
  check_stride(37, 53, 224, 7);   /* upscale both axes */
  check_stride(300, 200, 224, 1); /* downscale both axes */
  check_stride(224, 300, 224, 5); /* only the vertical pass runs */
  check_stride(300, 224, 224, 3); /* only the horizontal pass runs */
  check_stride(229, 224, 224, 9); /* no resampling: a pure crop */
  check_stride(640, 480, 32, 64);
}

int main(void) {
  test_invalid_arguments();
  test_geometry();
  test_axis_plans();
  test_shapes();
  test_strides();
  if (failures) {
    fprintf(stderr, "test_preprocess: %d failure(s)\n", failures);
    return 1;
  }
  printf("test_preprocess: all checks passed\n");
  return 0;
}
