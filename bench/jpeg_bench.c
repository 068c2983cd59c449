/* jpeg_bench.c: clip_engine_embed_encoded on a folder of images, for the GPU check's nvJPEG
   part: (1) fidelity: every file through the CPU backend (the reference: libjpeg-turbo, as
   the Go decoder) and through the CUDA backend with each JPEG decoder (auto = hardware
   engines + hybrid, hybrid, gpu-hybrid, cpu), per-image statuses compared and the embeddings'
   min / mean cosine; (2) the decoders' counters (device, hardware, CPU fallbacks, failed);
   (3) speed: decode + device resize alone (clip_cuda_debug_decode) and embed_encoded end to
   end, images/s by decoder and batch size, on the folder's good JPEGs cycled to fill the
   batch. Without a CUDA device it runs the CPU reference only (a dry run) and says so.
   Lines start with FIDELITY, STATS, SPEED, SKIP or FAIL; exit status 1 on a FAIL. */
#define _DEFAULT_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clipengine.h"
#include "clipengine_cuda.h"

typedef __typeof__(&clip_cuda_set_jpeg_decoder) set_decoder_fn;
typedef __typeof__(&clip_cuda_debug_decode) debug_decode_fn;
typedef __typeof__(&clip_cuda_jpeg_info) jpeg_info_fn;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct files {
  int n;
  char **name;
  uint8_t **data;
  size_t *size;
} files;

static int load_dir(const char *dir, int max_files, files *f) {
  DIR *d = opendir(dir);
  if (!d) {
    perror(dir);
    return -1;
  }
  int cap = 0;
  char **names = NULL;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.') continue;
    if (f->n == cap) {
      cap = cap ? 2 * cap : 256;
      names = (char **)realloc(names, sizeof *names * (size_t)cap);
    }
    names[f->n++] = strdup(de->d_name);
  }
  closedir(d);
  qsort(names, (size_t)f->n, sizeof *names, cmp_str);
  if (max_files > 0 && f->n > max_files) f->n = max_files;
  f->name = names;
  f->data = (uint8_t **)calloc((size_t)f->n + 1, sizeof *f->data);
  f->size = (size_t *)calloc((size_t)f->n + 1, sizeof *f->size);
  for (int i = 0; i < f->n; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    FILE *fp = fopen(path, "rb");
    if (!fp) continue;
    fseek(fp, 0, SEEK_END);
    const long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    f->data[i] = (uint8_t *)malloc(len > 0 ? (size_t)len : 1);
    if (len > 0 && fread(f->data[i], 1, (size_t)len, fp) == (size_t)len) f->size[i] = (size_t)len;
    fclose(fp);
  }
  return 0;
}

static clip_engine *open_engine(const char *weights, clip_backend b, int max_batch, int threads,
                                char *err, size_t len) {
  clip_engine_params p = clip_engine_default_params();
  p.weights_path = weights;
  p.backend = b;
  p.precision = CLIP_PRECISION_FP32; /* fidelity: the decoders, not fp16 rounding */
  p.max_batch = max_batch;
  p.threads = threads;
  clip_engine *e = NULL;
  return clip_engine_create(&p, &e, err, len) == CLIP_OK ? e : NULL;
}

/* Every file through e in batches of `batch`: embeddings and statuses. */
static int embed_all(clip_engine *e, const files *f, int batch, int E, float *out, clip_status *st) {
  for (int i0 = 0; i0 < f->n; i0 += batch) {
    const int m = f->n - i0 < batch ? f->n - i0 : batch;
    if (clip_engine_embed_encoded(e, (const uint8_t *const *)f->data + i0, f->size + i0, m,
                                  out + (size_t)i0 * E, st + i0) != CLIP_OK) {
      printf("FAIL embed_encoded: %s\n", clip_engine_last_error(e));
      return -1;
    }
  }
  return 0;
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

static const char *const mode_names[] = {"auto", "hybrid", "gpu-hybrid", "cpu"};

int main(int argc, char **argv) {
  const char *weights = NULL, *dir = NULL;
  int batches[8] = {32, 128, 256}, nb = 3, iters = 5, threads = 0, max_files = 0;
  double min_cos_cpu = 0.9999;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--weights") && i + 1 < argc) weights = argv[++i];
    else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--max-files") && i + 1 < argc) max_files = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--batches") && i + 1 < argc) {
      nb = 0;
      for (char *t = strtok(argv[++i], ","); t && nb < 8; t = strtok(NULL, ",")) batches[nb++] = atoi(t);
    } else {
      fprintf(stderr,
              "usage: jpeg_bench --weights PATH --dir FOLDER [--batches 32,128,256] [--iters N]\n"
              "                  [--threads N] [--max-files N]\n");
      return 2;
    }
  }
  if (!weights || !dir || nb == 0) {
    fprintf(stderr, "jpeg_bench: --weights and --dir are required\n");
    return 2;
  }
  files f = {0};
  if (load_dir(dir, max_files, &f) != 0 || f.n == 0) {
    printf("FAIL no files in %s\n", dir);
    return 1;
  }
  int max_b = 1;
  for (int k = 0; k < nb; k++) max_b = batches[k] > max_b ? batches[k] : max_b;
  char err[512];
  int failures = 0;

  /* The reference: the CPU backend. */
  clip_engine *cpu = open_engine(weights, CLIP_BACKEND_CPU, 64, threads, err, sizeof err);
  if (!cpu) {
    printf("FAIL cpu engine: %s\n", err);
    return 1;
  }
  clip_model_info info;
  clip_engine_info(cpu, &info);
  const int E = info.embed_dim;
  float *ref = (float *)malloc(sizeof(float) * (size_t)f.n * E);
  float *got = (float *)malloc(sizeof(float) * (size_t)f.n * E);
  clip_status *ref_st = (clip_status *)malloc(sizeof(clip_status) * (size_t)f.n);
  clip_status *got_st = (clip_status *)malloc(sizeof(clip_status) * (size_t)f.n);
  double t0 = now_s();
  if (embed_all(cpu, &f, 64, E, ref, ref_st) != 0) return 1;
  const double cpu_s = now_s() - t0;
  int good = 0;
  for (int i = 0; i < f.n; i++) good += ref_st[i] == CLIP_OK;
  printf("SPEED cpu backend embed_encoded batch 64 (%s): %.1f images/s over %d files (%d decodable)\n",
         clip_engine_backend_name(cpu), f.n / cpu_s, f.n, good);
  clip_engine_destroy(cpu);

  clip_engine *gpu = open_engine(weights, CLIP_BACKEND_CUDA, max_b, threads, err, sizeof err);
  set_decoder_fn set_decoder = (set_decoder_fn)dlsym(RTLD_DEFAULT, "clip_cuda_set_jpeg_decoder");
  debug_decode_fn debug_decode = (debug_decode_fn)dlsym(RTLD_DEFAULT, "clip_cuda_debug_decode");
  jpeg_info_fn jpeg_info = (jpeg_info_fn)dlsym(RTLD_DEFAULT, "clip_cuda_jpeg_info");
  if (!gpu || !set_decoder || !debug_decode || !jpeg_info) {
    printf("SKIP cuda: %s (dry run: the CPU reference only)\n", gpu ? "no CUDA entry points" : err);
    return 0;
  }
  char line[512];
  jpeg_info(gpu, line, sizeof line);
  printf("INFO %s; %s\n", clip_engine_backend_name(gpu), line);

  /* Fidelity and counters, per decoder. */
  for (int mode = 0; mode < 4; mode++) {
    if (set_decoder(gpu, mode) != CLIP_OK) {
      printf("FAIL set_jpeg_decoder %d: %s\n", mode, clip_engine_last_error(gpu));
      failures++;
      continue;
    }
    clip_decode_stats a, b;
    clip_engine_decode_stats(gpu, &a);
    if (embed_all(gpu, &f, max_b, E, got, got_st) != 0) {
      failures++;
      continue;
    }
    clip_engine_decode_stats(gpu, &b);
    double min_cos = 1, sum_cos = 0;
    int compared = 0, mismatched = 0, worst = -1;
    for (int i = 0; i < f.n; i++) {
      if (got_st[i] != ref_st[i]) {
        mismatched++;
        printf("  status differs: %s: cpu %d, %s %d (%s)\n", f.name[i], ref_st[i], mode_names[mode],
               got_st[i], clip_engine_image_error(gpu, i % max_b));
        continue;
      }
      if (ref_st[i] != CLIP_OK) continue;
      const double c = cosine(ref + (size_t)i * E, got + (size_t)i * E, E);
      if (c < min_cos) {
        min_cos = c;
        worst = i;
      }
      sum_cos += c;
      compared++;
    }
    const int bad = mismatched > 0 || (mode == 3 && min_cos < min_cos_cpu);
    failures += bad;
    printf("FIDELITY %-10s %d images: min cosine %.7f (%s), mean %.7f; statuses equal %d/%d%s\n",
           mode_names[mode], compared, min_cos, worst >= 0 ? f.name[worst] : "-",
           compared ? sum_cos / compared : 0.0, f.n - mismatched, f.n, bad ? "  FAIL" : "");
    printf("STATS    %-10s device %lld (hardware %lld), cpu %lld (fallbacks %lld), failed %lld\n",
           mode_names[mode], (long long)(b.device_decoded - a.device_decoded),
           (long long)(b.hardware_decoded - a.hardware_decoded), (long long)(b.cpu_decoded - a.cpu_decoded),
           (long long)(b.cpu_fallbacks - a.cpu_fallbacks), (long long)(b.failed - a.failed));
  }

  /* Speed on the decodable files, cycled to fill each batch. */
  int *ok = (int *)malloc(sizeof(int) * (size_t)f.n);
  int nok = 0;
  for (int i = 0; i < f.n; i++)
    if (ref_st[i] == CLIP_OK) ok[nok++] = i;
  const uint8_t **bd = (const uint8_t **)malloc(sizeof *bd * (size_t)max_b);
  size_t *bs = (size_t *)malloc(sizeof *bs * (size_t)max_b);
  clip_status *bst = (clip_status *)malloc(sizeof *bst * (size_t)max_b);
  float *bout = (float *)malloc(sizeof(float) * (size_t)max_b * E);
  double *times = (double *)malloc(sizeof(double) * (size_t)(iters > 0 ? iters : 1));
  for (int mode = 0; mode < 4 && nok > 0; mode++) {
    set_decoder(gpu, mode);
    for (int k = 0; k < nb; k++) {
      const int B = batches[k];
      for (int j = 0; j < B; j++) {
        bd[j] = f.data[ok[j % nok]];
        bs[j] = f.size[ok[j % nok]];
      }
      double best_dec = 0, med_dec = 0, med_e2e = 0;
      for (int pass = 0; pass < 2; pass++) {
        for (int w = 0; w < 2; w++) /* warm-up */
          pass ? clip_engine_embed_encoded(gpu, bd, bs, B, bout, bst) : debug_decode(gpu, bd, bs, B, bst);
        for (int it = 0; it < iters; it++) {
          const double s0 = now_s();
          const clip_status s = pass ? clip_engine_embed_encoded(gpu, bd, bs, B, bout, bst)
                                     : debug_decode(gpu, bd, bs, B, bst);
          times[it] = now_s() - s0;
          if (s != CLIP_OK) {
            printf("FAIL %s batch %d: %s\n", mode_names[mode], B, clip_engine_last_error(gpu));
            failures++;
            break;
          }
        }
        qsort(times, (size_t)iters, sizeof *times, cmp_double);
        if (pass == 0) {
          med_dec = B / times[iters / 2];
          best_dec = B / times[0];
        } else {
          med_e2e = B / times[iters / 2];
        }
      }
      printf("SPEED    %-10s batch %4d: decode+resize %.0f images/s (best %.0f), embed_encoded end to "
             "end %.0f images/s\n",
             mode_names[mode], B, med_dec, best_dec, med_e2e);
    }
  }
  clip_engine_destroy(gpu);
  return failures ? 1 : 0;
}
