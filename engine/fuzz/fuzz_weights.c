/* fuzz_weights.c: libFuzzer harness for the weights loader (weights.c over safetensors.c and
   json.c): config derivation from tensor shapes, the config file beside the weights, and the
   conversion of every tensor into the fp32 arena. An input is a model.safetensors, optionally
   followed by CONFIG_SEP, one byte naming the config file ('o': open_clip_config.json, any
   other: config.json) and its contents. Both go into a private folder that is loaded twice,
   by clip_weights_read_config (checking only) and clip_weights_load (converting): they must
   agree, and a loaded arena must be readable to its end. */
#define _GNU_SOURCE /* mkdtemp */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* What separates the weights from the config in an input (the seeds use it). */
#define CONFIG_SEP "\n--clip-fuzz-config--\n"

static char dir[64], model[96], hf_config[96], oc_config[96];

static void write_file(const char *p, const uint8_t *data, size_t size) {
  FILE *fp = fopen(p, "wb");
  if (!fp || fwrite(data, 1, size, fp) != size || fclose(fp) != 0) abort();
}

/* cleanup removes the private folder when libFuzzer exits. */
static void cleanup(void) {
  unlink(model);
  unlink(hf_config);
  unlink(oc_config);
  rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!dir[0]) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/clip-fuzz-XXXXXX", tmp && strlen(tmp) < 32 ? tmp : "/tmp");
    if (!mkdtemp(dir)) abort();
    snprintf(model, sizeof model, "%s/model.safetensors", dir);
    snprintf(hf_config, sizeof hf_config, "%s/config.json", dir);
    snprintf(oc_config, sizeof oc_config, "%s/open_clip_config.json", dir);
    atexit(cleanup);
  }
  unlink(hf_config);
  unlink(oc_config);
  size_t model_len = size;
  const uint8_t *sep = memmem(data, size, CONFIG_SEP, strlen(CONFIG_SEP));
  if (sep) {
    model_len = (size_t)(sep - data);
    const uint8_t *cfg = sep + strlen(CONFIG_SEP);
    size_t cfg_len = size - model_len - strlen(CONFIG_SEP);
    if (cfg_len > 0)
      write_file(cfg[0] == 'o' ? oc_config : hf_config, cfg + 1, cfg_len - 1);
  }
  write_file(model, data, model_len);

  char err[CLIP_ERR_LEN];
  clip_config cfg;
  clip_status s1 = clip_weights_read_config(dir, &cfg, err, sizeof err);
  if (s1 != CLIP_OK && !err[0]) abort();
  clip_weights w;
  clip_status s2 = clip_weights_load(dir, &w, err, sizeof err);
  if (s2 != CLIP_OK && !err[0]) abort();
  if ((s1 == CLIP_OK) != (s2 == CLIP_OK) && s2 != CLIP_ERR_OUT_OF_MEMORY) abort();
  if (s2 == CLIP_OK) {
    if (memcmp(&cfg, &w.cfg, sizeof cfg) != 0 || !w.arena || w.cfg.width <= 0 || w.cfg.layers <= 0)
      abort();
    volatile float sum = 0;
    const float *a = (const float *)w.arena;
    for (size_t i = 0; i < w.arena_bytes / sizeof(float); i++) sum += a[i]; /* all of it readable */
    (void)sum;
  }
  clip_weights_free(&w);
  clip_weights_free(&w); /* safe twice */
  return 0;
}
