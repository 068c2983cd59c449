/* resize_emu.cu: runs the device resize's exact per-pixel code (cuda/resize.cuh) and its host
   planning/packing (cuda/resize_plan.cu) on the CPU, and checks the uint8 crops against
   clip_preprocess_image_u8 bit for bit over many image sizes. Needs no GPU, so the index
   arithmetic of the GPU path is checked on every machine that has nvcc.
   Usage: resize_emu [count] (links libclipengine for the CPU reference and the plans). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "../../cuda/resize_plan.cu"

static uint32_t rng = 12345u;
static uint32_t next_u32(void) {
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}

/* Smooth-ish content with noise, so every tap matters. */
static void fill(std::vector<uint8_t> &img, int w, int h, size_t stride) {
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++)
        img[(size_t)y * stride + (size_t)x * 3 + c] =
            (uint8_t)((x * (c + 1) * 7 + y * (3 - c) * 5 + (next_u32() % 64)) & 255);
}

static int check_one(int w, int h, int S, int padded) {
  const size_t stride = (size_t)w * 3 + (padded ? 5 : 0);
  std::vector<uint8_t> img(stride * h + 16);
  fill(img, w, h, stride);
  clip_image im = {img.data(), w, h, padded ? (int)stride : 0};

  std::vector<uint8_t> ref((size_t)S * S * 3);
  clip_status s = clip_preprocess_image_u8(&im, S, ref.data());
  if (s != CLIP_OK) {
    printf("FAIL %dx%d: CPU reference returned %d\n", w, h, (int)s);
    return 1;
  }
  clip_image_plan p;
  char err[256];
  s = clip_image_plan_make(&im, 0, S, &p, err, sizeof err);
  if (s != CLIP_OK) {
    printf("FAIL %dx%d: plan: %s\n", w, h, err);
    return 1;
  }
  const size_t base = 256; /* as if after the descriptor region */
  std::vector<uint8_t> staging(base + p.src_bytes + p.plan_bytes);
  std::vector<uint8_t> mid(p.mid_bytes + 64);
  size_t off = base, mid_off = 0;
  clip_image_plan_pack(&im, &p, S, staging.data(), &off, &mid_off);
  if (off != staging.size() || mid_off != p.mid_bytes) {
    printf("FAIL %dx%d: packing used %zu/%zu bytes, mid %zu/%zu\n", w, h, off, staging.size(), mid_off,
           p.mid_bytes);
    clip_image_plan_free(&p);
    return 1;
  }
  const clip_resize_desc d = p.d;
  for (size_t idx = 0; idx < (size_t)d.ny * S; idx++) clip_resize_h_pixel(d, staging.data(), mid.data(), S, idx);
  size_t bad = 0;
  for (int idx = 0; idx < S * S; idx++) {
    uint8_t px[3];
    clip_resize_v_pixel(d, staging.data(), mid.data(), S, idx, px);
    for (int c = 0; c < 3; c++) bad += px[c] != ref[(size_t)idx * 3 + c];
  }
  clip_image_plan_free(&p);
  if (bad) {
    printf("FAIL %dx%d (S %d, hpass %d vpass %d): %zu of %d bytes differ\n", w, h, S, d.hpass,
           d.vpass, bad, S * S * 3);
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  const int count = argc > 1 ? atoi(argv[1]) : 200;
  const int fixed[][2] = {{1, 1}, {224, 224}, {224, 300}, {300, 224}, {1024, 768}, {768, 1024},
                          {10, 4000}, {4000, 10}, {225, 224}, {223, 500}, {640, 480}, {1, 7},
                          {3, 224}, {224, 3}, {500, 225}, {97, 61}, {2000, 1999}};
  int fails = 0, runs = 0;
  for (const auto &wh : fixed) {
    fails += check_one(wh[0], wh[1], 224, runs & 1);
    runs++;
  }
  for (int i = 0; i < count; i++) {
    const int w = 1 + (int)(next_u32() % 1200), h = 1 + (int)(next_u32() % 1200);
    const int S = (i % 5 == 0) ? 64 + (int)(next_u32() % 300) : 224;
    fails += check_one(w, h, S, i & 1);
    runs++;
  }
  printf("resize_emu: %d/%d images bit-identical to clip_preprocess_image_u8\n", runs - fails, runs);
  return fails ? 1 : 0;
}
