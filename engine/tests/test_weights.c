/* test_weights.c: checks the safetensors weights loader (clip_weights_load): fp16/bf16
   conversion, good files in both namings and all three dtypes (canonical arrays, transposed
   proj, stacked qkv, derived config, config files, directories, whole checkpoints with their
   text towers), and that
   every kind of malformed file gives the right status and a message naming the problem. */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "weights_fixture.h"
#include "check.h"
#include "tmpdir.h"


static char tmp_root[512];

/* A fresh subdirectory of the test's temp dir. */
static const char *new_dir(const char *name) { return tmp_subdir(tmp_root, name); }

/* Writes a file: 8-byte length field `header_len`, then `header` (hlen bytes), then
   data_len zero bytes. */
static void write_raw(const char *path, uint64_t header_len, const char *header, size_t hlen,
                      size_t data_len) {
  FILE *fp = fopen(path, "wb");
  if (!fp) {
    perror(path);
    abort();
  }
  wf_put_u64(fp, header_len);
  fwrite(header, 1, hlen, fp);
  for (size_t i = 0; i < data_len; i++) fputc(0, fp);
  fclose(fp);
}

/* A safetensors file whose header is exactly `header` (correct length field). */
static void write_header_file(const char *path, const char *header, size_t data_len) {
  write_raw(path, strlen(header), header, strlen(header), data_len);
}

static char *path_in(const char *dir, const char *file) {
  static char p[4][800];
  static int next;
  char *s = p[next++ % 4];
  snprintf(s, sizeof p[0], "%s/%s", dir, file);
  return s;
}

/* Loads `path` expecting failure with status `want` and every non-NULL substring in the
   message; also checks *w comes back zeroed. */
static void expect_fail(const char *label, const char *path, clip_status want, const char *sub1,
                        const char *sub2) {
  clip_weights w;
  memset(&w, 0x5A, sizeof w); /* garbage in: the loader must zero it */
  char err[CLIP_ERR_LEN] = "";
  clip_status s = clip_weights_load(path, &w, err, sizeof err);
  if (getenv("CLIP_TEST_VERBOSE")) printf("%-24s %d %s\n", label, (int)s, err);
  CHECK(s == want, "%s: status %d, want %d (message: %s)", label, (int)s, (int)want, err);
  CHECK(!sub1 || strstr(err, sub1), "%s: message \"%s\" lacks \"%s\"", label, err, sub1);
  CHECK(!sub2 || strstr(err, sub2), "%s: message \"%s\" lacks \"%s\"", label, err, sub2);
  CHECK(strncmp(err, "weights: ", 9) == 0, "%s: message \"%s\" lacks the weights: prefix", label,
        err);
  CHECK(w.arena == NULL && w.layer == NULL && w.proj == NULL && w.cfg.width == 0,
        "%s: weights not zeroed after a failure", label);
  if (s == CLIP_OK) clip_weights_free(&w);
}

/* ---- fp16 / bf16 ---- */

/* An independent reference: the IEEE formula, in double. */
static double half_reference(uint16_t h) {
  int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
  double v;
  if (exp == 0)
    v = ldexp(mant, -24);
  else if (exp == 31)
    v = mant ? NAN : INFINITY;
  else
    v = ldexp(1024 + mant, exp - 25);
  return sign ? -v : v;
}

static void test_half_bf16(void) {
  int bad = 0, bad_native = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    float got = clip_half_to_float((uint16_t)h);
    double want = half_reference((uint16_t)h);
    int ok;
    if (isnan(want))
      ok = isnan(got) && (signbit(got) != 0) == ((h >> 15) != 0);
    else
      ok = (double)got == want && (signbit(got) != 0) == ((h >> 15) != 0);
    if (!ok && bad++ < 5) fprintf(stderr, "half 0x%04x -> %.9g, want %.9g\n", h, got, want);
#if defined(__FLT16_MAX__)
    /* The compiler's own _Float16 conversion, where it has one, as a second opinion. */
    _Float16 x;
    uint16_t hh = (uint16_t)h;
    memcpy(&x, &hh, 2);
    float native = (float)x;
    if (!(isnan(native) ? isnan(got) : memcmp(&native, &got, 4) == 0)) bad_native++;
#endif
  }
  CHECK(bad == 0, "clip_half_to_float: %d of 65536 values wrong", bad);
  CHECK(bad_native == 0, "clip_half_to_float: %d values differ from _Float16", bad_native);
  /* A few by hand: 1, -2, max normal, min normal, min/max subnormal, inf, NaN payload kept. */
  CHECK(clip_half_to_float(0x3C00) == 1.0f, "half 1.0");
  CHECK(clip_half_to_float(0xC000) == -2.0f, "half -2.0");
  CHECK(clip_half_to_float(0x7BFF) == 65504.0f, "half max");
  CHECK(clip_half_to_float(0x0400) == ldexpf(1.0f, -14), "half min normal");
  CHECK(clip_half_to_float(0x0001) == ldexpf(1.0f, -24), "half min subnormal");
  CHECK(clip_half_to_float(0x03FF) == ldexpf(1023.0f, -24), "half max subnormal");
  CHECK(clip_half_to_float(0x8001) == -ldexpf(1.0f, -24), "half -min subnormal");
  CHECK(isinf(clip_half_to_float(0x7C00)) && clip_half_to_float(0x7C00) > 0, "half +inf");
  CHECK(isinf(clip_half_to_float(0xFC00)) && clip_half_to_float(0xFC00) < 0, "half -inf");
  CHECK(isnan(clip_half_to_float(0x7E00)) && isnan(clip_half_to_float(0x7C01)), "half nan");
  CHECK(signbit(clip_half_to_float(0x8000)) && clip_half_to_float(0x8000) == 0.0f, "half -0");

  CHECK(clip_bf16_to_float(0x3F80) == 1.0f, "bf16 1.0");
  CHECK(clip_bf16_to_float(0xC000) == -2.0f, "bf16 -2.0");
  CHECK(clip_bf16_to_float(0x4049) == 3.140625f, "bf16 3.140625");
  CHECK(clip_bf16_to_float(0x0001) == ldexpf(1.0f, -133), "bf16 min subnormal");
  CHECK(clip_bf16_to_float(0x7F7F) == ldexpf(255.0f, 120), "bf16 max");
  CHECK(isinf(clip_bf16_to_float(0x7F80)) && isinf(clip_bf16_to_float(0xFF80)), "bf16 inf");
  CHECK(isnan(clip_bf16_to_float(0x7FC0)) && isnan(clip_bf16_to_float(0xFFC1)), "bf16 nan");
}

/* ---- good files ---- */

static int same_tag(const float *got, size_t n, int tag, size_t first, const char *what,
                    const char *label) {
  for (size_t i = 0; i < n; i++) {
    float want = wf_value(tag, first + i);
    if (got[i] != want) {
      CHECK(0, "%s: %s[%zu] = %g, want %g", label, what, i, got[i], want);
      return 0;
    }
  }
  checks++;
  return 1;
}

typedef struct want_cfg {
  int heads, quick_gelu;
  float ln_eps;
  const char *naming;
} want_cfg;

/* Compares every canonical array and the derived config with the fixture's model. */
static void check_model(const char *label, const clip_weights *w, const wf_spec *s,
                        want_cfg want) {
  const clip_config *c = &w->cfg;
  const size_t W = (size_t)s->width, M = (size_t)s->mlp, E = (size_t)s->embed,
               P = (size_t)s->patch, T = (size_t)(s->grid * s->grid + 1);
  CHECK(c->width == s->width && c->layers == s->layers && c->patch_size == s->patch &&
            c->grid == s->grid && c->image_size == s->grid * s->patch &&
            c->tokens == (int)T && c->mlp_width == s->mlp && c->embed_dim == s->embed,
        "%s: config W%d L%d P%d grid%d S%d T%d M%d E%d", label, c->width, c->layers,
        c->patch_size, c->grid, c->image_size, c->tokens, c->mlp_width, c->embed_dim);
  CHECK(c->heads == want.heads, "%s: heads %d, want %d", label, c->heads, want.heads);
  CHECK(c->quick_gelu == want.quick_gelu, "%s: quick_gelu %d, want %d", label, c->quick_gelu,
        want.quick_gelu);
  CHECK(c->ln_eps == want.ln_eps, "%s: ln_eps %g, want %g", label, c->ln_eps, want.ln_eps);
  CHECK(strcmp(w->naming, want.naming) == 0, "%s: naming %s, want %s", label, w->naming,
        want.naming);
  CHECK(w->arena && w->arena_bytes >= sizeof(float) * (W * 3 * P * P + T * W + E * W),
        "%s: arena %p of %zu bytes", label, w->arena, w->arena_bytes);

  /* Every pointer lies inside the arena. */
  const char *lo = (const char *)w->arena, *hi = lo + w->arena_bytes;
#define INSIDE(p, n) ((const char *)(p) >= lo && (const char *)((p) + (n)) <= hi)
  CHECK(INSIDE(w->patch_w, W * 3 * P * P) && INSIDE(w->pos_emb, T * W) && INSIDE(w->proj, E * W) &&
            INSIDE(w->layer, (size_t)s->layers) &&
            INSIDE(w->layer[s->layers - 1].fc2_b, W),
        "%s: a pointer lies outside the arena", label);
#undef INSIDE

  same_tag(w->patch_w, W * 3 * P * P, WF_PATCH, 0, "patch_w", label);
  same_tag(w->class_emb, W, WF_CLS, 0, "class_emb", label);
  same_tag(w->pos_emb, T * W, WF_POS, 0, "pos_emb", label);
  same_tag(w->ln_pre_w, W, WF_LN_PRE_W, 0, "ln_pre_w", label);
  same_tag(w->ln_pre_b, W, WF_LN_PRE_B, 0, "ln_pre_b", label);
  same_tag(w->ln_post_w, W, WF_LN_POST_W, 0, "ln_post_w", label);
  same_tag(w->ln_post_b, W, WF_LN_POST_B, 0, "ln_post_b", label);
  same_tag(w->proj, E * W, WF_PROJ, 0, "proj", label);
  for (int l = 0; l < s->layers; l++) {
    const clip_layer_weights *lw = &w->layer[l];
    same_tag(lw->ln1_w, W, wf_layer_tag(l, WF_LN1_W), 0, "ln1_w", label);
    same_tag(lw->ln1_b, W, wf_layer_tag(l, WF_LN1_B), 0, "ln1_b", label);
    same_tag(lw->qkv_w, 3 * W * W, wf_layer_tag(l, WF_QKV_W), 0, "qkv_w", label);
    same_tag(lw->qkv_b, 3 * W, wf_layer_tag(l, WF_QKV_B), 0, "qkv_b", label);
    same_tag(lw->out_w, W * W, wf_layer_tag(l, WF_OUT_W), 0, "out_w", label);
    same_tag(lw->out_b, W, wf_layer_tag(l, WF_OUT_B), 0, "out_b", label);
    same_tag(lw->ln2_w, W, wf_layer_tag(l, WF_LN2_W), 0, "ln2_w", label);
    same_tag(lw->ln2_b, W, wf_layer_tag(l, WF_LN2_B), 0, "ln2_b", label);
    same_tag(lw->fc1_w, M * W, wf_layer_tag(l, WF_FC1_W), 0, "fc1_w", label);
    same_tag(lw->fc1_b, M, wf_layer_tag(l, WF_FC1_B), 0, "fc1_b", label);
    same_tag(lw->fc2_w, W * M, wf_layer_tag(l, WF_FC2_W), 0, "fc2_w", label);
    same_tag(lw->fc2_b, W, wf_layer_tag(l, WF_FC2_B), 0, "fc2_b", label);
  }
  /* Gains are gains: around 1, not the biases' values around 0. */
  CHECK(w->ln_post_w[0] > 0.5f && w->layer[0].ln1_w[W - 1] > 0.5f, "%s: LayerNorm gains", label);
}

/* Compares the text tower's canonical arrays and config with the fixture's: none converted
   by clip_weights_load, all by clip_weights_load_text. */
static void check_text(const char *label, clip_weights *w, const wf_text_spec *t,
                       want_cfg want) {
  const clip_text_weights *tw = &w->text;
  const clip_text_config *c = &tw->cfg;
  const size_t W = (size_t)t->width, M = (size_t)t->mlp, E = (size_t)t->embed;
  CHECK(w->has_text, "%s: no text tower loaded (%s)", label, w->text_absent);
  if (!w->has_text) return;
  CHECK(!w->text_arena && !tw->layer && !tw->token_emb && w->source,
        "%s: the text tower was converted at load", label);
  char err[CLIP_ERR_LEN] = "";
  clip_status s = clip_weights_load_text(w, err, sizeof err);
  CHECK(s == CLIP_OK && w->text_arena, "%s: load_text %d: %s", label, (int)s, err);
  if (s != CLIP_OK) return;
  CHECK(c->context_length == t->ctx && c->vocab_size == t->vocab && c->width == t->width &&
            c->layers == t->layers && c->mlp_width == t->mlp && c->embed_dim == t->embed,
        "%s: text config ctx%d V%d W%d L%d M%d E%d", label, c->context_length, c->vocab_size,
        c->width, c->layers, c->mlp_width, c->embed_dim);
  CHECK(c->heads == want.heads && c->quick_gelu == want.quick_gelu && c->ln_eps == want.ln_eps,
        "%s: text heads %d quick_gelu %d eps %g, want %d %d %g", label, c->heads, c->quick_gelu,
        c->ln_eps, want.heads, want.quick_gelu, want.ln_eps);
  const char *lo = (const char *)w->text_arena, *hi = lo + w->text_arena_bytes;
  CHECK((const char *)tw->layer >= lo && (const char *)(tw->layer + t->layers) <= hi &&
            (const char *)tw->token_emb >= lo && (const char *)(tw->proj + E * W) <= hi,
        "%s: a text pointer lies outside the text arena", label);
  same_tag(tw->token_emb, (size_t)t->vocab * W, WF_TEXT_TOK, 0, "token_emb", label);
  same_tag(tw->pos_emb, (size_t)t->ctx * W, WF_TEXT_POS, 0, "text pos_emb", label);
  same_tag(tw->ln_final_w, W, WF_TEXT_LNF_W, 0, "ln_final_w", label);
  same_tag(tw->ln_final_b, W, WF_TEXT_LNF_B, 0, "ln_final_b", label);
  same_tag(tw->proj, E * W, WF_TEXT_PROJ, 0, "text proj", label);
  for (int l = 0; l < t->layers; l++) {
    const clip_layer_weights *lw = &tw->layer[l];
    same_tag(lw->ln1_w, W, wf_text_layer_tag(l, WF_LN1_W), 0, "text ln1_w", label);
    same_tag(lw->qkv_w, 3 * W * W, wf_text_layer_tag(l, WF_QKV_W), 0, "text qkv_w", label);
    same_tag(lw->qkv_b, 3 * W, wf_text_layer_tag(l, WF_QKV_B), 0, "text qkv_b", label);
    same_tag(lw->out_w, W * W, wf_text_layer_tag(l, WF_OUT_W), 0, "text out_w", label);
    same_tag(lw->ln2_b, W, wf_text_layer_tag(l, WF_LN2_B), 0, "text ln2_b", label);
    same_tag(lw->fc1_w, M * W, wf_text_layer_tag(l, WF_FC1_W), 0, "text fc1_w", label);
    same_tag(lw->fc2_w, W * M, wf_text_layer_tag(l, WF_FC2_W), 0, "text fc2_w", label);
    same_tag(lw->fc2_b, W, wf_text_layer_tag(l, WF_FC2_B), 0, "text fc2_b", label);
  }
}

static void load_ok(const char *label, const char *path, clip_weights *w) {
  char err[CLIP_ERR_LEN] = "";
  clip_status s = clip_weights_load(path, w, err, sizeof err);
  CHECK(s == CLIP_OK, "%s: load failed with %d: %s", label, (int)s, err);
}

static void write_model(const char *path, const wf_spec *s) {
  wf_file f = {0};
  wf_add_model(&f, s);
  if (wf_write(&f, path) != 0) abort();
  wf_free(&f);
}

static const char *tiny_hf_clip_config =
    "{\"architectures\": [\"CLIPModel\"], \"model_type\": \"clip\", \"projection_dim\": 32,\n"
    " \"text_config\": {\"hidden_size\": 32, \"hidden_act\": \"quick_gelu\"},\n"
    " \"vision_config\": {\"hidden_size\": 64, \"intermediate_size\": 256,\n"
    "   \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"patch_size\": 8,\n"
    "   \"image_size\": 32, \"hidden_act\": \"gelu\", \"layer_norm_eps\": 1e-06,\n"
    "   \"model_type\": \"clip_vision_model\"}}\n";

static void test_good_files(void) {
  /* 1. OpenAI naming, F32, a file path, no config file: heads = W/64, QuickGELU, 1e-5. */
  {
    wf_spec s = wf_tiny_spec(0, "F32");
    const char *d = new_dir("good_openai_f32");
    write_model(path_in(d, "ViT-tiny.safetensors"), &s);
    clip_weights w;
    load_ok("openai f32", path_in(d, "ViT-tiny.safetensors"), &w);
    if (w.arena) check_model("openai f32", &w, &s, (want_cfg){1, 1, 1e-5f, "openai"});
    /* The proj transposition, spelled out for one element: file [w=1][e=0] -> (e=0, w=1). */
    if (w.proj) CHECK(w.proj[0 * 64 + 1] == wf_value(WF_PROJ, 1), "openai proj[0][1]");
    clip_weights_free(&w);
    clip_weights_free(&w); /* safe twice */
    CHECK(w.arena == NULL, "free zeroes");
  }
  /* 2. HF naming, F16, a directory with model.safetensors + a CLIPConfig config.json. */
  {
    wf_spec s = wf_tiny_spec(1, "F16");
    const char *d = new_dir("good_hf_f16");
    write_model(path_in(d, "model.safetensors"), &s);
    tmp_write_file(d, "config.json", tiny_hf_clip_config);
    clip_weights w;
    load_ok("hf f16 dir", d, &w);
    if (w.arena) check_model("hf f16 dir", &w, &s, (want_cfg){2, 0, 1e-6f, "hf"});
    /* q, k, v stacked: row W of qkv is row 0 of k_proj. */
    if (w.layer)
      CHECK(w.layer[1].qkv_w[64 * 64] == wf_value(wf_layer_tag(1, WF_QKV_W), 64 * 64),
            "hf qkv stacking");
    clip_weights_free(&w);
  }
  /* 3. OpenAI naming, BF16, open_clip_model.safetensors + open_clip_config.json. */
  {
    wf_spec s = wf_tiny_spec(0, "BF16");
    const char *d = new_dir("good_open_clip_bf16");
    write_model(path_in(d, "open_clip_model.safetensors"), &s);
    tmp_write_file(d, "open_clip_config.json",
               "{\"model_cfg\": {\"embed_dim\": 32, \"quick_gelu\": true, \"vision_cfg\": "
               "{\"image_size\": 32, \"layers\": 2, \"width\": 64, \"patch_size\": 8, "
               "\"head_width\": 32}, \"text_cfg\": {\"width\": 32}},\n"
               " \"preprocess_cfg\": {\"mean\": [0.48145466, 0.4578275, 0.40821073]}}");
    clip_weights w;
    load_ok("open_clip bf16 dir", d, &w);
    if (w.arena) check_model("open_clip bf16 dir", &w, &s, (want_cfg){2, 1, 1e-5f, "openai"});
    clip_weights_free(&w);
  }
  /* 4. Bare names (vision-only state dict), F16, the single *.safetensors of a directory,
        open_clip config without quick_gelu (default: exact GELU), default head_width 64. */
  {
    wf_spec s = wf_tiny_spec(0, "F16");
    s.prefix = "";
    s.layers = 3;
    const char *d = new_dir("good_bare_f16");
    write_model(path_in(d, "tower.safetensors"), &s);
    tmp_write_file(d, "open_clip_config.json",
               "{\"model_cfg\": {\"embed_dim\": 32, \"vision_cfg\": {\"image_size\": 32, "
               "\"layers\": 3, \"width\": 64, \"patch_size\": 8, \"mlp_ratio\": 4.0}}}");
    tmp_write_file(d, "notes.txt", "not weights");
    clip_weights w;
    load_ok("bare f16 dir", d, &w);
    if (w.arena) check_model("bare f16 dir", &w, &s, (want_cfg){1, 0, 1e-5f, "openai"});
    clip_weights_free(&w);
  }
  /* 5. A whole HF CLIP checkpoint: text tower (BF16), logit_scale scalar, I64 position_ids,
        F32 vision tensors, a CLIPVisionConfig-style config.json with top-level keys; one
        tensor name written with a JSON escape; unicode in the metadata. */
  {
    wf_spec s = wf_tiny_spec(1, "F32");
    wf_spec s_text = wf_tiny_spec(1, "BF16");
    wf_text_spec t = wf_tiny_text_spec();
    const char *d = new_dir("good_hf_checkpoint");
    wf_file f = {0};
    int64_t ids[77];
    for (int i = 0; i < 77; i++) ids[i] = i;
    wf_add_raw(&f, "text_model.embeddings.position_ids", "I64", 2, (const int64_t[]){1, 77}, ids,
               sizeof ids);
    wf_add_text(&f, &s_text, &t);
    wf_add_model(&f, &s);
    wf_add_raw(&f, "vision_model.embeddings.position_ids", "I64", 2, (const int64_t[]){1, 17},
               ids, 17 * sizeof ids[0]);
    float scale = 4.625f;
    wf_add(&f, "logit_scale", "F32", 0, NULL, &scale);
    wf_tensor *esc = wf_find(&f, "vision_model.post_layernorm.bias");
    snprintf(esc->raw_key, sizeof esc->raw_key, "vision_model.post_layernorm\\u002ebias");
    if (wf_write(&f, path_in(d, "model.safetensors")) != 0) abort();
    wf_free(&f);
    tmp_write_file(d, "config.json",
               "{\"model_type\": \"clip_vision_model\", \"hidden_size\": 64, "
               "\"intermediate_size\": 256, \"projection_dim\": 32, \"num_hidden_layers\": 2, "
               "\"num_attention_heads\": 4, \"image_size\": 32, \"patch_size\": 8, "
               "\"hidden_act\": \"quick_gelu\", \"layer_norm_eps\": 1e-05, "
               "\"note\": \"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\/ \\\\\", \"x\": [true, false, null, -0.5E+2]}");
    clip_weights w;
    load_ok("hf checkpoint", path_in(d, "model.safetensors"), &w);
    if (w.arena) check_model("hf checkpoint", &w, &s, (want_cfg){4, 1, 1e-5f, "hf"});
    if (w.arena) check_text("hf checkpoint", &w, &t, (want_cfg){1, 1, 1e-5f, "hf"});
    clip_weights_free(&w);
  }
  /* 6. A whole OpenAI checkpoint: the text tower's own transformer.resblocks.* and
        positional_embedding (without "visual.") are the text tower's, not the vision
        tower's; dtypes mixed per tensor. */
  {
    wf_spec s = wf_tiny_spec(0, "BF16");
    wf_spec s_text = wf_tiny_spec(0, "F16");
    wf_text_spec t = wf_tiny_text_spec();
    t.layers = 3;
    const char *d = new_dir("good_openai_checkpoint");
    wf_file f = {0};
    wf_add_text(&f, &s_text, &t);
    float scale = 4.625f;
    wf_add(&f, "logit_scale", "F32", 0, NULL, &scale);
    wf_add_model(&f, &s);
    /* Re-store two vision tensors in other dtypes. */
    wf_spec s32 = s;
    s32.dtype = "F32";
    wf_file g = {0};
    wf_add_model(&g, &s32);
    wf_tensor *src = wf_find(&g, "visual.proj");
    wf_remove(&f, "visual.proj");
    wf_add_raw(&f, "visual.proj", "F32", 2, src->shape, src->data, src->nbytes);
    wf_spec s16 = s;
    s16.dtype = "F16";
    wf_free(&g);
    wf_add_model(&g, &s16);
    src = wf_find(&g, "visual.transformer.resblocks.1.attn.in_proj_weight");
    wf_remove(&f, "visual.transformer.resblocks.1.attn.in_proj_weight");
    wf_add_raw(&f, "visual.transformer.resblocks.1.attn.in_proj_weight", "F16", 2, src->shape,
               src->data, src->nbytes);
    wf_free(&g);
    if (wf_write(&f, path_in(d, "model.safetensors")) != 0) abort();
    wf_free(&f);
    clip_weights w;
    load_ok("openai checkpoint", d, &w);
    if (w.arena) check_model("openai checkpoint", &w, &s, (want_cfg){1, 1, 1e-5f, "openai"});
    if (w.arena) check_text("openai checkpoint", &w, &t, (want_cfg){1, 1, 1e-5f, "openai"});
    clip_weights_free(&w);
  }
}

/* ---- malformed files ---- */

/* A valid model file with one edit applied: returns its path. */
typedef void (*edit_fn)(wf_file *f);
static const char *write_edited(const char *dirname, int hf, int layers, edit_fn edit) {
  wf_spec s = wf_tiny_spec(hf, "F32");
  s.layers = layers;
  const char *d = new_dir(dirname);
  wf_file f = {0};
  wf_add_model(&f, &s);
  if (edit) edit(&f);
  char *p = path_in(d, "model.safetensors");
  if (wf_write(&f, p) != 0) abort();
  wf_free(&f);
  return p;
}

static void drop_fc2_bias(wf_file *f) {
  CHECK(wf_remove(f, "vision_model.encoder.layers.1.mlp.fc2.bias"), "fixture name");
}
static void drop_block1(wf_file *f) {
  CHECK(wf_remove_prefix(f, "visual.transformer.resblocks.1.") == 12, "fixture block names");
}
static void reshape_c_proj(wf_file *f) {
  wf_remove(f, "visual.transformer.resblocks.1.mlp.c_proj.weight");
  wf_add_raw(f, "visual.transformer.resblocks.1.mlp.c_proj.weight", "F32", 2,
             (const int64_t[]){64, 128}, NULL, 64 * 128 * 4);
}
static void reshape_proj(wf_file *f) {
  wf_remove(f, "visual.proj");
  wf_add_raw(f, "visual.proj", "F32", 2, (const int64_t[]){64, 16}, NULL, 64 * 16 * 4);
}
static void retype_ln_post(wf_file *f) {
  wf_remove(f, "vision_model.post_layernorm.bias");
  wf_add_raw(f, "vision_model.post_layernorm.bias", "F64", 1, (const int64_t[]){64}, NULL, 64 * 8);
}
static void unsquare_pos(wf_file *f) {
  wf_remove(f, "visual.positional_embedding");
  wf_add_raw(f, "visual.positional_embedding", "F32", 2, (const int64_t[]){18, 64}, NULL,
             18 * 64 * 4);
}
static void rect_conv(wf_file *f) {
  wf_remove(f, "visual.conv1.weight");
  wf_add_raw(f, "visual.conv1.weight", "F32", 4, (const int64_t[]){64, 3, 8, 4}, NULL,
             64 * 3 * 8 * 4 * 4);
}
static void add_conv_bias(wf_file *f) {
  wf_add_raw(f, "visual.conv1.bias", "F32", 1, (const int64_t[]){64}, NULL, 64 * 4);
}
static void only_text(wf_file *f) {
  wf_remove_prefix(f, "visual");
  wf_add_raw(f, "token_embedding.weight", "F32", 2, (const int64_t[]){4, 4}, NULL, 64);
}

static void test_malformed_files(void) {
  const char *d = new_dir("bad");
  char p[800];

  expect_fail("nonexistent", path_in(d, "nope.safetensors"), CLIP_ERR_IO, "cannot open",
              "No such file");

  snprintf(p, sizeof p, "%s/short.safetensors", d);
  write_raw(p, 0, "", 0, 0);
  {
    FILE *fp = fopen(p, "wb");
    fwrite("\x10\0\0\0\0", 1, 5, fp);
    fclose(fp);
  }
  expect_fail("5-byte file", p, CLIP_ERR_BAD_WEIGHTS, "truncated", "5 bytes");

  snprintf(p, sizeof p, "%s/empty.safetensors", d);
  write_raw(p, 0, "", 0, 0);
  {
    FILE *fp = fopen(p, "wb");
    fclose(fp);
  }
  expect_fail("empty file", p, CLIP_ERR_BAD_WEIGHTS, "truncated", NULL);

  snprintf(p, sizeof p, "%s/hlen.safetensors", d);
  write_raw(p, 1000, "{}", 2, 90);
  expect_fail("header length past end", p, CLIP_ERR_BAD_WEIGHTS, "header length 1000",
              "past the end of the file");

  snprintf(p, sizeof p, "%s/huge.safetensors", d);
  write_raw(p, (uint64_t)1 << 63, "{}", 2, 6);
  expect_fail("header length 2^63", p, CLIP_ERR_BAD_WEIGHTS, "9223372036854775808",
              "past the end of the file");
  snprintf(p, sizeof p, "%s/huge2.safetensors", d);
  write_raw(p, UINT64_MAX, "{}", 2, 6);
  expect_fail("header length 2^64-1", p, CLIP_ERR_BAD_WEIGHTS, "past the end of the file", NULL);

  snprintf(p, sizeof p, "%s/notjson.safetensors", d);
  write_header_file(p, "{\"a\": {\"dtype\": \"F32\",, }}", 0);
  expect_fail("header not JSON", p, CLIP_ERR_BAD_WEIGHTS, "header is not valid JSON", "at byte");

  snprintf(p, sizeof p, "%s/array.safetensors", d);
  write_header_file(p, "[1, 2, 3]", 0);
  expect_fail("header an array", p, CLIP_ERR_BAD_WEIGHTS, "header is not a JSON object", NULL);

  snprintf(p, sizeof p, "%s/nodtype.safetensors", d);
  write_header_file(p, "{\"x\": {\"shape\": [2], \"data_offsets\": [0, 8]}}", 8);
  expect_fail("missing dtype", p, CLIP_ERR_BAD_WEIGHTS, "tensor x: missing \"dtype\"", NULL);
  snprintf(p, sizeof p, "%s/noshape.safetensors", d);
  write_header_file(p, "{\"x\": {\"dtype\": \"F32\", \"data_offsets\": [0, 8]}}", 8);
  expect_fail("missing shape", p, CLIP_ERR_BAD_WEIGHTS, "tensor x: missing \"shape\"", NULL);
  snprintf(p, sizeof p, "%s/nooffsets.safetensors", d);
  write_header_file(p, "{\"x\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8);
  expect_fail("missing data_offsets", p, CLIP_ERR_BAD_WEIGHTS, "tensor x: missing \"data_offsets\"",
              NULL);
  snprintf(p, sizeof p, "%s/entry.safetensors", d);
  write_header_file(p, "{\"x\": [1]}", 0);
  expect_fail("entry not an object", p, CLIP_ERR_BAD_WEIGHTS, "tensor x: header entry is not", NULL);
  snprintf(p, sizeof p, "%s/badshape.safetensors", d);
  write_header_file(p, "{\"x\": {\"dtype\": \"F32\", \"shape\": [2, -1], \"data_offsets\": [0, 8]}}", 8);
  expect_fail("negative dim", p, CLIP_ERR_BAD_WEIGHTS, "tensor x: shape holds", NULL);
  snprintf(p, sizeof p, "%s/badoff.safetensors", d);
  write_header_file(p, "{\"x\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8.5]}}", 8);
  expect_fail("fractional offset", p, CLIP_ERR_BAD_WEIGHTS, "data_offsets is not two", NULL);
  snprintf(p, sizeof p, "%s/backwards.safetensors", d);
  write_header_file(p, "{\"x\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 0]}}", 8);
  expect_fail("offsets backwards", p, CLIP_ERR_BAD_WEIGHTS, "end before they begin", NULL);

  snprintf(p, sizeof p, "%s/pastend.safetensors", d);
  write_header_file(p, "{\"x\": {\"dtype\": \"F32\", \"shape\": [250], \"data_offsets\": [0, 1000]}}", 16);
  expect_fail("offsets past end", p, CLIP_ERR_BAD_WEIGHTS, "tensor x: data_offsets [0, 1000]",
              "past the end of the file");
  snprintf(p, sizeof p, "%s/pastend2.safetensors", d);
  write_header_file(p, "{\"x\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [18446744073709551615, 18446744073709551615]}}", 16);
  expect_fail("offsets past int64", p, CLIP_ERR_BAD_WEIGHTS, "data_offsets is not two", NULL);

  snprintf(p, sizeof p, "%s/size.safetensors", d);
  write_header_file(p, "{\"x\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 16]}}", 32);
  expect_fail("size vs shape", p, CLIP_ERR_BAD_WEIGHTS, "hold 16 bytes", "shape [2 3] of F32 needs 24");
  snprintf(p, sizeof p, "%s/size16.safetensors", d);
  write_header_file(p, "{\"x\": {\"dtype\": \"BF16\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 32);
  expect_fail("size vs shape bf16", p, CLIP_ERR_BAD_WEIGHTS, "shape [4] of BF16 needs 8", NULL);
  snprintf(p, sizeof p, "%s/overflow.safetensors", d);
  write_header_file(p, "{\"x\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 0]}}", 0);
  expect_fail("shape overflow", p, CLIP_ERR_BAD_WEIGHTS, "shape is too large", NULL);

  snprintf(p, sizeof p, "%s/overlap.safetensors", d);
  write_header_file(p,
                    "{\"b\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]},"
                    " \"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}",
                    32);
  expect_fail("overlap", p, CLIP_ERR_BAD_WEIGHTS, "tensors a and b overlap", NULL);
  snprintf(p, sizeof p, "%s/same.safetensors", d);
  write_header_file(p,
                    "{\"b\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                    " \"a\": {\"dtype\": \"F16\", \"shape\": [8], \"data_offsets\": [0, 16]}}",
                    32);
  expect_fail("same range", p, CLIP_ERR_BAD_WEIGHTS, "overlap", NULL);
  snprintf(p, sizeof p, "%s/dup.safetensors", d);
  write_header_file(p,
                    "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                    " \"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [16, 32]}}",
                    32);
  expect_fail("duplicate name", p, CLIP_ERR_BAD_WEIGHTS, "tensor a appears twice", NULL);

  snprintf(p, sizeof p, "%s/nulname.safetensors", d);
  write_header_file(p, "{\"x\\u0000y\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4);
  expect_fail("NUL in a name", p, CLIP_ERR_BAD_WEIGHTS, "a tensor name holds a NUL byte", NULL);
  snprintf(p, sizeof p, "%s/zerodim.safetensors", d);
  write_header_file(p, "{\"x\": {\"dtype\": \"F32\", \"shape\": [4294967296, 0, 4294967296], \"data_offsets\": [0, 0]}}", 0);
  expect_fail("empty tensor is fine", p, CLIP_ERR_BAD_WEIGHTS, "no CLIP vision tower", NULL);

  snprintf(p, sizeof p, "%s/unknown.safetensors", d);
  write_header_file(p, "{\"x\": {\"dtype\": \"Q7\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 16);
  expect_fail("unknown dtype", p, CLIP_ERR_BAD_WEIGHTS, "tensor x has unknown dtype \"Q7\"", NULL);

  expect_fail("unsupported dtype", write_edited("bad_f64", 1, 2, retype_ln_post),
              CLIP_ERR_UNSUPPORTED,
              "weights: tensor vision_model.post_layernorm.bias has unsupported dtype F64", NULL);

  expect_fail("missing tensor", write_edited("bad_missing", 1, 2, drop_fc2_bias),
              CLIP_ERR_BAD_WEIGHTS, "weights: missing tensor vision_model.encoder.layers.1.mlp.fc2.bias",
              NULL);
  expect_fail("block gap", write_edited("bad_gap", 0, 3, drop_block1), CLIP_ERR_BAD_WEIGHTS,
              "weights: missing tensor visual.transformer.resblocks.1.ln_1.weight", NULL);
  expect_fail("wrong shape", write_edited("bad_shape", 0, 2, reshape_c_proj), CLIP_ERR_BAD_WEIGHTS,
              "weights: tensor visual.transformer.resblocks.1.mlp.c_proj.weight has shape [64 128], "
              "want [64 256]",
              NULL);
  expect_fail("pos not square", write_edited("bad_pos", 0, 2, unsquare_pos), CLIP_ERR_BAD_WEIGHTS,
              "visual.positional_embedding has shape [18 64]", "square grid");
  expect_fail("conv not square", write_edited("bad_conv", 0, 2, rect_conv), CLIP_ERR_BAD_WEIGHTS,
              "visual.conv1.weight has shape [64 3 8 4]", NULL);
  expect_fail("conv bias", write_edited("bad_conv_bias", 0, 2, add_conv_bias),
              CLIP_ERR_UNSUPPORTED, "visual.conv1.bias", NULL);
  expect_fail("no vision tower", write_edited("bad_text_only", 0, 2, only_text),
              CLIP_ERR_BAD_WEIGHTS, "no CLIP vision tower", NULL);

  /* A config file that disagrees with the shapes: embed_dim vs visual.proj. */
  {
    const char *pp = write_edited("bad_proj", 0, 2, reshape_proj);
    char dir[800];
    snprintf(dir, sizeof dir, "%s", pp);
    *strrchr(dir, '/') = 0;
    tmp_write_file(dir, "open_clip_config.json",
               "{\"model_cfg\": {\"embed_dim\": 32, \"vision_cfg\": {\"image_size\": 32, "
               "\"layers\": 2, \"width\": 64, \"patch_size\": 8}}}");
    expect_fail("config vs proj", pp, CLIP_ERR_BAD_WEIGHTS, "says embed_dim 32",
                "tensor visual.proj has shape [64 16]");
  }

  /* Directories. */
  expect_fail("empty directory", new_dir("empty"), CLIP_ERR_IO, "no .safetensors file in directory",
              NULL);
  {
    const char *two = new_dir("two");
    wf_spec s = wf_tiny_spec(0, "F32");
    write_model(path_in(two, "a.safetensors"), &s);
    write_model(path_in(two, "b.safetensors"), &s);
    expect_fail("two candidates", two, CLIP_ERR_IO, "holds 2 .safetensors files", NULL);
  }

  /* Config files. */
  struct {
    const char *name, *file, *text;
    clip_status want;
    const char *sub1, *sub2;
  } configs[] = {
      {"cfg_invalid", "config.json", "{\"vision_config\": {\"hidden_size\": 64,}}",
       CLIP_ERR_BAD_WEIGHTS, "config.json is not valid JSON", "at byte"},
      {"cfg_array", "config.json", "[]", CLIP_ERR_BAD_WEIGHTS, "config.json is not a JSON object",
       NULL},
      {"cfg_act", "config.json", "{\"vision_config\": {\"hidden_act\": \"relu\"}}",
       CLIP_ERR_UNSUPPORTED, "vision_config.hidden_act \"relu\" is not supported", NULL},
      {"cfg_width", "config.json", "{\"vision_config\": {\"hidden_size\": 128}}",
       CLIP_ERR_BAD_WEIGHTS, "says hidden_size 128",
       "tensor vision_model.embeddings.patch_embedding.weight has shape [64 3 8 8]"},
      {"cfg_image", "config.json", "{\"vision_config\": {\"image_size\": 224}}",
       CLIP_ERR_BAD_WEIGHTS, "says image_size 224", "position_embedding.weight has shape [17 64]"},
      {"cfg_patch", "config.json", "{\"patch_size\": 16}", CLIP_ERR_BAD_WEIGHTS,
       "says patch_size 16", NULL},
      {"cfg_mlp", "config.json", "{\"intermediate_size\": 3072}", CLIP_ERR_BAD_WEIGHTS,
       "says intermediate_size 3072", "layers.0.mlp.fc1.weight has shape [256 64]"},
      {"cfg_layers", "config.json", "{\"vision_config\": {\"num_hidden_layers\": 12}}",
       CLIP_ERR_BAD_WEIGHTS, "says num_hidden_layers 12", "holds 2 blocks"},
      {"cfg_proj", "config.json", "{\"projection_dim\": 512, \"vision_config\": {}}",
       CLIP_ERR_BAD_WEIGHTS, "says projection_dim 512", "visual_projection.weight has shape [32 64]"},
      {"cfg_heads", "config.json", "{\"vision_config\": {\"num_attention_heads\": 3}}",
       CLIP_ERR_BAD_WEIGHTS, "width 64 is not divisible by 3 heads", NULL},
      {"cfg_type", "config.json", "{\"vision_config\": {\"hidden_size\": \"64\"}}",
       CLIP_ERR_BAD_WEIGHTS, "vision_config.hidden_size is not a positive integer", NULL},
      {"cfg_eps", "config.json", "{\"layer_norm_eps\": -1}", CLIP_ERR_BAD_WEIGHTS,
       "layer_norm_eps is not a positive number", NULL},
      {"oc_resnet", "open_clip_config.json",
       "{\"model_cfg\": {\"vision_cfg\": {\"layers\": [3, 4, 6, 3], \"width\": 64}}}",
       CLIP_ERR_UNSUPPORTED, "layers is a list", NULL},
      {"oc_head_width", "open_clip_config.json",
       "{\"model_cfg\": {\"vision_cfg\": {\"width\": 64, \"head_width\": 48}}}",
       CLIP_ERR_BAD_WEIGHTS, "width 64 is not divisible by head_width 48", NULL},
      {"oc_no_vision", "open_clip_config.json", "{\"model_cfg\": {}}", CLIP_ERR_BAD_WEIGHTS,
       "no model_cfg.vision_cfg object", NULL},
      {"oc_quick", "open_clip_config.json",
       "{\"model_cfg\": {\"quick_gelu\": 1, \"vision_cfg\": {}}}", CLIP_ERR_BAD_WEIGHTS,
       "quick_gelu is not true or false", NULL},
      {"oc_mlp_ratio", "open_clip_config.json",
       "{\"model_cfg\": {\"vision_cfg\": {\"mlp_ratio\": 2.0}}}", CLIP_ERR_BAD_WEIGHTS,
       "says width*mlp_ratio 128", "c_fc.weight has shape [256 64]"},
  };
  for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
    int hf = strcmp(configs[i].file, "config.json") == 0;
    const char *pp = write_edited(configs[i].name, hf, 2, NULL);
    char dir[800];
    snprintf(dir, sizeof dir, "%s", pp);
    *strrchr(dir, '/') = 0;
    tmp_write_file(dir, configs[i].file, configs[i].text);
    expect_fail(configs[i].name, dir, configs[i].want, configs[i].sub1, configs[i].sub2);
  }
}

/* Headers the strict JSON parser must refuse (each otherwise a plausible file). */
static void test_json_strictness(void) {
  const char *d = new_dir("json");
  static const char *const bad[] = {
      "",
      "   ",
      "{",
      "{\"a\": 1,}",
      "{'a': 1}",
      "{a: 1}",
      "{\"a\" 1}",
      "{\"a\": 01}",
      "{\"a\": -}",
      "{\"a\": .5}",
      "{\"a\": 1.}",
      "{\"a\": 1e}",
      "{\"a\": +1}",
      "{\"a\": NaN}",
      "{\"a\": Infinity}",
      "{\"a\": tru}",
      "{\"a\": nul}",
      "{\"a\": \"abc}",
      "{\"a\": \"\\x\"}",
      "{\"a\": \"\\u12\"}",
      "{\"a\": \"\\u12G4\"}",
      "{\"a\": \"\\ud800\"}",
      "{\"a\": \"\\ud800\\u0041\"}",
      "{\"a\": \"\\udc00\"}",
      "{\"a\": \"tab\there\"}",
      "{\"a\": \"\xff\"}",
      "{\"a\": \"\xc0\xaf\"}",         /* overlong '/' */
      "{\"a\": \"\xed\xa0\x80\"}",     /* encoded surrogate */
      "{\"a\": \"\xf4\x90\x80\x80\"}", /* past U+10FFFF */
      "{\"a\": \"\xe2\x82\"}",         /* truncated sequence */
      "{\"a\": [1, 2}",
      "{\"a\": [1 2]}",
      "{} {}",
      "{}x",
      "{} /* comment */",
      "\xef\xbb\xbf{}", /* BOM */
      "{\"a\": 1}\\",
  };
  char p[800];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(p, sizeof p, "%s/bad%zu.safetensors", d, i);
    write_header_file(p, bad[i], 0);
    char label[64];
    snprintf(label, sizeof label, "json case %zu", i);
    expect_fail(label, p, CLIP_ERR_BAD_WEIGHTS, "header is not valid JSON", NULL);
  }
  /* A raw NUL inside the header, and a string that runs to the very end of the buffer. */
  snprintf(p, sizeof p, "%s/nul.safetensors", d);
  write_raw(p, 9, "{\"a\0\": 1}", 9, 0);
  expect_fail("json NUL", p, CLIP_ERR_BAD_WEIGHTS, "header is not valid JSON", NULL);
  snprintf(p, sizeof p, "%s/endquote.safetensors", d);
  write_raw(p, 5, "{\"ab\\\"", 5, 0); /* ends after a backslash */
  expect_fail("json end after backslash", p, CLIP_ERR_BAD_WEIGHTS, "unterminated string", NULL);

  /* Nesting: deep enough to overflow a naive recursive parser's stack. */
  size_t depth = 200000;
  char *deep = (char *)malloc(2 * depth + 16);
  size_t n = 0;
  n += (size_t)sprintf(deep, "{\"a\":");
  for (size_t i = 0; i < depth; i++) deep[n++] = '[';
  for (size_t i = 0; i < depth; i++) deep[n++] = ']';
  deep[n++] = '}';
  deep[n] = 0;
  snprintf(p, sizeof p, "%s/deep.safetensors", d);
  write_header_file(p, deep, 0);
  free(deep);
  expect_fail("json depth", p, CLIP_ERR_BAD_WEIGHTS, "nesting deeper than", NULL);

  /* Accepted: an empty header object is a valid file with no tensors (no vision tower). */
  snprintf(p, sizeof p, "%s/emptyobj.safetensors", d);
  write_header_file(p, " {\"__metadata__\": {\"k\": \"v\"}} \t\r\n", 0);
  expect_fail("json empty object", p, CLIP_ERR_BAD_WEIGHTS, "no CLIP vision tower", NULL);
}

int main(void) {
  if (make_tmp_root(tmp_root, sizeof tmp_root, "clip_test_weights") != 0) {
    return 1;
  }
  test_half_bf16();
  test_good_files();
  test_malformed_files();
  test_json_strictness();

  clip_weights_free(NULL);
  clip_weights zero;
  memset(&zero, 0, sizeof zero);
  clip_weights_free(&zero);
  char err[8];
  clip_weights w;
  CHECK(clip_weights_load("", &w, err, sizeof err) == CLIP_ERR_INVALID_ARGUMENT, "empty path");
  CHECK(strlen(err) == 7, "a short error buffer is filled and terminated");

  remove_tmp_root(tmp_root);
  if (failures) {
    fprintf(stderr, "test_weights: %d of %d checks FAILED\n", failures, checks);
    return 1;
  }
  printf("test_weights: all %d checks passed\n", checks);
  return 0;
}
