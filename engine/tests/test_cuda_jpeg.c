/* test_cuda_jpeg.c: clip_engine_embed_encoded on the CUDA backend against the CPU backend, on
   every file of the decode fixtures and the e2e fixtures (good JPEGs of every kind, CMYK,
   progressive, EXIF, corrupt, truncated, PNG, HTML), with each JPEG decoder
   (clip_cuda_set_jpeg_decoder): the per-image statuses and reasons equal the CPU backend's;
   with the CPU decoder (mode 3) the embeddings match the CPU backend's to fp32 forward
   rounding; with nvJPEG (modes 0-2) they match to decode rounding (min cosine printed); the
   counters say who decoded what (CMYK always falls back to the CPU); a bad image fails alone
   (the good rows of a mixed batch match a good-only batch). Without a CUDA build or device it
   prints SKIP and exits 0. */
#define _XOPEN_SOURCE 700 /* nftw (tmpdir.h), mkdtemp */
#define _DEFAULT_SOURCE   /* dirent's DT_* */
#include <dirent.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipengine.h"
#include "clipengine_cuda.h"
#include "tmpdir.h"
#include "weights_fixture.h"
#include "check.h"

typedef __typeof__(&clip_cuda_set_jpeg_decoder) set_decoder_fn;
typedef __typeof__(&clip_cuda_jpeg_info) jpeg_info_fn;

#define MAXF 128

static int nfiles;
static char *fname[MAXF];
static uint8_t *fdata[MAXF];
static size_t fsize[MAXF];

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void add_dir(const char *rel) {
  const char *src = getenv("CLIP_SOURCE_DIR");
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/%s", src && src[0] ? src : ".", rel);
  DIR *d = opendir(dir);
  if (!d) return;
  char *names[MAXF];
  int k = 0;
  struct dirent *de;
  while ((de = readdir(d)) && k < MAXF)
    if (de->d_name[0] != '.' && strcmp(de->d_name, "GOOD") != 0) names[k++] = strdup(de->d_name);
  closedir(d);
  qsort(names, (size_t)k, sizeof *names, cmp_str);
  for (int i = 0; i < k && nfiles < MAXF; i++) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    FILE *f = fopen(path, "rb");
    if (f) {
      fseek(f, 0, SEEK_END);
      long n = ftell(f);
      fseek(f, 0, SEEK_SET);
      fdata[nfiles] = (uint8_t *)malloc(n > 0 ? (size_t)n : 1);
      fsize[nfiles] = n > 0 && fread(fdata[nfiles], 1, (size_t)n, f) == (size_t)n ? (size_t)n : 0;
      fclose(f);
      fname[nfiles++] = strdup(path);
    }
    free(names[i]);
  }
}

static clip_engine *open_engine(const char *w, clip_backend b, int mb, char *err, size_t len,
                                clip_status *s) {
  clip_engine_params p = clip_engine_default_params();
  p.weights_path = w;
  p.backend = b;
  p.precision = CLIP_PRECISION_FP32;
  p.max_batch = mb;
  p.threads = 2;
  clip_engine *e = NULL;
  *s = clip_engine_create(&p, &e, err, len);
  return e;
}

static double cosine(const float *a, const float *b, int E) {
  double ab = 0, aa = 0, bb = 0;
  for (int k = 0; k < E; k++) {
    ab += (double)a[k] * b[k];
    aa += (double)a[k] * a[k];
    bb += (double)b[k] * b[k];
  }
  return ab / (sqrt(aa * bb) + 1e-30);
}

int main(void) {
  char root[512];
  if (make_tmp_root(root, sizeof root, "clip_test_cuda_jpeg") != 0) return 1;
  wf_file wf = {0};
  wf_spec spec = wf_tiny_spec(0, "F32");
  wf_add_model(&wf, &spec);
  char wpath[700];
  snprintf(wpath, sizeof wpath, "%s/model.safetensors", root);
  if (wf_write(&wf, wpath) != 0) return 1;
  wf_free(&wf);

  char err[512];
  clip_status s;
  add_dir("internal/pipeline/decode/testdata");
  add_dir("cmd/clipd/testdata/e2e");
  const int n = nfiles;
  clip_engine *gpu = open_engine(wpath, CLIP_BACKEND_CUDA, n > 0 ? n : 1, err, sizeof err, &s);
  if (!gpu && s == CLIP_ERR_UNSUPPORTED) {
    printf("SKIP: no CUDA backend or device here (%s)\n", err);
    remove_tmp_root(root);
    return 0;
  }
  CHECK(gpu != NULL, "CUDA engine: %s", err);
  CHECK(n >= 40, "only %d fixture files (run from the source tree)", n);
  clip_engine *cpu = open_engine(wpath, CLIP_BACKEND_CPU, n, err, sizeof err, &s);
  CHECK(cpu != NULL, "CPU engine: %s", err);
  set_decoder_fn set_decoder = (set_decoder_fn)dlsym(RTLD_DEFAULT, "clip_cuda_set_jpeg_decoder");
  jpeg_info_fn jpeg_info = (jpeg_info_fn)dlsym(RTLD_DEFAULT, "clip_cuda_jpeg_info");
  CHECK(set_decoder && jpeg_info, "CUDA JPEG entry points not exported");
  if (!gpu || !cpu || !set_decoder || !jpeg_info || n < 40) return 1;
  char info_line[512];
  jpeg_info(gpu, info_line, sizeof info_line);
  printf("jpeg decoding: %s\n", info_line);
  const int nvjpeg_on = strstr(info_line, "nvjpeg off") == NULL;
  CHECK(nvjpeg_on, "nvJPEG did not start on this device: %s", info_line);

  clip_model_info mi;
  clip_engine_info(cpu, &mi);
  const int E = mi.embed_dim;
  float *ref = (float *)malloc(sizeof(float) * (size_t)n * E);
  float *got = (float *)malloc(sizeof(float) * (size_t)n * E);
  clip_status ref_st[MAXF], got_st[MAXF];
  char ref_why[MAXF][160];
  CHECK(clip_engine_embed_encoded(cpu, (const uint8_t *const *)fdata, fsize, n, ref, ref_st) == CLIP_OK,
        "CPU embed_encoded: %s", clip_engine_last_error(cpu));
  int good = 0, cmyk = -1;
  for (int i = 0; i < n; i++) {
    snprintf(ref_why[i], sizeof ref_why[i], "%s", clip_engine_image_error(cpu, i));
    good += ref_st[i] == CLIP_OK;
    if (strstr(fname[i], "/cmyk.jpg")) cmyk = i;
  }
  CHECK(good >= 30 && cmyk >= 0 && ref_st[cmyk] == CLIP_OK, "CPU reference: %d good, cmyk %d", good, cmyk);

  static const char *const modes[] = {"auto", "hybrid", "gpu-hybrid", "cpu"};
  for (int mode = 3; mode >= 0; mode--) {
    CHECK(set_decoder(gpu, mode) == CLIP_OK, "set_jpeg_decoder %d", mode);
    clip_decode_stats a, b;
    clip_engine_decode_stats(gpu, &a);
    s = clip_engine_embed_encoded(gpu, (const uint8_t *const *)fdata, fsize, n, got, got_st);
    CHECK(s == CLIP_OK, "%s: embed_encoded: %s", modes[mode], clip_engine_last_error(gpu));
    clip_engine_decode_stats(gpu, &b);
    double min_cos = 1;
    int worst = -1;
    for (int i = 0; i < n; i++) {
      CHECK(got_st[i] == ref_st[i] && strcmp(clip_engine_image_error(gpu, i), ref_why[i]) == 0,
            "%s: %s: status %d \"%s\", cpu backend %d \"%s\"", modes[mode], fname[i], got_st[i],
            clip_engine_image_error(gpu, i), ref_st[i], ref_why[i]);
      if (ref_st[i] != CLIP_OK || got_st[i] != CLIP_OK) continue;
      const double c = cosine(ref + (size_t)i * E, got + (size_t)i * E, E);
      if (c < min_cos) {
        min_cos = c;
        worst = i;
      }
    }
    const long long dev = b.device_decoded - a.device_decoded, hw = b.hardware_decoded - a.hardware_decoded,
                    cpud = b.cpu_decoded - a.cpu_decoded, fb = b.cpu_fallbacks - a.cpu_fallbacks,
                    failed = b.failed - a.failed;
    printf("%-10s min cosine vs the CPU backend %.7f (%s); device %lld (hardware %lld), cpu %lld "
           "(fallbacks %lld), failed %lld\n",
           modes[mode], min_cos, worst >= 0 ? fname[worst] : "-", dev, hw, cpud, fb, failed);
    CHECK(dev + cpud + failed == n, "%s: counters do not add up to %d", modes[mode], n);
    CHECK(dev + cpud == good, "%s: %lld + %lld decoded, want %d", modes[mode], dev, cpud, good);
    if (mode == 3) {
      CHECK(min_cos > 0.99999, "cpu decoder: min cosine %.7f vs the CPU backend", min_cos);
      CHECK(dev == 0 && cpud == good, "cpu decoder: device %lld", dev);
    } else {
      /* Decode rounding only: the tiny model's 32-pixel input keeps this loose; the GPU
         check measures B/32 on real-looking photos. */
      CHECK(min_cos > 0.99, "%s: min cosine %.7f vs the CPU backend", modes[mode], min_cos);
      CHECK(dev > 0 && fb >= 1, "%s: device %lld, fallbacks %lld (cmyk must fall back)", modes[mode], dev, fb);
    }
  }

  /* Isolation on the device: the good rows of the mixed batch equal a good-only batch. */
  set_decoder(gpu, 0);
  const uint8_t *gd[MAXF];
  size_t gs[MAXF];
  int gi[MAXF], ng = 0;
  for (int i = 0; i < n; i++)
    if (ref_st[i] == CLIP_OK) {
      gd[ng] = fdata[i];
      gs[ng] = fsize[i];
      gi[ng++] = i;
    }
  float *only = (float *)malloc(sizeof(float) * (size_t)n * E);
  clip_status only_st[MAXF];
  CHECK(clip_engine_embed_encoded(gpu, (const uint8_t *const *)fdata, fsize, n, got, got_st) == CLIP_OK, "mixed");
  CHECK(clip_engine_embed_encoded(gpu, gd, gs, ng, only, only_st) == CLIP_OK, "good only");
  for (int k = 0; k < ng; k++) {
    const double c = cosine(only + (size_t)k * E, got + (size_t)gi[k] * E, E);
    CHECK(only_st[k] == CLIP_OK && c > 0.99999, "%s: good-only vs mixed batch cosine %.7f", fname[gi[k]], c);
  }

  clip_engine_destroy(gpu);
  clip_engine_destroy(cpu);
  free(ref);
  free(got);
  free(only);
  for (int i = 0; i < n; i++) {
    free(fdata[i]);
    free(fname[i]);
  }
  remove_tmp_root(root);
  printf("test_cuda_jpeg: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
