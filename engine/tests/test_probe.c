/* test_probe.c: clip_weights_probe reads the same config an engine reports (on the committed
   golden models, by directory and by file) and refuses a bad file with the status and message
   clip_engine_create gives; clip_backend_resolve agrees with the backend create picks. */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "weights_fixture.h"
#include "check.h"
#include "tmpdir.h"

static const char *const golden[] = {"tiny_hf_erf_f16", "tiny_openai_noconfig_f16",
                                     "tiny_openai_quick_f32"};

static char tmp_root[512];

static void print_info(const char *label, const clip_model_info *m) {
  fprintf(stderr,
          "  %s: image %d patch %d width %d layers %d heads %d mlp %d embed %d quick_gelu %d\n",
          label, m->image_size, m->patch_size, m->width, m->layers, m->heads, m->mlp_width,
          m->embed_dim, m->quick_gelu);
}

static int same_info(const clip_model_info *a, const clip_model_info *b) {
  return a->image_size == b->image_size && a->patch_size == b->patch_size &&
         a->width == b->width && a->layers == b->layers && a->heads == b->heads &&
         a->mlp_width == b->mlp_width && a->embed_dim == b->embed_dim &&
         a->quick_gelu == b->quick_gelu;
}

/* Probing `path` gives what clip_engine_info of a CPU engine on it gives. */
static void probe_matches_engine(const char *path) {
  clip_model_info probed;
  memset(&probed, 0x5A, sizeof probed);
  char err[CLIP_ERR_LEN] = "";
  clip_status s = clip_weights_probe(path, &probed, err, sizeof err);
  CHECK(s == CLIP_OK, "probe %s: %s: %s", path, clip_status_string(s), err);
  CHECK(err[0] == 0, "probe %s: a success leaves a message: %s", path, err);

  clip_engine_params p = clip_engine_default_params();
  p.weights_path = path;
  p.backend = CLIP_BACKEND_CPU;
  p.threads = 1;
  clip_engine *e = NULL;
  s = clip_engine_create(&p, &e, err, sizeof err);
  CHECK(s == CLIP_OK, "create %s: %s", path, err);
  if (s != CLIP_OK) return;
  clip_model_info created;
  CHECK(clip_engine_info(e, &created) == CLIP_OK, "info");
  int same = same_info(&probed, &created);
  CHECK(same, "probe %s differs from the engine's info", path);
  if (!same) {
    print_info("probe ", &probed);
    print_info("engine", &created);
  }
  CHECK(probed.width > 0 && probed.embed_dim > 0 && probed.layers > 0, "probe %s: empty info",
        path);
  clip_engine_destroy(e);
}

/* A misshaped tensor: probe and create fail alike, with the tensor's name. */
static void probe_fails_like_create(const char *label, const char *path, clip_status want,
                                    const char *sub) {
  clip_model_info m;
  memset(&m, 0x5A, sizeof m);
  char perr[CLIP_ERR_LEN] = "", cerr[CLIP_ERR_LEN] = "";
  clip_status ps = clip_weights_probe(path, &m, perr, sizeof perr);
  clip_engine_params p = clip_engine_default_params();
  p.weights_path = path;
  p.backend = CLIP_BACKEND_CPU;
  clip_engine *e = NULL;
  clip_status cs = clip_engine_create(&p, &e, cerr, sizeof cerr);
  if (getenv("CLIP_TEST_VERBOSE")) printf("%-16s %d %s\n", label, (int)ps, perr);
  CHECK(ps == want, "%s: probe status %d, want %d (%s)", label, (int)ps, (int)want, perr);
  CHECK(cs == ps, "%s: create status %d, probe %d", label, (int)cs, (int)ps);
  CHECK(strcmp(perr, cerr) == 0, "%s: probe says \"%s\", create \"%s\"", label, perr, cerr);
  CHECK(!sub || strstr(perr, sub), "%s: message \"%s\" lacks \"%s\"", label, perr, sub);
  CHECK(m.width == 0 && m.embed_dim == 0 && m.layers == 0, "%s: *out not zeroed on failure",
        label);
  clip_engine_destroy(e);
}

static void test_golden(void) {
  const char *src = getenv("CLIP_SOURCE_DIR");
  for (size_t i = 0; i < sizeof golden / sizeof golden[0]; i++) {
    char dir[700], file[800];
    snprintf(dir, sizeof dir, "%s/testdata/golden/%s", src && src[0] ? src : ".", golden[i]);
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    probe_matches_engine(dir);
    probe_matches_engine(file);
  }
}

static void test_bad_weights(void) {
  char dir[600], path[700];
  snprintf(dir, sizeof dir, "%s/bad", tmp_root);
  if (mkdir(dir, 0755) != 0) {
    perror(dir);
    abort();
  }
  /* c_proj of block 1 with its dimensions swapped */
  wf_spec spec = wf_tiny_spec(0, "F32");
  wf_file f = {0};
  wf_add_model(&f, &spec);
  const char *bad = "visual.transformer.resblocks.1.mlp.c_proj.weight";
  wf_tensor *t = wf_find(&f, bad);
  CHECK(t && t->ndim == 2, "fixture has %s", bad);
  if (t) {
    int64_t d = t->shape[0];
    t->shape[0] = t->shape[1];
    t->shape[1] = d;
  }
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  if (wf_write(&f, path) != 0) abort();
  wf_free(&f);
  probe_fails_like_create("misshaped", path, CLIP_ERR_BAD_WEIGHTS, bad);
  probe_fails_like_create("misshaped dir", dir, CLIP_ERR_BAD_WEIGHTS, bad);

  snprintf(path, sizeof path, "%s/missing.safetensors", dir);
  probe_fails_like_create("missing file", path, CLIP_ERR_IO, "cannot open");

  /* a config file that disagrees with the shapes */
  snprintf(dir, sizeof dir, "%s/disagree", tmp_root);
  mkdir(dir, 0755);
  spec = wf_tiny_spec(1, "F16");
  memset(&f, 0, sizeof f);
  wf_add_model(&f, &spec);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  if (wf_write(&f, path) != 0) abort();
  wf_free(&f);
  snprintf(path, sizeof path, "%s/config.json", dir);
  FILE *fp = fopen(path, "wb");
  fputs("{\"vision_config\": {\"hidden_size\": 128}}", fp);
  fclose(fp);
  probe_fails_like_create("config disagrees", dir, CLIP_ERR_BAD_WEIGHTS, "hidden_size");

  clip_model_info m;
  char err[CLIP_ERR_LEN];
  CHECK(clip_weights_probe("", &m, err, sizeof err) == CLIP_ERR_INVALID_ARGUMENT, "empty path");
  CHECK(clip_weights_probe(NULL, &m, NULL, 0) == CLIP_ERR_INVALID_ARGUMENT, "NULL path");
  CHECK(clip_weights_probe(dir, NULL, err, sizeof err) == CLIP_ERR_INVALID_ARGUMENT, "NULL out");
}

/* clip_backend_resolve answers what clip_engine_create then does, on any build and machine. */
static void test_backend_resolve(void) {
  const char *src = getenv("CLIP_SOURCE_DIR");
  char weights[700];
  snprintf(weights, sizeof weights, "%s/testdata/golden/%s", src && src[0] ? src : ".", golden[2]);

  clip_backend_info bi;
  char err[CLIP_ERR_LEN];
  CHECK(clip_backend_resolve(CLIP_BACKEND_CPU, 0, &bi, err, sizeof err) == CLIP_OK, "cpu: %s", err);
  CHECK(bi.backend == CLIP_BACKEND_CPU && strcmp(bi.device_name, "cpu") == 0 &&
            bi.memory_bytes == 0,
        "cpu resolves to backend %d \"%s\" %lld", (int)bi.backend, bi.device_name,
        (long long)bi.memory_bytes);

  clip_backend_info cuda;
  char cuda_err[CLIP_ERR_LEN] = "";
  clip_status cs = clip_backend_resolve(CLIP_BACKEND_CUDA, 0, &cuda, cuda_err, sizeof cuda_err);
  clip_backend_info autob;
  CHECK(clip_backend_resolve(CLIP_BACKEND_AUTO, 0, &autob, err, sizeof err) == CLIP_OK,
        "auto never fails: %s", err);
  printf("test_probe: cuda device 0: %s; auto -> %s\n",
         cs == CLIP_OK ? cuda.device_name : cuda_err, autob.device_name);
  if (cs == CLIP_OK) {
    CHECK(cuda.backend == CLIP_BACKEND_CUDA && cuda.device_name[0] && cuda.memory_bytes > 0,
          "cuda resolves to backend %d \"%s\" %lld", (int)cuda.backend, cuda.device_name,
          (long long)cuda.memory_bytes);
    CHECK(autob.backend == CLIP_BACKEND_CUDA, "auto resolves to %d with a usable device",
          (int)autob.backend);
  } else {
    CHECK(cs == CLIP_ERR_UNSUPPORTED, "cuda without a device: status %d (%s)", (int)cs, cuda_err);
    CHECK(cuda_err[0] != 0, "cuda without a device: no message");
    CHECK(autob.backend == CLIP_BACKEND_CPU && strcmp(autob.device_name, "cpu") == 0,
          "auto without a device resolves to %d \"%s\"", (int)autob.backend, autob.device_name);
    /* create with an explicit CUDA fails the same way */
    clip_engine_params p = clip_engine_default_params();
    p.weights_path = weights;
    p.backend = CLIP_BACKEND_CUDA;
    clip_engine *e = NULL;
    char cerr[CLIP_ERR_LEN] = "";
    clip_status s = clip_engine_create(&p, &e, cerr, sizeof cerr);
    CHECK(s == cs && strcmp(cerr, cuda_err) == 0, "create(cuda) says %d \"%s\", resolve %d \"%s\"",
          (int)s, cerr, (int)cs, cuda_err);
    clip_engine_destroy(e);
    /* and with AUTO gives a CPU engine */
    p.backend = CLIP_BACKEND_AUTO;
    p.threads = 1;
    s = clip_engine_create(&p, &e, cerr, sizeof cerr);
    CHECK(s == CLIP_OK, "create(auto): %s", cerr);
    if (s == CLIP_OK)
      CHECK(strncmp(clip_engine_backend_name(e), "cpu", 3) == 0, "auto made a \"%s\" engine",
            clip_engine_backend_name(e));
    clip_engine_destroy(e);
  }
  clip_backend_info other;
  memset(&other, 0, sizeof other);
  cs = clip_backend_resolve(CLIP_BACKEND_AUTO, 9999, &other, err, sizeof err);
  CHECK(cs == CLIP_OK && other.backend == CLIP_BACKEND_CPU, "auto on device 9999: %d %d",
        (int)cs, (int)other.backend);
  cs = clip_backend_resolve(CLIP_BACKEND_CUDA, 9999, &other, err, sizeof err);
  CHECK(cs == CLIP_ERR_UNSUPPORTED && err[0], "cuda on device 9999: %d \"%s\"", (int)cs, err);
  CHECK(clip_backend_resolve(CLIP_BACKEND_CPU, -1, &other, err, sizeof err) ==
            CLIP_ERR_INVALID_ARGUMENT,
        "negative device");
  CHECK(clip_backend_resolve((clip_backend)7, 0, &other, err, sizeof err) ==
            CLIP_ERR_INVALID_ARGUMENT,
        "unknown backend");
  CHECK(clip_backend_resolve(CLIP_BACKEND_CPU, 0, NULL, err, sizeof err) ==
            CLIP_ERR_INVALID_ARGUMENT,
        "NULL out");
}

int main(void) {
  if (make_tmp_root(tmp_root, sizeof tmp_root, "clip_test_probe") != 0) {
    return 1;
  }
  test_golden();
  test_bad_weights();
  test_backend_resolve();
  remove_tmp_root(tmp_root);
  if (failures) {
    fprintf(stderr, "test_probe: %d of %d checks FAILED\n", failures, checks);
    return 1;
  }
  printf("test_probe: all %d checks passed\n", checks);
  return 0;
}
