/* test_text.c: checks the text tower's loading and C API around it (the forward's numbers are
   checked against PyTorch by tests/reference/test_text.py): text towers in both namings with
   the config from the shapes or from config.json text_config / open_clip_config.json text_cfg;
   a vision-only file that loads without one (text calls CLIP_ERR_UNSUPPORTED saying why);
   text towers a config file marks as unlike CLIP's (unsupported, vision still loads); partly
   present or misshaped text towers (CLIP_ERR_BAD_WEIGHTS naming the tensor, from the loader,
   the probe and engine create alike); clip_engine_embed_tokens's argument errors; and the
   text tower's conversion at the first text call (refused when the file changed since
   create). */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h> /* AT_FDCWD */
#include <sys/stat.h>

#include "internal.h"
#include "weights_fixture.h"
#include "check.h"
#include "tmpdir.h"

static char tmp_root[512];

/* A fresh subdirectory of the test's temp dir. */
static const char *new_dir(const char *name) { return tmp_subdir(tmp_root, name); }

typedef void (*edit_fn)(wf_file *f);

/* dir/model.safetensors: the tiny vision tower, plus the tiny text tower when with_text, in
   the naming hf and dtype; edit (may be NULL) changes the tensor list first. Returns dir. */
static const char *write_model(const char *name, int hf, const char *dtype, int with_text,
                               edit_fn edit) {
  const char *d = new_dir(name);
  wf_spec s = wf_tiny_spec(hf, dtype);
  wf_text_spec t = wf_tiny_text_spec();
  wf_file f = {0};
  wf_add_model(&f, &s);
  if (with_text) wf_add_text(&f, &s, &t);
  if (edit) edit(&f);
  char p[800];
  snprintf(p, sizeof p, "%s/model.safetensors", d);
  if (wf_write(&f, p) != 0) abort();
  wf_free(&f);
  return d;
}

/* A CPU engine on dir (NULL with *s and err set when create fails). */
static clip_engine *cpu_engine(const char *dir, int max_batch, clip_status *s, char *err,
                               size_t err_len) {
  clip_engine_params p = clip_engine_default_params();
  p.weights_path = dir;
  p.backend = CLIP_BACKEND_CPU;
  p.threads = 1;
  p.max_batch = max_batch;
  clip_engine *e = NULL;
  *s = clip_engine_create(&p, &e, err, err_len);
  return e;
}

/* The config the text tower of dir loads with (failing the test when it does not load). */
static clip_text_config text_cfg_of(const char *label, const char *dir, int *has_text,
                                    char *absent, size_t absent_len) {
  clip_text_config c;
  char err[CLIP_ERR_LEN] = "";
  clip_status s = clip_weights_read_text_config(dir, &c, has_text, absent, absent_len, err,
                                                sizeof err);
  CHECK(s == CLIP_OK, "%s: read_text_config %d: %s", label, (int)s, err);
  return c;
}

static void expect_text(const char *label, const char *dir, int heads, int quick, float eps) {
  int has = 0;
  char absent[CLIP_ERR_LEN];
  clip_text_config c = text_cfg_of(label, dir, &has, absent, sizeof absent);
  const wf_text_spec t = wf_tiny_text_spec();
  CHECK(has, "%s: no text tower (%s)", label, absent);
  CHECK(c.context_length == t.ctx && c.vocab_size == t.vocab && c.width == t.width &&
            c.layers == t.layers && c.mlp_width == t.mlp && c.embed_dim == t.embed,
        "%s: config ctx %d V %d W %d L %d M %d E %d", label, c.context_length, c.vocab_size,
        c.width, c.layers, c.mlp_width, c.embed_dim);
  CHECK(c.heads == heads && c.quick_gelu == quick && c.ln_eps == eps,
        "%s: heads %d quick %d eps %g, want %d %d %g", label, c.heads, c.quick_gelu, c.ln_eps,
        heads, quick, eps);
  clip_text_info info;
  char err[CLIP_ERR_LEN] = "";
  clip_status s = clip_weights_probe_text(dir, &info, err, sizeof err);
  CHECK(s == CLIP_OK && info.heads == heads && info.quick_gelu == quick &&
            info.context_length == t.ctx && info.vocab_size == t.vocab && info.embed_dim == t.embed,
        "%s: probe_text %d (%s) heads %d", label, (int)s, err, info.heads);
}

/* The loader, the probe and engine create all refuse dir with status want and a message
   holding sub (and "weights: " first). */
static void expect_fail(const char *label, const char *dir, clip_status want, const char *sub) {
  char err[CLIP_ERR_LEN] = "";
  clip_weights w;
  clip_status s = clip_weights_load(dir, &w, err, sizeof err);
  if (getenv("CLIP_TEST_VERBOSE")) printf("%-34s %d %s\n", label, (int)s, err);
  CHECK(s == want && strstr(err, sub) && strncmp(err, "weights: ", 9) == 0,
        "%s: load gave %d \"%s\", want %d with \"%s\"", label, (int)s, err, (int)want, sub);
  CHECK(w.arena == NULL && !w.has_text, "%s: weights not zeroed", label);
  if (s == CLIP_OK) clip_weights_free(&w);
  clip_text_info ti;
  err[0] = 0;
  s = clip_weights_probe_text(dir, &ti, err, sizeof err);
  CHECK(s == want && strstr(err, sub), "%s: probe_text gave %d \"%s\"", label, (int)s, err);
  clip_model_info mi;
  s = clip_weights_probe(dir, &mi, err, sizeof err);
  CHECK(s == want && strstr(err, sub), "%s: probe gave %d \"%s\"", label, (int)s, err);
  clip_engine *e = cpu_engine(dir, 0, &s, err, sizeof err);
  CHECK(s == want && e == NULL && strstr(err, sub), "%s: create gave %d \"%s\"", label, (int)s, err);
  clip_engine_destroy(e);
}

/* The vision tower loads and the text tower is absent, for the reason holding sub. */
static void expect_no_text(const char *label, const char *dir, const char *sub) {
  int has = 1;
  char absent[CLIP_ERR_LEN] = "";
  text_cfg_of(label, dir, &has, absent, sizeof absent);
  CHECK(!has && strstr(absent, sub), "%s: has_text %d, reason \"%s\" (want \"%s\")", label, has,
        absent, sub);
  clip_text_info ti;
  char err[CLIP_ERR_LEN] = "";
  clip_status s = clip_weights_probe_text(dir, &ti, err, sizeof err);
  CHECK(s == CLIP_ERR_UNSUPPORTED && strstr(err, sub), "%s: probe_text %d \"%s\"", label, (int)s,
        err);
  clip_engine *e = cpu_engine(dir, 0, &s, err, sizeof err);
  CHECK(s == CLIP_OK, "%s: create %d: %s", label, (int)s, err);
  if (!e) return;
  s = clip_engine_text_info(e, &ti);
  CHECK(s == CLIP_ERR_UNSUPPORTED && strstr(clip_engine_last_error(e), sub),
        "%s: text_info %d \"%s\"", label, (int)s, clip_engine_last_error(e));
  int32_t tokens[8] = {38, 5, 39, 0, 0, 0, 0, 0};
  float out[32];
  s = clip_engine_embed_tokens(e, tokens, 1, out);
  CHECK(s == CLIP_ERR_UNSUPPORTED && strstr(clip_engine_last_error(e), sub),
        "%s: embed_tokens %d \"%s\"", label, (int)s, clip_engine_last_error(e));
  /* The vision tower works as before. */
  float px[3 * 32 * 32];
  for (int i = 0; i < 3 * 32 * 32; i++) px[i] = (float)((i * 7) % 11) / 11.0f - 0.5f;
  s = clip_engine_embed_pixels(e, px, 1, out);
  CHECK(s == CLIP_OK && isfinite(out[0]), "%s: embed_pixels %d", label, (int)s);
  clip_engine_destroy(e);
}

/* ---- good files ---- */

static void test_good(void) {
  /* No config: heads = width/64, QuickGELU, 1e-5. */
  expect_text("openai f32 no config", write_model("openai_f32", 0, "F32", 1, NULL), 1, 1, 1e-5f);
  expect_text("hf bf16 no config", write_model("hf_bf16", 1, "BF16", 1, NULL), 1, 1, 1e-5f);
  /* HF config.json text_config: heads, activation, eps; the vision config beside it. */
  const char *d = write_model("hf_f16_config", 1, "F16", 1, NULL);
  tmp_write_file(d, "config.json",
             "{\"projection_dim\": 32, \"vision_config\": {\"hidden_size\": 64, "
             "\"num_attention_heads\": 2},\n \"text_config\": {\"hidden_size\": 64, "
             "\"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
             "\"max_position_embeddings\": 8, \"vocab_size\": 40, \"hidden_act\": \"gelu\", "
             "\"layer_norm_eps\": 1e-6, \"projection_dim\": 32, \"eos_token_id\": 2}}");
  expect_text("hf config.json text_config", d, 4, 0, 1e-6f);
  /* open_clip: text_cfg without heads means open_clip's default 8; quick_gelu false. */
  d = write_model("openai_open_clip_config", 0, "F32", 1, NULL);
  tmp_write_file(d, "open_clip_config.json",
             "{\"model_cfg\": {\"embed_dim\": 32, \"quick_gelu\": false, \"vision_cfg\": "
             "{\"width\": 64, \"layers\": 2, \"patch_size\": 8, \"image_size\": 32}, \"text_cfg\": "
             "{\"context_length\": 8, \"vocab_size\": 40, \"width\": 64, \"layers\": 2, "
             "\"mlp_ratio\": 2.0}}}");
  expect_text("open_clip text_cfg", d, 8, 0, 1e-5f);
}

/* ---- no text tower, or one the config marks unsupported ---- */

static void test_absent(void) {
  expect_no_text("openai vision-only", write_model("vision_only", 0, "F32", 0, NULL),
                 "no text tower");
  expect_no_text("hf vision-only", write_model("hf_vision_only", 1, "F32", 0, NULL),
                 "no text tower");
  const char *d = write_model("hf_gelu_new", 1, "F32", 1, NULL);
  tmp_write_file(d, "config.json", "{\"text_config\": {\"hidden_act\": \"gelu_new\"}}");
  expect_no_text("hf text hidden_act gelu_new", d, "hidden_act \"gelu_new\"");
  d = write_model("open_clip_hf_text", 0, "F32", 1, NULL);
  tmp_write_file(d, "open_clip_config.json",
             "{\"model_cfg\": {\"embed_dim\": 32, \"vision_cfg\": {\"width\": 64}, \"text_cfg\": "
             "{\"hf_model_name\": \"xlm-roberta-base\"}}}");
  expect_no_text("open_clip text_cfg.hf_model_name", d, "hf_model_name");
  d = write_model("open_clip_pool_last", 0, "F32", 1, NULL);
  tmp_write_file(d, "open_clip_config.json",
             "{\"model_cfg\": {\"embed_dim\": 32, \"vision_cfg\": {\"width\": 64}, \"text_cfg\": "
             "{\"pool_type\": \"last\"}}}");
  expect_no_text("open_clip text_cfg.pool_type last", d, "pool_type \"last\"");
}

/* ---- partly present or misshaped text towers ---- */

static void drop_ln_final_bias(wf_file *f) { CHECK(wf_remove(f, "ln_final.bias"), "fixture"); }
static void drop_hf_fc2_bias(wf_file *f) {
  CHECK(wf_remove(f, "text_model.encoder.layers.1.mlp.fc2.bias"), "fixture");
}
static void only_token_embedding(wf_file *f) {
  CHECK(wf_remove_prefix(f, "transformer.") == 24 && wf_remove(f, "positional_embedding") &&
            wf_remove_prefix(f, "ln_final.") == 2 && wf_remove(f, "text_projection"),
        "fixture");
}
static void only_hf_projection(wf_file *f) {
  CHECK(wf_remove_prefix(f, "text_model.") == 36, "fixture");
}
static void narrow_projection(wf_file *f) {
  wf_remove(f, "text_projection");
  wf_add_raw(f, "text_projection", "F32", 2, (const int64_t[]){64, 16}, NULL, 64 * 16 * 4);
}
static void narrow_hf_positions(wf_file *f) {
  wf_remove(f, "text_model.embeddings.position_embedding.weight");
  wf_add_raw(f, "text_model.embeddings.position_embedding.weight", "F32", 2,
             (const int64_t[]){8, 32}, NULL, 8 * 32 * 4);
}
static void reshape_text_qkv(wf_file *f) {
  wf_remove(f, "transformer.resblocks.1.attn.in_proj_weight");
  wf_add_raw(f, "transformer.resblocks.1.attn.in_proj_weight", "F32", 2,
             (const int64_t[]){64, 64}, NULL, 64 * 64 * 4);
}
static void drop_text_block0(wf_file *f) {
  CHECK(wf_remove_prefix(f, "transformer.resblocks.0.") == 12, "fixture");
}
static void retype_token_embedding(wf_file *f) {
  wf_remove(f, "token_embedding.weight");
  wf_add_raw(f, "token_embedding.weight", "F64", 2, (const int64_t[]){40, 64}, NULL, 40 * 64 * 8);
}

static void test_broken(void) {
  expect_fail("openai without ln_final.bias", write_model("no_lnf_b", 0, "F32", 1, drop_ln_final_bias),
              CLIP_ERR_BAD_WEIGHTS, "missing tensor ln_final.bias");
  expect_fail("hf without a fc2 bias", write_model("no_fc2_b", 1, "F16", 1, drop_hf_fc2_bias),
              CLIP_ERR_BAD_WEIGHTS, "missing tensor text_model.encoder.layers.1.mlp.fc2.bias");
  expect_fail("openai token_embedding alone", write_model("tok_alone", 0, "F32", 1, only_token_embedding),
              CLIP_ERR_BAD_WEIGHTS, "missing tensor positional_embedding");
  expect_fail("hf text_projection alone", write_model("proj_alone", 1, "F32", 1, only_hf_projection),
              CLIP_ERR_BAD_WEIGHTS, "missing tensor text_model.embeddings.token_embedding.weight");
  expect_fail("text embed_dim != vision's", write_model("narrow_proj", 0, "F32", 1, narrow_projection),
              CLIP_ERR_BAD_WEIGHTS, "tensor text_projection projects the text tower to 16");
  expect_fail("hf positions of another width",
              write_model("narrow_pos", 1, "F32", 1, narrow_hf_positions), CLIP_ERR_BAD_WEIGHTS,
              "text_model.embeddings.position_embedding.weight has shape [8 32]");
  expect_fail("text qkv misshaped", write_model("bad_qkv", 0, "F32", 1, reshape_text_qkv),
              CLIP_ERR_BAD_WEIGHTS, "transformer.resblocks.1.attn.in_proj_weight has shape [64 64]");
  expect_fail("text block 0 missing", write_model("no_block0", 0, "F32", 1, drop_text_block0),
              CLIP_ERR_BAD_WEIGHTS, "missing tensor transformer.resblocks.0.");
  expect_fail("token_embedding F64", write_model("f64_tok", 0, "F32", 1, retype_token_embedding),
              CLIP_ERR_UNSUPPORTED, "token_embedding.weight has unsupported dtype F64");
  /* A config file that disagrees with the text tensors. */
  const char *d = write_model("ctx_disagrees", 0, "F32", 1, NULL);
  tmp_write_file(d, "open_clip_config.json",
             "{\"model_cfg\": {\"embed_dim\": 32, \"vision_cfg\": {\"width\": 64}, \"text_cfg\": "
             "{\"context_length\": 77}}}");
  expect_fail("text_cfg.context_length 77 vs 8", d, CLIP_ERR_BAD_WEIGHTS,
              "says text_cfg.context_length 77, but tensor positional_embedding has shape [8 64]");
  d = write_model("heads_indivisible", 1, "F32", 1, NULL);
  tmp_write_file(d, "config.json", "{\"text_config\": {\"num_attention_heads\": 3}}");
  expect_fail("text heads 3 for width 64", d, CLIP_ERR_BAD_WEIGHTS,
              "text width 64 is not divisible by 3 heads");
  d = write_model("layers_disagree", 1, "F32", 1, NULL);
  tmp_write_file(d, "config.json", "{\"text_config\": {\"num_hidden_layers\": 12}}");
  expect_fail("text_config.num_hidden_layers 12 vs 2", d, CLIP_ERR_BAD_WEIGHTS,
              "text_config.num_hidden_layers 12");
}

/* ---- clip_engine_embed_tokens's arguments ---- */

static void test_api(void) {
  const char *d = write_model("api", 0, "F32", 1, NULL);
  char err[CLIP_ERR_LEN] = "";
  clip_status s;
  clip_engine *e = cpu_engine(d, 2, &s, err, sizeof err);
  CHECK(s == CLIP_OK, "api: create %d: %s", (int)s, err);
  if (!e) return;
  clip_text_info ti;
  s = clip_engine_text_info(e, &ti);
  CHECK(s == CLIP_OK && ti.context_length == 8 && ti.vocab_size == 40 && ti.width == 64 &&
            ti.layers == 2 && ti.heads == 1 && ti.embed_dim == 32 && ti.quick_gelu == 1,
        "api: text_info %d ctx %d V %d", (int)s, ti.context_length, ti.vocab_size);
  CHECK(clip_engine_text_info(NULL, &ti) == CLIP_ERR_INVALID_ARGUMENT &&
            clip_engine_text_info(e, NULL) == CLIP_ERR_INVALID_ARGUMENT,
        "api: text_info NULLs");
  int32_t tok[3 * 8] = {38, 3, 0, 39, 0, 0, 0, 0, /* a real id 0 before the end token */
                        38, 39, 0, 0, 0, 0, 0, 0,
                        38, 1, 2, 3, 4, 5, 6, 39};
  float out[3 * 32], alone[32];
  s = clip_engine_embed_tokens(e, tok, 2, out);
  CHECK(s == CLIP_OK, "api: embed_tokens %d: %s", (int)s, clip_engine_last_error(e));
  int finite = 1;
  for (int i = 0; i < 64; i++) finite &= isfinite(out[i]) != 0;
  CHECK(finite && out[0] != out[32], "api: outputs not finite or the same for both sequences");
  /* Ids after the end token (padding; another end token too) do not matter: the mask is
     causal and the state is taken at the first largest id. Beside a full-length sequence the
     padding positions are computed (a batch runs up to its last end token). */
  int32_t pair[16], pair_padded[16];
  const int32_t padded[8] = {38, 3, 0, 39, 17, 25, 39, 1};
  memcpy(pair, tok, 8 * sizeof(int32_t));
  memcpy(pair + 8, tok + 16, 8 * sizeof(int32_t));
  memcpy(pair_padded, padded, 8 * sizeof(int32_t));
  memcpy(pair_padded + 8, tok + 16, 8 * sizeof(int32_t));
  float pair_out[64], pair_padded_out[64];
  s = clip_engine_embed_tokens(e, pair, 2, pair_out);
  CHECK(s == CLIP_OK && clip_engine_embed_tokens(e, pair_padded, 2, pair_padded_out) == CLIP_OK &&
            memcmp(pair_out, pair_padded_out, sizeof pair_out) == 0,
        "api: ids after the end token changed the embedding");
  s = clip_engine_embed_tokens(e, tok, 1, alone);
  double d2 = 0, n2 = 0;
  for (int i = 0; i < 32; i++) {
    d2 += (alone[i] - out[i]) * (double)(alone[i] - out[i]);
    n2 += (double)out[i] * out[i];
  }
  CHECK(d2 <= 1e-10 * n2, "api: a sequence alone differs from it in a batch (%g)", sqrt(d2 / n2));
  s = clip_engine_embed_tokens(e, tok, 3, out);
  CHECK(s == CLIP_ERR_INVALID_ARGUMENT && strstr(clip_engine_last_error(e), "max_batch"),
        "api: n > max_batch gave %d \"%s\"", (int)s, clip_engine_last_error(e));
  tok[8 + 5] = 40;
  s = clip_engine_embed_tokens(e, tok, 2, out);
  CHECK(s == CLIP_ERR_INVALID_ARGUMENT &&
            strstr(clip_engine_last_error(e), "sequence 1 position 5 holds id 40, outside the "
                                              "vocabulary [0, 40)"),
        "api: id 40 gave %d \"%s\"", (int)s, clip_engine_last_error(e));
  tok[8 + 5] = -3;
  s = clip_engine_embed_tokens(e, tok, 2, out);
  CHECK(s == CLIP_ERR_INVALID_ARGUMENT && strstr(clip_engine_last_error(e), "id -3"),
        "api: id -3 gave %d \"%s\"", (int)s, clip_engine_last_error(e));
  CHECK(clip_engine_embed_tokens(e, NULL, 1, out) == CLIP_ERR_INVALID_ARGUMENT &&
            clip_engine_embed_tokens(e, tok, 1, NULL) == CLIP_ERR_INVALID_ARGUMENT &&
            clip_engine_embed_tokens(e, tok, -1, out) == CLIP_ERR_INVALID_ARGUMENT &&
            clip_engine_embed_tokens(NULL, tok, 1, out) == CLIP_ERR_INVALID_ARGUMENT,
        "api: NULL / negative arguments");
  CHECK(clip_engine_embed_tokens(e, NULL, 0, NULL) == CLIP_OK, "api: n = 0");
  clip_engine_destroy(e);

  /* The text tower is converted at the first text call, not at create (image-only engines
     keep no copy), from the file the engine was made from: if that file changed meanwhile,
     the call fails saying so instead of pairing another file's text tower with this vision
     tower. */
  e = cpu_engine(d, 2, &s, err, sizeof err);
  CHECK(e && !e->w.text_arena && e->w.has_text, "api: text tower converted at create");
  if (e) {
    s = clip_engine_embed_tokens(e, tok, 1, out);
    CHECK(s == CLIP_OK && e->w.text_arena, "api: first text call %d: %s", (int)s,
          clip_engine_last_error(e));
    clip_engine_destroy(e);
  }
  e = cpu_engine(d, 2, &s, err, sizeof err);
  char path[800];
  snprintf(path, sizeof path, "%s/model.safetensors", d);
  struct timespec times[2] = {{1000000000, 0}, {1000000000, 0}};
  CHECK(utimensat(AT_FDCWD, path, times, 0) == 0, "api: utimensat");
  if (e) {
    s = clip_engine_embed_tokens(e, tok, 1, out);
    CHECK(s == CLIP_ERR_IO && strstr(clip_engine_last_error(e), "changed") &&
              strstr(clip_engine_last_error(e), "create the engine again"),
          "api: a changed file gave %d \"%s\"", (int)s, clip_engine_last_error(e));
    clip_engine_destroy(e);
  }
  CHECK(clip_weights_probe_text(d, NULL, err, sizeof err) == CLIP_ERR_INVALID_ARGUMENT &&
            clip_weights_probe_text("", &ti, err, sizeof err) == CLIP_ERR_INVALID_ARGUMENT,
        "api: probe_text arguments");
}

int main(void) {
  if (make_tmp_root(tmp_root, sizeof tmp_root, "clip_text_test") != 0) return 1;
  test_good();
  test_absent();
  test_broken();
  test_api();
  remove_tmp_root(tmp_root);
  if (failures) {
    fprintf(stderr, "test_text: %d of %d checks FAILED\n", failures, checks);
    return 1;
  }
  printf("test_text: all %d checks passed\n", checks);
  return 0;
}
