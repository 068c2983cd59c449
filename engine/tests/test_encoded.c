/* test_encoded.c: clip_engine_embed_encoded on the CPU backend: a batch mixing good JPEGs
   (4:2:0, grayscale, CMYK, progressive, restart markers) with a corrupt, a truncated, an
   empty, a PNG and an HTML body: each bad image fails alone with its own status and reason
   and a zero row, each good row equals that image embedded alone; the counters, the pixel
   limit, EXIF orientation, argument checks. The decoded pixels are compared with the Go
   decoder's in cgo/engine (TestEmbedEncodedMatchesGoDecoder). */
#define _XOPEN_SOURCE 700 /* nftw (tmpdir.h), mkdtemp */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipengine.h"
#include "tmpdir.h"
#include "weights_fixture.h"
#include "check.h"

typedef struct blob {
  uint8_t *data;
  size_t size;
} blob;

static blob read_file(const char *rel) {
  blob b = {NULL, 0};
  const char *src = getenv("CLIP_SOURCE_DIR");
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", src && src[0] ? src : ".", rel);
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    return b;
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  b.data = (uint8_t *)malloc(n > 0 ? (size_t)n : 1);
  if (b.data && n > 0 && fread(b.data, 1, (size_t)n, f) == (size_t)n) b.size = (size_t)n;
  fclose(f);
  return b;
}

#define DEC "internal/pipeline/decode/testdata/"
#define E2E "cmd/clipd/testdata/e2e/"

static int all_zero(const float *v, int n) {
  for (int i = 0; i < n; i++)
    if (v[i] != 0.0f) return 0;
  return 1;
}

int main(void) {
  char root[512];
  if (make_tmp_root(root, sizeof root, "clip_test_encoded") != 0) return 1;
  wf_file f = {0};
  wf_spec spec = wf_tiny_spec(0, "F32");
  wf_add_model(&f, &spec);
  char wpath[700];
  snprintf(wpath, sizeof wpath, "%s/model.safetensors", root);
  if (wf_write(&f, wpath) != 0) {
    fprintf(stderr, "cannot write %s\n", wpath);
    return 1;
  }
  wf_free(&f);

  clip_engine_params p = clip_engine_default_params();
  p.weights_path = wpath;
  p.backend = CLIP_BACKEND_CPU;
  p.max_batch = 40; /* more than one 16-image forward slice */
  p.threads = 2;
  clip_engine *e = NULL;
  char err[512];
  clip_status s = clip_engine_create(&p, &e, err, sizeof err);
  CHECK(s == CLIP_OK, "create: %s", err);
  if (s != CLIP_OK) return 1;
  clip_model_info info;
  clip_engine_info(e, &info);
  const int E = info.embed_dim;

  /* The batch: good and bad interleaved, with what each bad one must give. */
  struct item {
    const char *name;
    blob b;
    clip_status want;
    const char *reason; /* prefix of clip_engine_image_error */
  } items[] = {
      {DEC "s420.jpg", {0}, CLIP_OK, ""},
      {E2E "corrupt.jpg", {0}, CLIP_ERR_IMAGE_CORRUPT, "corrupt jpeg: "},
      {DEC "gray.jpg", {0}, CLIP_OK, ""},
      {E2E "truncated.jpg", {0}, CLIP_ERR_IMAGE_TRUNCATED, "truncated jpeg"},
      {DEC "cmyk.jpg", {0}, CLIP_OK, ""},
      {"(empty)", {0}, CLIP_ERR_UNSUPPORTED, "not a jpeg (empty)"},
      {DEC "progressive.jpg", {0}, CLIP_OK, ""},
      {DEC "rgb.png", {0}, CLIP_ERR_UNSUPPORTED, "not a jpeg (png)"},
      {DEC "restart.jpg", {0}, CLIP_OK, ""},
      {E2E "page.html", {0}, CLIP_ERR_UNSUPPORTED, "not a jpeg (starts with 3c"},
      {DEC "tiny_7x3.jpg", {0}, CLIP_OK, ""},
      {DEC "photo_1024x768_q90.jpg", {0}, CLIP_OK, ""},
  };
  const int n = (int)(sizeof items / sizeof items[0]);
  const uint8_t *data[64];
  size_t sizes[64];
  for (int i = 0; i < n; i++) {
    if (strcmp(items[i].name, "(empty)") != 0) {
      items[i].b = read_file(items[i].name);
      CHECK(items[i].b.size > 0, "fixture %s is missing (run from the source tree)", items[i].name);
    }
    data[i] = items[i].b.data;
    sizes[i] = items[i].b.size;
  }

  float *out = (float *)malloc(sizeof(float) * 64 * E);
  float *solo = (float *)malloc(sizeof(float) * E);
  clip_status per[64];
  for (int i = 0; i < 64 * E; i++) out[i] = 42.0f; /* failed rows must come back zeroed */
  s = clip_engine_embed_encoded(e, data, sizes, n, out, per);
  CHECK(s == CLIP_OK, "batch: %s (%s)", clip_status_string(s), clip_engine_last_error(e));
  int good = 0;
  for (int i = 0; i < n; i++) {
    const char *why = clip_engine_image_error(e, i);
    CHECK(per[i] == items[i].want, "%s: status %d (%s, \"%s\"), want %d", items[i].name, per[i],
          clip_status_string(per[i]), why, items[i].want);
    CHECK(strncmp(why, items[i].reason, strlen(items[i].reason)) == 0 &&
              (items[i].want != CLIP_OK || why[0] == 0),
          "%s: reason \"%s\", want it to start with \"%s\"", items[i].name, why, items[i].reason);
    if (items[i].want == CLIP_OK) {
      good++;
      CHECK(!all_zero(out + (size_t)i * E, E), "%s: a good image's row is zero", items[i].name);
    } else {
      CHECK(all_zero(out + (size_t)i * E, E), "%s: a failed image's row is not zeroed", items[i].name);
    }
  }
  printf("batch reasons:");
  for (int i = 0; i < n; i++)
    if (per[i] != CLIP_OK) printf(" [%s: %s]", items[i].name, clip_engine_image_error(e, i));
  printf("\n");

  /* The bad images change nothing for the good ones: the good images alone, as one batch,
     give the mixed batch's rows bit for bit (the same forwards: the CPU GEMM's rounding may
     depend on the batch size, so the comparison keeps the batch); each good image on its
     own gives its row up to that rounding. */
  const uint8_t *gdata[64];
  size_t gsizes[64];
  int gidx[64], ng = 0;
  for (int i = 0; i < n; i++)
    if (items[i].want == CLIP_OK) {
      gdata[ng] = data[i];
      gsizes[ng] = sizes[i];
      gidx[ng++] = i;
    }
  float *gout = (float *)malloc(sizeof(float) * 64 * E);
  clip_status gper[64];
  s = clip_engine_embed_encoded(e, gdata, gsizes, ng, gout, gper);
  CHECK(s == CLIP_OK, "good-only batch: %s", clip_engine_last_error(e));
  for (int k = 0; k < ng; k++) {
    const int i = gidx[k];
    CHECK(gper[k] == CLIP_OK, "%s in the good-only batch: %d", items[i].name, gper[k]);
    CHECK(memcmp(gout + (size_t)k * E, out + (size_t)i * E, sizeof(float) * E) == 0,
          "%s: embedding in the mixed batch differs from the good-only batch", items[i].name);
    clip_status one;
    s = clip_engine_embed_encoded(e, &data[i], &sizes[i], 1, solo, &one);
    CHECK(s == CLIP_OK && one == CLIP_OK, "%s alone: %s / %s", items[i].name, clip_status_string(s),
          clip_status_string(one));
    double dot = 0, aa = 0, bb = 0, max_abs = 0;
    for (int c = 0; c < E; c++) {
      const double a = solo[c], b = out[(size_t)i * E + c];
      dot += a * b;
      aa += a * a;
      bb += b * b;
      if (fabs(a - b) > max_abs) max_abs = fabs(a - b);
    }
    const double cosine = dot / (sqrt(aa * bb) + 1e-30);
    CHECK(cosine > 0.99999 && max_abs < 1e-3 * sqrt(bb / E) + 1e-6,
          "%s alone vs in the batch: cosine %.9f, max |diff| %g", items[i].name, cosine, max_abs);
  }
  free(gout);

  /* Counters: every image counted once. */
  clip_decode_stats st;
  CHECK(clip_engine_decode_stats(e, &st) == CLIP_OK, "decode_stats");
  CHECK(st.cpu_decoded == 3 * good && st.failed == n - good && st.device_decoded == 0 &&
            st.hardware_decoded == 0 && st.cpu_fallbacks == 0,
        "stats: cpu %lld failed %lld device %lld (want cpu %d failed %d)", (long long)st.cpu_decoded,
        (long long)st.failed, (long long)st.device_decoded, 3 * good, n - good);

  /* More than one forward slice: 36 images, good and bad repeating; rows equal the first
     batch's rows of the same images. */
  const uint8_t *big[40];
  size_t bigs[40];
  for (int i = 0; i < 36; i++) {
    big[i] = data[(i * 5) % n];
    bigs[i] = sizes[(i * 5) % n];
  }
  float *bout = (float *)malloc(sizeof(float) * 40 * E);
  clip_status bper[40];
  s = clip_engine_embed_encoded(e, big, bigs, 36, bout, bper);
  CHECK(s == CLIP_OK, "36-image batch: %s", clip_engine_last_error(e));
  for (int i = 0; i < 36; i++) {
    const int k = (i * 5) % n;
    CHECK(bper[i] == items[k].want, "36-image batch, image %d (%s): status %d", i, items[k].name, bper[i]);
    CHECK(memcmp(bout + (size_t)i * E, out + (size_t)k * E, sizeof(float) * E) == 0,
          "36-image batch, image %d (%s): row differs from the first batch", i, items[k].name);
  }

  /* The pixel limit: 1024x768 is over 700,000 pixels; the small images pass. */
  clip_decode_options o = {0};
  o.max_pixels = 700000;
  CHECK(clip_engine_set_decode_options(e, &o) == CLIP_OK, "set_decode_options");
  s = clip_engine_embed_encoded(e, data, sizes, n, out, per);
  CHECK(s == CLIP_OK && per[n - 1] == CLIP_ERR_IMAGE_TOO_LARGE && per[0] == CLIP_OK,
        "max_pixels: %d / %d", per[n - 1], per[0]);
  CHECK(strcmp(clip_engine_image_error(e, n - 1), "too many pixels (1024x768)") == 0,
        "max_pixels reason: %s", clip_engine_image_error(e, n - 1));
  o.max_pixels = 0;
  o.apply_exif_orientation = 2;
  CHECK(clip_engine_set_decode_options(e, &o) == CLIP_ERR_INVALID_ARGUMENT, "exif 2 accepted");

  /* EXIF orientation 6 (a 90-degree turn): the embedding changes only when asked. */
  blob ex = read_file(DEC "exif6.jpg");
  float *plain = (float *)malloc(sizeof(float) * E), *turned = (float *)malloc(sizeof(float) * E);
  const uint8_t *exd = ex.data;
  clip_status one;
  o.apply_exif_orientation = 0;
  clip_engine_set_decode_options(e, &o);
  s = clip_engine_embed_encoded(e, &exd, &ex.size, 1, plain, &one);
  CHECK(s == CLIP_OK && one == CLIP_OK, "exif6 plain");
  o.apply_exif_orientation = 1;
  clip_engine_set_decode_options(e, &o);
  s = clip_engine_embed_encoded(e, &exd, &ex.size, 1, turned, &one);
  CHECK(s == CLIP_OK && one == CLIP_OK, "exif6 oriented");
  CHECK(memcmp(plain, turned, sizeof(float) * E) != 0, "exif6: orientation made no difference");

  /* Arguments: n above max_batch, a NULL pointer with bytes, NULL arrays. */
  CHECK(clip_engine_embed_encoded(e, big, bigs, 41, bout, bper) == CLIP_ERR_INVALID_ARGUMENT, "n > max_batch");
  const uint8_t *nul[1] = {NULL};
  size_t five[1] = {5};
  CHECK(clip_engine_embed_encoded(e, nul, five, 1, bout, bper) == CLIP_ERR_INVALID_ARGUMENT, "NULL data with 5 bytes");
  CHECK(clip_engine_embed_encoded(e, big, bigs, 2, bout, NULL) == CLIP_ERR_INVALID_ARGUMENT, "NULL per_image");
  CHECK(clip_engine_embed_encoded(e, NULL, NULL, 0, NULL, NULL) == CLIP_OK, "n = 0");
  CHECK(strcmp(clip_engine_image_error(e, 0), "") == 0, "image_error after n = 0");
  CHECK(clip_engine_embed_encoded(NULL, big, bigs, 1, bout, bper) == CLIP_ERR_INVALID_ARGUMENT, "NULL engine");
  int64_t dev = -1;
  int64_t dev_big = -1;
  CHECK(clip_decode_device_bytes(64, &dev) == CLIP_OK && dev >= 0, "decode_device_bytes");
  CHECK(clip_decode_device_bytes(1024, &dev_big) == CLIP_OK && dev_big >= dev, "decode_device_bytes 1024");
  CHECK(clip_decode_device_bytes(-1, &dev) == CLIP_ERR_INVALID_ARGUMENT, "decode_device_bytes(-1)");
  CHECK(strcmp(clip_status_string(CLIP_ERR_IMAGE_TRUNCATED), "truncated image") == 0, "status string");

  clip_engine_destroy(e);
  for (int i = 0; i < n; i++) free(items[i].b.data);
  free(ex.data);
  free(out);
  free(solo);
  free(bout);
  free(plain);
  free(turned);
  remove_tmp_root(root);
  printf("test_encoded: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
