/* weights.c: loads a CLIP vision tower from safetensors (OpenAI/open_clip `visual.*` naming,
   its prefix-less vision-only form, or Hugging Face `vision_model.*` naming), and the text
   tower beside it when the file has one (optional: a vision-only file loads without it),
   derives both towers' configs from the tensor shapes, checks them against the config file
   beside the weights (Hugging Face config.json or open_clip_config.json), and converts every
   tensor the engine needs into one fp32 arena in the canonical layout of clip_weights
   (internal.h). */
#define _POSIX_C_SOURCE 200809L /* strdup, strndup */

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "json.h"
#include "safetensors.h"

#define NAME_LEN 256
#define CONFIG_MAX_BYTES ((long)16 * 1024 * 1024)
#define CONFIG_JSON_DEPTH 64
/* Canonical arrays start on 64-byte boundaries (16 floats) for the vectorized CPU ops. */
#define ARENA_ALIGN 64
#define ARENA_ALIGN_FLOATS (ARENA_ALIGN / sizeof(float))
/* Any real block index is tiny; this only keeps a hostile name from overflowing an int. */
#define MAX_BLOCK_INDEX 100000

/* ---- fp16 / bf16 ---- */

float clip_half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13); /* inf, or NaN keeping its payload */
  } else if (exp != 0) {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign; /* signed zero */
  } else {
    /* Subnormal half: value = mant * 2^-24. Shift the leading 1 up to bit 10 and count the
       shifts; every half subnormal is a normal float, so the result is exact. */
    int e = 127 - 15 + 1;
    while (!(mant & 0x400u)) {
      mant <<= 1;
      e--;
    }
    bits = sign | ((uint32_t)e << 23) | ((mant & 0x3FFu) << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

float clip_bf16_to_float(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16; /* bf16 is the top half of an fp32 */
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* ---- the loader's state and errors ---- */

typedef struct loader {
  clip_st_file st;
  const char *file;   /* the .safetensors path */
  int hf;             /* 1: Hugging Face naming; 0: OpenAI/open_clip */
  const char *prefix; /* OpenAI naming: "visual." or "" (a vision-only state dict) */
  char *err;
  size_t err_len;
} loader;

static clip_status fail(loader *L, clip_status s, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Every message starts with "weights: ". */
static clip_status fail(loader *L, clip_status s, const char *fmt, ...) {
  if (L->err && L->err_len) {
    int n = snprintf(L->err, L->err_len, "weights: ");
    if (n >= 0 && (size_t)n < L->err_len) {
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(L->err + n, L->err_len - (size_t)n, fmt, ap);
      va_end(ap);
    }
  }
  return s;
}

static void shape_str(const clip_st_tensor *t, char *buf, size_t len) {
  clip_st_shape_string(t->shape, t->ndim, buf, len);
}

/* ---- tensor names ---- */

static void top_name(const loader *L, const char *openai, const char *hf, char *out) {
  if (L->hf)
    snprintf(out, NAME_LEN, "%s", hf);
  else
    snprintf(out, NAME_LEN, "%s%s", L->prefix, openai);
}

/* Where the blocks of a tower are named: the vision tower's (text == 0) or the text tower's
   (OpenAI's text blocks sit at the top level of a full checkpoint). */
static void block_prefix(const loader *L, int text, char *out) {
  if (text)
    snprintf(out, NAME_LEN, "%s", L->hf ? "text_model.encoder.layers." : "transformer.resblocks.");
  else if (L->hf)
    snprintf(out, NAME_LEN, "vision_model.encoder.layers.");
  else
    snprintf(out, NAME_LEN, "%stransformer.resblocks.", L->prefix);
}

static void block_name(const loader *L, int text, int layer, const char *openai, const char *hf,
                       char *out) {
  char pre[NAME_LEN];
  block_prefix(L, text, pre);
  /* Short enough that the full name always fits NAME_LEN. */
  snprintf(out, NAME_LEN, "%.128s%d.%.64s", pre, layer, L->hf ? hf : openai);
}

static const char *conv_name_openai = "conv1.weight";
static const char *conv_name_hf = "vision_model.embeddings.patch_embedding.weight";
static const char *pos_name_openai = "positional_embedding";
static const char *pos_name_hf = "vision_model.embeddings.position_embedding.weight";
static const char *proj_name_openai = "proj";
static const char *proj_name_hf = "visual_projection.weight";

static int has_prefix(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Decides the naming from the names present. */
static clip_status detect_naming(loader *L) {
  int hf = 0, visual = 0;
  for (size_t i = 0; i < L->st.count; i++) {
    const char *n = L->st.tensors[i].name;
    if (has_prefix(n, "vision_model.")) hf = 1;
    if (has_prefix(n, "visual.")) visual = 1;
  }
  if (hf && visual)
    return fail(L, CLIP_ERR_BAD_WEIGHTS,
                "%s holds both Hugging Face (vision_model.*) and OpenAI (visual.*) tensors; "
                "which vision tower to load is ambiguous",
                L->file);
  if (hf) {
    L->hf = 1;
    L->prefix = "";
    return CLIP_OK;
  }
  L->hf = 0;
  if (visual) {
    L->prefix = "visual.";
    return CLIP_OK;
  }
  if (clip_st_find(&L->st, conv_name_openai)) {
    L->prefix = "";
    return CLIP_OK;
  }
  return fail(L, CLIP_ERR_BAD_WEIGHTS,
              "%s holds no CLIP vision tower (no tensor visual.conv1.weight, conv1.weight or %s)",
              L->file, conv_name_hf);
}

/* Looks a tensor up; a missing one or one we cannot convert is an error. */
static const clip_st_tensor *need(loader *L, const char *name, clip_status *s) {
  const clip_st_tensor *t = clip_st_find(&L->st, name);
  if (!t) {
    *s = fail(L, CLIP_ERR_BAD_WEIGHTS, "missing tensor %s", name);
    return NULL;
  }
  if (t->dtype == CLIP_ST_OTHER) {
    *s = fail(L, CLIP_ERR_UNSUPPORTED, "tensor %s has unsupported dtype %s (want F32, F16 or BF16)",
              name, t->dtype_name);
    return NULL;
  }
  return t;
}

/* ---- config from the shapes ---- */

/* Parses "<digits>." at s (no leading zeros); the index, or -1. */
static int parse_block_index(const char *s) {
  if (s[0] < '0' || s[0] > '9' || (s[0] == '0' && s[1] != '.')) return -1;
  long v = 0;
  for (; *s >= '0' && *s <= '9'; s++) {
    v = v * 10 + (*s - '0');
    if (v > MAX_BLOCK_INDEX) return MAX_BLOCK_INDEX;
  }
  return *s == '.' ? (int)v : -1;
}

/* A tower's layer count: the highest block index present + 1; walk() then demands every
   block below it, so a gap is reported as the first missing tensor. */
static int count_blocks(const loader *L, int text) {
  char pre[NAME_LEN];
  block_prefix(L, text, pre);
  size_t plen = strlen(pre);
  int max_index = -1;
  for (size_t i = 0; i < L->st.count; i++) {
    const char *n = L->st.tensors[i].name;
    if (strncmp(n, pre, plen) != 0) continue;
    int idx = parse_block_index(n + plen);
    if (idx > max_index) max_index = idx;
  }
  return max_index + 1;
}

/* Reads W, P, T, grid, L, M, E from the tensors that define them. The remaining tensors are
   checked against these in walk(). */
static clip_status derive_from_shapes(loader *L, clip_config *c) {
  clip_status s = CLIP_OK;
  char name[NAME_LEN], shape[160];

  top_name(L, conv_name_openai, conv_name_hf, name);
  const clip_st_tensor *conv = need(L, name, &s);
  if (!conv) return s;
  if (conv->ndim != 4 || conv->shape[1] != 3 || conv->shape[2] != conv->shape[3] ||
      conv->shape[0] <= 0 || conv->shape[2] <= 0 || conv->shape[0] > INT32_MAX / 4 ||
      conv->shape[2] > 4096) {
    shape_str(conv, shape, sizeof shape);
    return fail(L, CLIP_ERR_BAD_WEIGHTS,
                "tensor %s has shape %s, want [width 3 patch patch] (a square patch over RGB)",
                name, shape);
  }
  c->width = (int)conv->shape[0];
  c->patch_size = (int)conv->shape[2];

  top_name(L, pos_name_openai, pos_name_hf, name);
  const clip_st_tensor *pos = need(L, name, &s);
  if (!pos) return s;
  shape_str(pos, shape, sizeof shape);
  if (pos->ndim != 2 || pos->shape[1] != c->width || pos->shape[0] < 2 ||
      pos->shape[0] > 1000000)
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "tensor %s has shape %s, want [tokens %d]", name, shape,
                c->width);
  int tokens = (int)pos->shape[0];
  int grid = (int)lround(sqrt((double)(tokens - 1)));
  if (grid * grid != tokens - 1)
    return fail(L, CLIP_ERR_BAD_WEIGHTS,
                "tensor %s has shape %s: %d patch positions do not form a square grid", name,
                shape, tokens - 1);
  if ((long)grid * c->patch_size > 1000000)
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "tensor %s has shape %s: image size %ld is implausible",
                name, shape, (long)grid * c->patch_size);
  c->tokens = tokens;
  c->grid = grid;
  c->image_size = grid * c->patch_size;

  c->layers = count_blocks(L, 0);
  if (c->layers == 0) {
    block_name(L, 0, 0, "ln_1.weight", "layer_norm1.weight", name);
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "missing tensor %s", name);
  }

  block_name(L, 0, 0, "mlp.c_fc.weight", "mlp.fc1.weight", name);
  const clip_st_tensor *fc1 = need(L, name, &s);
  if (!fc1) return s;
  if (fc1->ndim != 2 || fc1->shape[1] != c->width || fc1->shape[0] <= 0 ||
      fc1->shape[0] > INT32_MAX / 4) {
    shape_str(fc1, shape, sizeof shape);
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "tensor %s has shape %s, want [mlp_width %d]", name,
                shape, c->width);
  }
  c->mlp_width = (int)fc1->shape[0];

  top_name(L, proj_name_openai, proj_name_hf, name);
  const clip_st_tensor *proj = need(L, name, &s);
  if (!proj) return s;
  int e_axis = L->hf ? 0 : 1; /* OpenAI stores [W, E], Hugging Face [E, W] */
  if (proj->ndim != 2 || proj->shape[1 - e_axis] != c->width || proj->shape[e_axis] <= 0 ||
      proj->shape[e_axis] > INT32_MAX / 4) {
    shape_str(proj, shape, sizeof shape);
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "tensor %s has shape %s, want %s", name, shape,
                L->hf ? "[embed_dim width]" : "[width embed_dim]");
  }
  c->embed_dim = (int)proj->shape[e_axis];
  return CLIP_OK;
}

/* ---- config files ---- */

typedef struct file_config {
  const char *path;
  const char *kind; /* "config.json" or "open_clip_config.json" */
  /* -1: the file does not say */
  int width, layers, heads, mlp_width, patch_size, image_size, embed_dim, quick_gelu;
  int head_width;
  double ln_eps;   /* 0: not given */
  double mlp_ratio; /* open_clip only; 0: not given */
  /* The text tower's part (HF text_config, open_clip text_cfg); -1 / 0: not said. */
  int t_cfg; /* 1: the file has a text config */
  int t_width, t_layers, t_heads, t_ctx, t_vocab, t_mlp_width, t_embed_dim, t_quick_gelu;
  double t_ln_eps, t_mlp_ratio;
  char t_unsupported[CLIP_ERR_LEN]; /* a text-tower feature this library does not run: the reason */
} file_config;

static clip_status read_file(loader *L, const char *path, char **out, size_t *len) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return fail(L, CLIP_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  char *buf = NULL;
  clip_status s = CLIP_OK;
  if (fseek(fp, 0, SEEK_END) != 0) {
    s = fail(L, CLIP_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    goto done;
  }
  long size = ftell(fp);
  if (size < 0 || size > CONFIG_MAX_BYTES) {
    s = size < 0 ? fail(L, CLIP_ERR_IO, "cannot read %s: %s", path, strerror(errno))
                 : fail(L, CLIP_ERR_BAD_WEIGHTS, "%s is %ld bytes, too large for a config file",
                        path, size);
    goto done;
  }
  rewind(fp);
  buf = (char *)malloc((size_t)size + 1);
  if (!buf) {
    s = fail(L, CLIP_ERR_OUT_OF_MEMORY, "out of memory reading %s", path);
    goto done;
  }
  if (fread(buf, 1, (size_t)size, fp) != (size_t)size) {
    s = fail(L, CLIP_ERR_IO, "cannot read %s: short read", path);
    free(buf);
    buf = NULL;
    goto done;
  }
  *out = buf;
  *len = (size_t)size;
done:
  fclose(fp);
  return s;
}

/* Reads an optional positive integer member; *out stays -1 when absent. */
static clip_status get_int(loader *L, const file_config *fc, const clip_json *obj,
                           const char *where, const char *key, int *out) {
  const clip_json *v = clip_json_get(obj, key);
  if (!v || v->type == CLIP_JSON_NULL) return CLIP_OK;
  double d = v->type == CLIP_JSON_NUMBER ? v->number : -1;
  if (v->type != CLIP_JSON_NUMBER || d != floor(d) || d < 1 || d > 1e9)
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "%s: %s%s is not a positive integer", fc->path, where,
                key);
  *out = (int)d;
  return CLIP_OK;
}

static clip_status get_positive(loader *L, const file_config *fc, const clip_json *obj,
                                const char *where, const char *key, double *out) {
  const clip_json *v = clip_json_get(obj, key);
  if (!v || v->type == CLIP_JSON_NULL) return CLIP_OK;
  if (v->type != CLIP_JSON_NUMBER || !(v->number > 0) || !isfinite(v->number))
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "%s: %s%s is not a positive number", fc->path, where,
                key);
  *out = v->number;
  return CLIP_OK;
}

/* The hidden_act of a Hugging Face config object: *quick 1 for quick_gelu, 0 for gelu, left
   as it is when absent; another activation's name goes to *other for the caller to judge. */
static clip_status get_hf_act(loader *L, const file_config *fc, const clip_json *obj,
                              const char *where, int *quick, const char **other) {
  const clip_json *act = clip_json_get(obj, "hidden_act");
  *other = NULL;
  if (!act || act->type == CLIP_JSON_NULL) return CLIP_OK;
  if (act->type != CLIP_JSON_STRING)
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "%s: %shidden_act is not a string", fc->path, where);
  if (strcmp(act->str, "quick_gelu") == 0)
    *quick = 1;
  else if (strcmp(act->str, "gelu") == 0)
    *quick = 0;
  else
    *other = act->str;
  return CLIP_OK;
}

/* Hugging Face text_config of a CLIPConfig (absent in a CLIPVisionConfig). An activation
   other than quick_gelu/gelu leaves the vision tower loadable and the text tower unsupported. */
static clip_status parse_hf_text_config(loader *L, const clip_json *root, file_config *fc) {
  const clip_json *tc = clip_json_get(root, "text_config");
  if (!tc || tc->type == CLIP_JSON_NULL) return CLIP_OK;
  if (tc->type != CLIP_JSON_OBJECT)
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "%s: text_config is not an object", fc->path);
  const char *where = "text_config.";
  fc->t_cfg = 1;
  clip_status s;
  if ((s = get_int(L, fc, tc, where, "hidden_size", &fc->t_width)) ||
      (s = get_int(L, fc, tc, where, "intermediate_size", &fc->t_mlp_width)) ||
      (s = get_int(L, fc, tc, where, "num_hidden_layers", &fc->t_layers)) ||
      (s = get_int(L, fc, tc, where, "num_attention_heads", &fc->t_heads)) ||
      (s = get_int(L, fc, tc, where, "max_position_embeddings", &fc->t_ctx)) ||
      (s = get_int(L, fc, tc, where, "vocab_size", &fc->t_vocab)) ||
      (s = get_int(L, fc, tc, where, "projection_dim", &fc->t_embed_dim)) ||
      (s = get_positive(L, fc, tc, where, "layer_norm_eps", &fc->t_ln_eps)))
    return s;
  if (fc->t_embed_dim < 0 && (s = get_int(L, fc, root, "", "projection_dim", &fc->t_embed_dim)))
    return s;
  const char *other = NULL;
  if ((s = get_hf_act(L, fc, tc, where, &fc->t_quick_gelu, &other))) return s;
  if (other)
    snprintf(fc->t_unsupported, sizeof fc->t_unsupported,
             "%s: %shidden_act \"%.64s\" is not supported for the text tower (quick_gelu or "
             "gelu)", fc->path, where, other);
  return CLIP_OK;
}

/* open_clip model_cfg.text_cfg. Text towers open_clip builds differently from CLIP's (a
   Hugging Face model, another pooling, no causal mask, a projection bias, layer scale) leave
   the vision tower loadable and the text tower unsupported, with the reason. */
static clip_status parse_open_clip_text_config(loader *L, const clip_json *mc, const char *mwhere,
                                               file_config *fc) {
  const clip_json *tc = clip_json_get(mc, "text_cfg");
  if (!tc || tc->type == CLIP_JSON_NULL) return CLIP_OK;
  char where[64];
  snprintf(where, sizeof where, "%stext_cfg.", mwhere);
  if (tc->type != CLIP_JSON_OBJECT)
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "%s: %.40stext_cfg is not an object", fc->path, mwhere);
  fc->t_cfg = 1;
  clip_status s;
  if ((s = get_int(L, fc, tc, where, "width", &fc->t_width)) ||
      (s = get_int(L, fc, tc, where, "layers", &fc->t_layers)) ||
      (s = get_int(L, fc, tc, where, "heads", &fc->t_heads)) ||
      (s = get_int(L, fc, tc, where, "context_length", &fc->t_ctx)) ||
      (s = get_int(L, fc, tc, where, "vocab_size", &fc->t_vocab)) ||
      (s = get_positive(L, fc, tc, where, "mlp_ratio", &fc->t_mlp_ratio)))
    return s;
  if (fc->t_heads < 0) fc->t_heads = 8; /* open_clip's CLIPTextCfg default */
  fc->t_embed_dim = fc->embed_dim;
  fc->t_quick_gelu = fc->quick_gelu;
  static const char *const flags[] = {"no_causal_mask", "embed_cls", "proj_bias"};
  const clip_json *v;
  if ((v = clip_json_get(tc, "hf_model_name")) && v->type == CLIP_JSON_STRING)
    snprintf(fc->t_unsupported, sizeof fc->t_unsupported,
             "%s: %shf_model_name \"%.64s\": Hugging Face text towers are not supported (only "
             "CLIP's own text transformer)", fc->path, where, v->str);
  else if ((v = clip_json_get(tc, "pool_type")) && v->type == CLIP_JSON_STRING &&
           strcmp(v->str, "argmax") != 0)
    snprintf(fc->t_unsupported, sizeof fc->t_unsupported,
             "%s: %spool_type \"%.32s\" is not supported (only argmax, CLIP's end-token pooling)",
             fc->path, where, v->str);
  else if ((v = clip_json_get(tc, "proj_type")) && v->type == CLIP_JSON_STRING &&
           strcmp(v->str, "linear") != 0)
    snprintf(fc->t_unsupported, sizeof fc->t_unsupported,
             "%s: %sproj_type \"%.32s\" is not supported (only linear)", fc->path, where, v->str);
  else if ((v = clip_json_get(tc, "ls_init_value")) && v->type == CLIP_JSON_NUMBER)
    snprintf(fc->t_unsupported, sizeof fc->t_unsupported,
             "%s: %sls_init_value: text towers with layer scale are not supported", fc->path,
             where);
  for (size_t k = 0; k < sizeof flags / sizeof flags[0] && !fc->t_unsupported[0]; k++)
    if ((v = clip_json_get(tc, flags[k])) && v->type == CLIP_JSON_BOOL && v->boolean)
      snprintf(fc->t_unsupported, sizeof fc->t_unsupported,
               "%s: %s%s is true: only CLIP's own text transformer is supported", fc->path, where,
               flags[k]);
  return CLIP_OK;
}

/* Hugging Face: a CLIPVisionConfig (keys at the top) or a CLIPConfig (keys in vision_config,
   projection_dim at either level). Keys HF leaves out equal its defaults: hidden_act
   quick_gelu, layer_norm_eps 1e-5, and num_attention_heads 12, which width/64 reproduces for
   the default width while staying right for other widths. */
static clip_status parse_hf_config(loader *L, const clip_json *root, file_config *fc) {
  const clip_json *vc = clip_json_get(root, "vision_config");
  const char *where = "vision_config.";
  if (!vc || vc->type == CLIP_JSON_NULL) {
    vc = root;
    where = "";
  } else if (vc->type != CLIP_JSON_OBJECT) {
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "%s: vision_config is not an object", fc->path);
  }
  clip_status s;
  if ((s = get_int(L, fc, vc, where, "hidden_size", &fc->width)) ||
      (s = get_int(L, fc, vc, where, "intermediate_size", &fc->mlp_width)) ||
      (s = get_int(L, fc, vc, where, "num_hidden_layers", &fc->layers)) ||
      (s = get_int(L, fc, vc, where, "num_attention_heads", &fc->heads)) ||
      (s = get_int(L, fc, vc, where, "patch_size", &fc->patch_size)) ||
      (s = get_int(L, fc, vc, where, "image_size", &fc->image_size)) ||
      (s = get_int(L, fc, vc, where, "projection_dim", &fc->embed_dim)) ||
      (s = get_positive(L, fc, vc, where, "layer_norm_eps", &fc->ln_eps)))
    return s;
  if (fc->embed_dim < 0 && vc != root &&
      (s = get_int(L, fc, root, "", "projection_dim", &fc->embed_dim)))
    return s;
  const char *other = NULL;
  if ((s = get_hf_act(L, fc, vc, where, &fc->quick_gelu, &other))) return s;
  if (other)
    return fail(L, CLIP_ERR_UNSUPPORTED,
                "%s: %shidden_act \"%.64s\" is not supported (quick_gelu or gelu)", fc->path,
                where, other);
  return parse_hf_text_config(L, root, fc);
}

/* open_clip: {"model_cfg": {"embed_dim", "quick_gelu", "vision_cfg": {...}}, ...}, or the
   bare model config (open_clip's model_configs directory) with those keys at the top. */
static clip_status parse_open_clip_config(loader *L, const clip_json *root, file_config *fc) {
  const clip_json *mc = clip_json_get(root, "model_cfg");
  const char *mwhere = "model_cfg.";
  if (!mc) {
    mc = root;
    mwhere = "";
  } else if (mc->type != CLIP_JSON_OBJECT) {
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "%s: model_cfg is not an object", fc->path);
  }
  const clip_json *vc = clip_json_get(mc, "vision_cfg");
  if (!vc || vc->type != CLIP_JSON_OBJECT)
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "%s: no %svision_cfg object", fc->path, mwhere);
  char where[64];
  snprintf(where, sizeof where, "%svision_cfg.", mwhere);

  const clip_json *timm = clip_json_get(vc, "timm_model_name");
  if (timm && timm->type == CLIP_JSON_STRING)
    return fail(L, CLIP_ERR_UNSUPPORTED, "%s: %stimm_model_name \"%.64s\": timm towers are not "
                "supported (only open_clip's own ViT)", fc->path, where, timm->str);
  const clip_json *layers = clip_json_get(vc, "layers");
  if (layers && layers->type == CLIP_JSON_ARRAY)
    return fail(L, CLIP_ERR_UNSUPPORTED,
                "%s: %slayers is a list (a ModifiedResNet tower); only ViT towers are supported",
                fc->path, where);
  const clip_json *img = clip_json_get(vc, "image_size");
  if (img && img->type == CLIP_JSON_ARRAY) {
    /* open_clip allows [h, w]; only square inputs exist here. */
    const clip_json *h = img->child, *w = h ? h->next : NULL;
    if (img->count != 2 || h->type != CLIP_JSON_NUMBER || w->type != CLIP_JSON_NUMBER ||
        !h->is_integer || h->integer != w->integer || h->integer < 1 || h->integer > 1000000)
      return fail(L, CLIP_ERR_UNSUPPORTED, "%s: %simage_size is not square", fc->path, where);
    fc->image_size = (int)h->integer;
  } else {
    clip_status s = get_int(L, fc, vc, where, "image_size", &fc->image_size);
    if (s) return s;
  }
  clip_status s;
  if ((s = get_int(L, fc, vc, where, "width", &fc->width)) ||
      (s = get_int(L, fc, vc, where, "layers", &fc->layers)) ||
      (s = get_int(L, fc, vc, where, "patch_size", &fc->patch_size)) ||
      (s = get_int(L, fc, vc, where, "head_width", &fc->head_width)) ||
      (s = get_positive(L, fc, vc, where, "mlp_ratio", &fc->mlp_ratio)) ||
      (s = get_int(L, fc, mc, mwhere, "embed_dim", &fc->embed_dim)))
    return s;
  if (fc->head_width < 0) fc->head_width = 64; /* open_clip's default */
  const clip_json *qg = clip_json_get(mc, "quick_gelu");
  if (qg && qg->type != CLIP_JSON_NULL) {
    if (qg->type != CLIP_JSON_BOOL)
      return fail(L, CLIP_ERR_BAD_WEIGHTS, "%s: %squick_gelu is not true or false", fc->path,
                  mwhere);
    fc->quick_gelu = qg->boolean;
  } else {
    fc->quick_gelu = 0; /* open_clip's default: exact GELU */
  }
  return parse_open_clip_text_config(L, mc, mwhere, fc);
}

static int file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Finds and parses the config file beside the weights. Returns CLIP_OK with fc->path NULL
   when there is none. The file of the weights' own ecosystem is preferred when both exist
   (open_clip's hub repos carry an HF config.json too). */
static clip_status load_config_file(loader *L, const char *dir, char *path_buf, size_t path_len,
                                    file_config *fc) {
  static const char *const kinds_openai[] = {"open_clip_config.json", "config.json"};
  static const char *const kinds_hf[] = {"config.json", "open_clip_config.json"};
  const char *const *kinds = L->hf ? kinds_hf : kinds_openai;
  memset(fc, 0, sizeof *fc);
  fc->width = fc->layers = fc->heads = fc->mlp_width = fc->patch_size = fc->image_size =
      fc->embed_dim = fc->quick_gelu = fc->head_width = -1;
  fc->t_width = fc->t_layers = fc->t_heads = fc->t_ctx = fc->t_vocab = fc->t_mlp_width =
      fc->t_embed_dim = fc->t_quick_gelu = -1;
  for (int k = 0; k < 2 && !fc->path; k++) {
    snprintf(path_buf, path_len, "%s/%s", dir, kinds[k]);
    if (file_exists(path_buf)) {
      fc->path = path_buf;
      fc->kind = kinds[k];
    }
  }
  if (!fc->path) return CLIP_OK;

  char *text = NULL;
  size_t len = 0;
  clip_status s = read_file(L, fc->path, &text, &len);
  if (s != CLIP_OK) return s;
  clip_json_doc doc;
  char jerr[200];
  int js = clip_json_parse(text, len, CONFIG_JSON_DEPTH, &doc, jerr, sizeof jerr);
  free(text);
  if (js == CLIP_JSON_NOMEM) return fail(L, CLIP_ERR_OUT_OF_MEMORY, "out of memory parsing %s", fc->path);
  if (js != CLIP_JSON_OK) return fail(L, CLIP_ERR_BAD_WEIGHTS, "%s is not valid JSON: %s", fc->path, jerr);
  if (doc.root->type != CLIP_JSON_OBJECT) {
    clip_json_doc_free(&doc);
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "%s is not a JSON object", fc->path);
  }
  if (strcmp(fc->kind, "config.json") == 0)
    s = parse_hf_config(L, doc.root, fc);
  else
    s = parse_open_clip_config(L, doc.root, fc);
  clip_json_doc_free(&doc);
  return s;
}

/* A config value that disagrees with the tensors names both. */
static clip_status disagree(loader *L, const file_config *fc, const char *key, int said,
                            const char *tensor_name, const char *derived) {
  const clip_st_tensor *t = clip_st_find(&L->st, tensor_name);
  char shape[160] = "?";
  if (t) shape_str(t, shape, sizeof shape);
  return fail(L, CLIP_ERR_BAD_WEIGHTS, "%s says %s %d, but tensor %s has shape %s (%s)", fc->path,
              key, said, tensor_name, shape, derived);
}

/* Checks the file's values against the shapes and takes what only the file knows. */
static clip_status apply_config_file(loader *L, const file_config *fc, clip_config *c) {
  const int hf = strcmp(fc->kind, "config.json") == 0;
  char conv[NAME_LEN], pos[NAME_LEN], fc1[NAME_LEN], proj[NAME_LEN], pre[NAME_LEN], derived[96];
  top_name(L, conv_name_openai, conv_name_hf, conv);
  top_name(L, pos_name_openai, pos_name_hf, pos);
  top_name(L, proj_name_openai, proj_name_hf, proj);
  block_name(L, 0, 0, "mlp.c_fc.weight", "mlp.fc1.weight", fc1);
  block_prefix(L, 0, pre);

  if (fc->width > 0 && fc->width != c->width) {
    snprintf(derived, sizeof derived, "width %d", c->width);
    return disagree(L, fc, hf ? "hidden_size" : "width", fc->width, conv, derived);
  }
  if (fc->patch_size > 0 && fc->patch_size != c->patch_size) {
    snprintf(derived, sizeof derived, "patch_size %d", c->patch_size);
    return disagree(L, fc, "patch_size", fc->patch_size, conv, derived);
  }
  if (fc->image_size > 0 && fc->image_size != c->image_size) {
    snprintf(derived, sizeof derived, "a %dx%d grid of %d-pixel patches: image_size %d", c->grid,
             c->grid, c->patch_size, c->image_size);
    return disagree(L, fc, "image_size", fc->image_size, pos, derived);
  }
  if (fc->mlp_width > 0 && fc->mlp_width != c->mlp_width) {
    snprintf(derived, sizeof derived, "intermediate_size %d", c->mlp_width);
    return disagree(L, fc, "intermediate_size", fc->mlp_width, fc1, derived);
  }
  if (fc->mlp_ratio > 0) {
    int m = (int)(c->width * fc->mlp_ratio); /* open_clip truncates the same way */
    if (m != c->mlp_width) {
      snprintf(derived, sizeof derived, "mlp width %d", c->mlp_width);
      return disagree(L, fc, "width*mlp_ratio", m, fc1, derived);
    }
  }
  if (fc->embed_dim > 0 && fc->embed_dim != c->embed_dim) {
    snprintf(derived, sizeof derived, "embed_dim %d", c->embed_dim);
    return disagree(L, fc, hf ? "projection_dim" : "embed_dim", fc->embed_dim, proj, derived);
  }
  if (fc->layers > 0 && fc->layers != c->layers)
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "%s says %s %d, but %s holds %d blocks (%s0 .. %s%d)",
                fc->path, hf ? "num_hidden_layers" : "layers", fc->layers, L->file, c->layers, pre,
                pre, c->layers - 1);

  if (hf) {
    if (fc->heads > 0) c->heads = fc->heads;
    if (fc->ln_eps > 0) c->ln_eps = (float)fc->ln_eps;
    if (fc->quick_gelu >= 0) c->quick_gelu = fc->quick_gelu;
  } else {
    if (c->width % fc->head_width != 0)
      return fail(L, CLIP_ERR_BAD_WEIGHTS, "%s: width %d is not divisible by head_width %d",
                  fc->path, c->width, fc->head_width);
    c->heads = c->width / fc->head_width;
    c->quick_gelu = fc->quick_gelu;
  }
  return CLIP_OK;
}

/* ---- the text tower: presence, config from the shapes and the config file ---- */

static const char *tok_name_openai = "token_embedding.weight";
static const char *tok_name_hf = "text_model.embeddings.token_embedding.weight";
static const char *tpos_name_openai = "positional_embedding";
static const char *tpos_name_hf = "text_model.embeddings.position_embedding.weight";
static const char *tproj_name_openai = "text_projection";
static const char *tproj_name_hf = "text_projection.weight";

static void text_name(const loader *L, const char *openai, const char *hf, char *out) {
  snprintf(out, NAME_LEN, "%s", L->hf ? hf : openai);
}

/* The first text-tower tensor of the file, or NULL when it has none. OpenAI's text tensors sit
   at the top level beside visual.*, so a prefix-less vision-only state dict (whose vision
   tensors are the top-level ones) has no text tower; HF's position_ids buffer is no weight. */
static const char *first_text_tensor(const loader *L) {
  for (size_t i = 0; i < L->st.count; i++) {
    const char *n = L->st.tensors[i].name;
    if (L->hf) {
      if ((has_prefix(n, "text_model.") && strcmp(n, "text_model.embeddings.position_ids") != 0) ||
          has_prefix(n, "text_projection"))
        return n;
    } else if (L->prefix[0]) {
      if (has_prefix(n, "token_embedding.") || strcmp(n, tpos_name_openai) == 0 ||
          has_prefix(n, "transformer.") || has_prefix(n, "ln_final.") ||
          has_prefix(n, "text_projection"))
        return n;
    }
  }
  return NULL;
}

/* Reads V, W, ctx, layers, M, E of the text tower from the tensors that define them. */
static clip_status derive_text_from_shapes(loader *L, clip_text_config *t) {
  clip_status s = CLIP_OK;
  char name[NAME_LEN], shape[160];

  text_name(L, tok_name_openai, tok_name_hf, name);
  const clip_st_tensor *tok = need(L, name, &s);
  if (!tok) return s;
  if (tok->ndim != 2 || tok->shape[0] <= 0 || tok->shape[0] > INT32_MAX / 4 ||
      tok->shape[1] <= 0 || tok->shape[1] > INT32_MAX / 4) {
    shape_str(tok, shape, sizeof shape);
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "tensor %s has shape %s, want [vocab_size width]", name,
                shape);
  }
  t->vocab_size = (int)tok->shape[0];
  t->width = (int)tok->shape[1];

  text_name(L, tpos_name_openai, tpos_name_hf, name);
  const clip_st_tensor *pos = need(L, name, &s);
  if (!pos) return s;
  if (pos->ndim != 2 || pos->shape[1] != t->width || pos->shape[0] <= 0 ||
      pos->shape[0] > 1000000) {
    shape_str(pos, shape, sizeof shape);
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "tensor %s has shape %s, want [context_length %d]", name,
                shape, t->width);
  }
  t->context_length = (int)pos->shape[0];

  t->layers = count_blocks(L, 1);
  if (t->layers == 0) {
    block_name(L, 1, 0, "ln_1.weight", "layer_norm1.weight", name);
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "missing tensor %s", name);
  }
  block_name(L, 1, 0, "mlp.c_fc.weight", "mlp.fc1.weight", name);
  const clip_st_tensor *fc1 = need(L, name, &s);
  if (!fc1) return s;
  if (fc1->ndim != 2 || fc1->shape[1] != t->width || fc1->shape[0] <= 0 ||
      fc1->shape[0] > INT32_MAX / 4) {
    shape_str(fc1, shape, sizeof shape);
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "tensor %s has shape %s, want [mlp_width %d]", name,
                shape, t->width);
  }
  t->mlp_width = (int)fc1->shape[0];

  text_name(L, tproj_name_openai, tproj_name_hf, name);
  const clip_st_tensor *proj = need(L, name, &s);
  if (!proj) return s;
  int e_axis = L->hf ? 0 : 1; /* OpenAI stores [W, E], Hugging Face [E, W] */
  if (proj->ndim != 2 || proj->shape[1 - e_axis] != t->width || proj->shape[e_axis] <= 0 ||
      proj->shape[e_axis] > INT32_MAX / 4) {
    shape_str(proj, shape, sizeof shape);
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "tensor %s has shape %s, want %s (width %d)", name, shape,
                L->hf ? "[embed_dim width]" : "[width embed_dim]", t->width);
  }
  t->embed_dim = (int)proj->shape[e_axis];
  return CLIP_OK;
}

/* Checks the config file's text part against the shapes and takes what only the file knows
   (heads, activation, LayerNorm epsilon). */
static clip_status apply_text_config(loader *L, const file_config *fc, clip_text_config *t) {
  const int hf = strcmp(fc->kind, "config.json") == 0;
  char tok[NAME_LEN], pos[NAME_LEN], fc1[NAME_LEN], proj[NAME_LEN], pre[NAME_LEN], derived[96];
  text_name(L, tok_name_openai, tok_name_hf, tok);
  text_name(L, tpos_name_openai, tpos_name_hf, pos);
  text_name(L, tproj_name_openai, tproj_name_hf, proj);
  block_name(L, 1, 0, "mlp.c_fc.weight", "mlp.fc1.weight", fc1);
  block_prefix(L, 1, pre);
  const char *sec = hf ? "text_config." : "text_cfg.";
  char key[64];
#define TEXT_KEY(k) (snprintf(key, sizeof key, "%s%s", sec, (k)), key)
  if (fc->t_width > 0 && fc->t_width != t->width) {
    snprintf(derived, sizeof derived, "width %d", t->width);
    return disagree(L, fc, TEXT_KEY(hf ? "hidden_size" : "width"), fc->t_width, tok, derived);
  }
  if (fc->t_vocab > 0 && fc->t_vocab != t->vocab_size) {
    snprintf(derived, sizeof derived, "vocab_size %d", t->vocab_size);
    return disagree(L, fc, TEXT_KEY("vocab_size"), fc->t_vocab, tok, derived);
  }
  if (fc->t_ctx > 0 && fc->t_ctx != t->context_length) {
    snprintf(derived, sizeof derived, "context_length %d", t->context_length);
    return disagree(L, fc, TEXT_KEY(hf ? "max_position_embeddings" : "context_length"), fc->t_ctx,
                    pos, derived);
  }
  if (fc->t_mlp_width > 0 && fc->t_mlp_width != t->mlp_width) {
    snprintf(derived, sizeof derived, "intermediate_size %d", t->mlp_width);
    return disagree(L, fc, TEXT_KEY("intermediate_size"), fc->t_mlp_width, fc1, derived);
  }
  if (fc->t_mlp_ratio > 0 && (int)(t->width * fc->t_mlp_ratio) != t->mlp_width) {
    snprintf(derived, sizeof derived, "mlp width %d", t->mlp_width);
    return disagree(L, fc, TEXT_KEY("width*mlp_ratio"), (int)(t->width * fc->t_mlp_ratio), fc1,
                    derived);
  }
  if (fc->t_embed_dim > 0 && fc->t_embed_dim != t->embed_dim) {
    snprintf(derived, sizeof derived, "embed_dim %d", t->embed_dim);
    return disagree(L, fc, hf ? "projection_dim" : "embed_dim", fc->t_embed_dim, proj, derived);
  }
  if (fc->t_layers > 0 && fc->t_layers != t->layers)
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "%s says %s %d, but %s holds %d text blocks (%s0 .. %s%d)",
                fc->path, TEXT_KEY(hf ? "num_hidden_layers" : "layers"), fc->t_layers, L->file,
                t->layers, pre, pre, t->layers - 1);
#undef TEXT_KEY
  if (fc->t_heads > 0) t->heads = fc->t_heads;
  if (fc->t_ln_eps > 0) t->ln_eps = (float)fc->t_ln_eps;
  if (hf) {
    if (fc->t_quick_gelu >= 0) t->quick_gelu = fc->t_quick_gelu;
  } else {
    t->quick_gelu = fc->quick_gelu; /* open_clip: one model-wide flag */
  }
  return CLIP_OK;
}

/* The text tower's config, after the vision tower's: *has_text 0 with the reason in absent
   when there is none (or one the config file says we cannot run); an error for a text tower
   that is there but broken. */
static clip_status text_config(loader *L, const file_config *fc, const clip_config *vision,
                               clip_text_config *t, int *has_text, char *absent,
                               size_t absent_len) {
  memset(t, 0, sizeof *t);
  *has_text = 0;
  if (fc->path && fc->t_unsupported[0]) {
    snprintf(absent, absent_len, "%s", fc->t_unsupported);
    return CLIP_OK;
  }
  if (!first_text_tensor(L)) {
    snprintf(absent, absent_len, "%s has no text tower (%s): text embeddings need a whole CLIP checkpoint",
             L->file, L->hf ? "no text_model.* tensors" : L->prefix[0] ? "no token_embedding.weight beside visual.*" : "a vision-only state dict");
    return CLIP_OK;
  }
  clip_status s = derive_text_from_shapes(L, t);
  if (s != CLIP_OK) return s;
  /* Defaults of OpenAI's checkpoints, the ones that ship without a config file. */
  t->heads = t->width / 64 > 0 ? t->width / 64 : 1;
  t->quick_gelu = 1;
  t->ln_eps = 1e-5f;
  if (fc->path && (s = apply_text_config(L, fc, t)) != CLIP_OK) return s;
  if (t->heads <= 0 || t->width % t->heads != 0)
    return fail(L, CLIP_ERR_BAD_WEIGHTS, "text width %d is not divisible by %d heads%s%s%s",
                t->width, t->heads, fc->path ? " (from " : "", fc->path ? fc->path : "",
                fc->path ? ")" : "");
  if (t->embed_dim != vision->embed_dim) {
    char name[NAME_LEN];
    text_name(L, tproj_name_openai, tproj_name_hf, name);
    return fail(L, CLIP_ERR_BAD_WEIGHTS,
                "tensor %s projects the text tower to %d dimensions, the vision tower to %d; "
                "CLIP's two towers share one embedding space", name, t->embed_dim,
                vision->embed_dim);
  }
  *has_text = 1;
  return CLIP_OK;
}

/* ---- conversion ---- */

static void convert(const clip_st_tensor *t, float *dst) {
  const unsigned char *src = t->data;
  const size_t n = (size_t)t->numel;
  switch (t->dtype) {
  case CLIP_ST_F32:
    memcpy(dst, src, n * sizeof(float)); /* safetensors is little-endian, like our hosts */
    break;
  case CLIP_ST_F16:
    for (size_t i = 0; i < n; i++) {
      uint16_t h = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
      dst[i] = clip_half_to_float(h);
    }
    break;
  case CLIP_ST_BF16:
    for (size_t i = 0; i < n; i++) {
      uint16_t h = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
      dst[i] = clip_bf16_to_float(h);
    }
    break;
  case CLIP_ST_OTHER:
    break; /* refused by need() */
  }
}

/* src [rows, cols] -> dst [cols, rows] */
static void convert_transposed(const clip_st_tensor *t, float *dst, float *scratch) {
  const size_t rows = (size_t)t->shape[0], cols = (size_t)t->shape[1];
  convert(t, scratch);
  for (size_t r = 0; r < rows; r++)
    for (size_t k = 0; k < cols; k++) dst[k * rows + r] = scratch[r * cols + k];
}

/* walk() runs twice over the same sequence of tensors: first with base == NULL to check every
   tensor and size the arena (nothing allocated for a bad file), then to convert. */
typedef struct walker {
  loader *L;
  float *base;      /* NULL in the checking pass */
  size_t off;       /* floats used so far */
  clip_status status;
} walker;

static float *reserve(walker *wk, size_t n) {
  float *p = wk->base ? wk->base + wk->off : NULL;
  wk->off += (n + ARENA_ALIGN_FLOATS - 1) / ARENA_ALIGN_FLOATS * ARENA_ALIGN_FLOATS;
  return p;
}

/* Finds `name`, checks its dtype and that its shape is exactly want[0..ndim), and in the
   converting pass writes it to dst (transposed when asked). */
static int take(walker *wk, const char *name, int ndim, const int64_t *want, float *dst,
                int transpose) {
  if (wk->status != CLIP_OK) return 0;
  const clip_st_tensor *t = need(wk->L, name, &wk->status);
  if (!t) return 0;
  int ok = t->ndim == ndim;
  for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == want[i];
  if (!ok) {
    char have[160], exp[160];
    shape_str(t, have, sizeof have);
    clip_st_shape_string(want, ndim, exp, sizeof exp);
    wk->status = fail(wk->L, CLIP_ERR_BAD_WEIGHTS, "tensor %s has shape %s, want %s", name, have,
                      exp);
    return 0;
  }
  if (!dst) return 1;
  if (transpose) {
    float *scratch = (float *)malloc((size_t)t->numel * sizeof(float));
    if (!scratch) {
      wk->status = fail(wk->L, CLIP_ERR_OUT_OF_MEMORY, "out of memory transposing %s", name);
      return 0;
    }
    convert_transposed(t, dst, scratch);
    free(scratch);
  } else {
    convert(t, dst);
  }
  return 1;
}

static void take1(walker *wk, const char *name, int64_t d0, float *dst) {
  int64_t s[1] = {d0};
  take(wk, name, 1, s, dst, 0);
}

static void take2(walker *wk, const char *name, int64_t d0, int64_t d1, float *dst, int transpose) {
  int64_t s[2] = {d0, d1};
  take(wk, name, 2, s, dst, transpose);
}

/* One pre-LN residual block of either tower (text: 1 for the text tower), into lw (NULL in
   the checking pass). Both towers' blocks have the same tensors under the same suffixes. */
static void walk_block(walker *wk, int text, int l, int64_t W, int64_t M, clip_layer_weights *lw) {
  loader *L = wk->L;
  clip_layer_weights dummy;
  if (!lw) lw = &dummy;
  char name[NAME_LEN];
  float *p;
#define BLOCK1(field, n_openai, n_hf, d0)                                                       \
  do {                                                                                         \
    block_name(L, text, l, n_openai, n_hf, name);                                              \
    lw->field = p = reserve(wk, (size_t)(d0));                                                 \
    take1(wk, name, d0, p);                                                                    \
  } while (0)
#define BLOCK2(field, n_openai, n_hf, d0, d1)                                                   \
  do {                                                                                         \
    block_name(L, text, l, n_openai, n_hf, name);                                              \
    lw->field = p = reserve(wk, (size_t)((d0) * (d1)));                                        \
    take2(wk, name, d0, d1, p, 0);                                                             \
  } while (0)
  BLOCK1(ln1_w, "ln_1.weight", "layer_norm1.weight", W);
  BLOCK1(ln1_b, "ln_1.bias", "layer_norm1.bias", W);
  if (L->hf) {
    /* Separate q, k, v projections stack into the canonical (3W, W) qkv. */
    static const char *const qkv[3] = {"q_proj", "k_proj", "v_proj"};
    float *qw = reserve(wk, (size_t)(3 * W * W));
    float *qb = reserve(wk, (size_t)(3 * W));
    lw->qkv_w = qw;
    lw->qkv_b = qb;
    for (int k = 0; k < 3; k++) {
      char part[64];
      snprintf(part, sizeof part, "self_attn.%s.weight", qkv[k]);
      block_name(L, text, l, "", part, name);
      take2(wk, name, W, W, qw ? qw + k * W * W : NULL, 0);
      snprintf(part, sizeof part, "self_attn.%s.bias", qkv[k]);
      block_name(L, text, l, "", part, name);
      take1(wk, name, W, qb ? qb + k * W : NULL);
    }
  } else {
    BLOCK2(qkv_w, "attn.in_proj_weight", "", 3 * W, W);
    BLOCK1(qkv_b, "attn.in_proj_bias", "", 3 * W);
  }
  BLOCK2(out_w, "attn.out_proj.weight", "self_attn.out_proj.weight", W, W);
  BLOCK1(out_b, "attn.out_proj.bias", "self_attn.out_proj.bias", W);
  BLOCK1(ln2_w, "ln_2.weight", "layer_norm2.weight", W);
  BLOCK1(ln2_b, "ln_2.bias", "layer_norm2.bias", W);
  BLOCK2(fc1_w, "mlp.c_fc.weight", "mlp.fc1.weight", M, W);
  BLOCK1(fc1_b, "mlp.c_fc.bias", "mlp.fc1.bias", M);
  BLOCK2(fc2_w, "mlp.c_proj.weight", "mlp.fc2.weight", W, M);
  BLOCK1(fc2_b, "mlp.c_proj.bias", "mlp.fc2.bias", W);
#undef BLOCK1
#undef BLOCK2
}

/* The text tower's tensors, after the vision tower's in the same arena (tw NULL in the
   checking pass). */
static void walk_text(walker *wk, const clip_text_config *t, clip_text_weights *tw) {
  loader *L = wk->L;
  clip_text_weights dummy;
  if (!tw) {
    memset(&dummy, 0, sizeof dummy);
    tw = &dummy;
  }
  const int64_t W = t->width, M = t->mlp_width, E = t->embed_dim, V = t->vocab_size;
  const int64_t C = t->context_length;
  char name[NAME_LEN];
  float *p;
  text_name(L, tok_name_openai, tok_name_hf, name);
  tw->token_emb = p = reserve(wk, (size_t)(V * W));
  take2(wk, name, V, W, p, 0);
  text_name(L, tpos_name_openai, tpos_name_hf, name);
  tw->pos_emb = p = reserve(wk, (size_t)(C * W));
  take2(wk, name, C, W, p, 0);
  for (int l = 0; l < t->layers && wk->status == CLIP_OK; l++)
    walk_block(wk, 1, l, W, M, tw->layer ? &tw->layer[l] : NULL);
  text_name(L, "ln_final.weight", "text_model.final_layer_norm.weight", name);
  tw->ln_final_w = p = reserve(wk, (size_t)W);
  take1(wk, name, W, p);
  text_name(L, "ln_final.bias", "text_model.final_layer_norm.bias", name);
  tw->ln_final_b = p = reserve(wk, (size_t)W);
  take1(wk, name, W, p);
  text_name(L, tproj_name_openai, tproj_name_hf, name);
  tw->proj = p = reserve(wk, (size_t)(E * W));
  if (L->hf)
    take2(wk, name, E, W, p, 0);
  else
    take2(wk, name, W, E, p, 1); /* x @ text_projection becomes proj^T x: store (E, W) */
}

/* Every tensor of the text tower t: checked (base NULL; tw may be NULL then) or converted
   into base. */
static clip_status walk_text_tower(loader *L, const clip_text_config *t, clip_text_weights *tw,
                                   float *base, size_t *floats_used) {
  walker wk = {L, base, 0, CLIP_OK};
  walk_text(&wk, t, base ? tw : NULL);
  *floats_used = wk.off;
  return wk.status;
}

/* Every tensor of the vision tower: checked (base NULL) or converted into base. */
static clip_status walk(loader *L, const clip_config *c, clip_weights *w, float *base,
                        size_t *floats_used) {
  walker wk = {L, base, 0, CLIP_OK};
  const int64_t W = c->width, M = c->mlp_width, E = c->embed_dim, P = c->patch_size;
  const int64_t T = c->tokens;
  char name[NAME_LEN];
  float *p;

  int64_t conv_shape[4] = {W, 3, P, P};
  top_name(L, conv_name_openai, conv_name_hf, name);
  p = reserve(&wk, (size_t)(W * 3 * P * P));
  take(&wk, name, 4, conv_shape, p, 0);
  w->patch_w = p;

  top_name(L, "class_embedding", "vision_model.embeddings.class_embedding", name);
  w->class_emb = p = reserve(&wk, (size_t)W);
  take1(&wk, name, W, p);
  top_name(L, pos_name_openai, pos_name_hf, name);
  w->pos_emb = p = reserve(&wk, (size_t)(T * W));
  take2(&wk, name, T, W, p, 0);
  top_name(L, "ln_pre.weight", "vision_model.pre_layrnorm.weight", name);
  w->ln_pre_w = p = reserve(&wk, (size_t)W);
  take1(&wk, name, W, p);
  top_name(L, "ln_pre.bias", "vision_model.pre_layrnorm.bias", name);
  w->ln_pre_b = p = reserve(&wk, (size_t)W);
  take1(&wk, name, W, p);

  for (int l = 0; l < c->layers && wk.status == CLIP_OK; l++)
    walk_block(&wk, 0, l, W, M, base ? &w->layer[l] : NULL);

  top_name(L, "ln_post.weight", "vision_model.post_layernorm.weight", name);
  w->ln_post_w = p = reserve(&wk, (size_t)W);
  take1(&wk, name, W, p);
  top_name(L, "ln_post.bias", "vision_model.post_layernorm.bias", name);
  w->ln_post_b = p = reserve(&wk, (size_t)W);
  take1(&wk, name, W, p);
  top_name(L, proj_name_openai, proj_name_hf, name);
  w->proj = p = reserve(&wk, (size_t)(E * W));
  if (L->hf)
    take2(&wk, name, E, W, p, 0);
  else
    take2(&wk, name, W, E, p, 1); /* OpenAI's x @ proj becomes proj^T x: store (E, W) */

  /* Tensors CLIP does not have: refusing them beats silently computing something else. */
  if (wk.status == CLIP_OK) {
    top_name(L, "conv1.bias", "vision_model.embeddings.patch_embedding.bias", name);
    const char *extra = clip_st_find(&L->st, name) ? name : NULL;
    if (!extra && L->hf && clip_st_find(&L->st, "visual_projection.bias"))
      extra = "visual_projection.bias";
    if (extra)
      wk.status = fail(L, CLIP_ERR_UNSUPPORTED,
                       "tensor %s is present, but a CLIP vision tower has no such bias", extra);
  }
  *floats_used = wk.off;
  return wk.status;
}

/* ---- locating the files ---- */

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

static char *join_path(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = (char *)malloc(n);
  if (p) snprintf(p, n, "%s/%s", dir, name);
  return p;
}

/* Resolves `path` to the .safetensors file (malloc'd in *file) and its directory. */
static clip_status locate(loader *L, const char *path, char **file, char **dir) {
  *file = *dir = NULL;
  struct stat st;
  if (stat(path, &st) != 0)
    return fail(L, CLIP_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  if (!S_ISDIR(st.st_mode)) {
    *file = strdup(path);
    const char *slash = strrchr(path, '/');
    if (!slash)
      *dir = strdup(".");
    else if (slash == path)
      *dir = strdup("/");
    else
      *dir = strndup(path, (size_t)(slash - path));
    if (!*file || !*dir) goto nomem;
    return CLIP_OK;
  }
  *dir = strdup(path);
  if (!*dir) goto nomem;
  static const char *const preferred[] = {"model.safetensors", "open_clip_model.safetensors"};
  for (int k = 0; k < 2; k++) {
    char *p = join_path(path, preferred[k]);
    if (!p) goto nomem;
    if (file_exists(p)) {
      *file = p;
      return CLIP_OK;
    }
    free(p);
  }
  DIR *d = opendir(path);
  if (!d) {
    clip_status s = fail(L, CLIP_ERR_IO, "cannot list directory %s: %s", path, strerror(errno));
    free(*dir);
    *dir = NULL;
    return s;
  }
  int found = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (!ends_with(de->d_name, ".safetensors")) continue;
    char *p = join_path(path, de->d_name);
    if (!p) {
      closedir(d);
      goto nomem;
    }
    if (!file_exists(p)) {
      free(p);
      continue;
    }
    found++;
    if (!*file)
      *file = p;
    else
      free(p);
  }
  closedir(d);
  if (found == 1) return CLIP_OK;
  free(*file);
  free(*dir);
  *file = *dir = NULL;
  if (found == 0)
    return fail(L, CLIP_ERR_IO,
                "no .safetensors file in directory %s (looked for model.safetensors, "
                "open_clip_model.safetensors or a single *.safetensors)",
                path);
  return fail(L, CLIP_ERR_IO,
              "directory %s holds %d .safetensors files and no model.safetensors or "
              "open_clip_model.safetensors; pass the path of the one to load",
              path, found);
nomem:
  free(*file);
  free(*dir);
  *file = *dir = NULL;
  return fail(L, CLIP_ERR_OUT_OF_MEMORY, "out of memory");
}

/* ---- entry points ---- */

/* What load() converts after checking every tensor of both towers. */
enum { LOAD_CONFIG, LOAD_VISION, LOAD_TEXT };

/* The fp32 arena: nlayers block tables, then floats floats, 64-byte aligned and zeroed. */
static clip_status alloc_arena(loader *L, int nlayers, size_t floats, void **arena,
                               size_t *layer_bytes, size_t *bytes) {
  *layer_bytes = (size_t)nlayers * sizeof(clip_layer_weights);
  *layer_bytes = (*layer_bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
  if (floats > (SIZE_MAX - *layer_bytes) / sizeof(float) - ARENA_ALIGN)
    return fail(L, CLIP_ERR_OUT_OF_MEMORY, "the model needs more memory than can be addressed");
  *bytes = *layer_bytes + floats * sizeof(float);
  *bytes = (*bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN; /* aligned_alloc wants this */
  *arena = aligned_alloc(ARENA_ALIGN, *bytes);
  if (!*arena)
    return fail(L, CLIP_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes for the fp32 weights",
                *bytes);
  memset(*arena, 0, *bytes);
  return CLIP_OK;
}

static void file_id_of(const struct stat *st, clip_file_id *id) {
  id->dev = (int64_t)st->st_dev;
  id->ino = (int64_t)st->st_ino;
  id->size = (int64_t)st->st_size;
  id->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
  id->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
}

/* The one loader behind clip_weights_load, clip_weights_load_text and the config readers:
   locates the files, derives and checks both towers' configs, and runs the checking pass over
   every tensor. LOAD_CONFIG stops there (nothing allocated beyond the header index, no tensor
   data read) and fills w->cfg, w->naming, w->has_text, w->text.cfg and w->text_absent;
   LOAD_VISION also converts the vision tower into w->arena and records the file in
   w->source; LOAD_TEXT converts the text tower (only) into w->text_arena. */
static clip_status load(const char *path, clip_weights *w, int what, char *err,
                        size_t err_len) {
  memset(w, 0, sizeof *w);
  loader L;
  memset(&L, 0, sizeof L);
  L.err = err;
  L.err_len = err_len;
  if (!path || !path[0]) return fail(&L, CLIP_ERR_INVALID_ARGUMENT, "the weights path is empty");

  char *file = NULL, *dir = NULL, *config_path = NULL;
  void *arena = NULL;
  clip_status s = locate(&L, path, &file, &dir);
  if (s != CLIP_OK) return s;
  L.file = file;

  char st_err[CLIP_ERR_LEN];
  st_err[0] = 0;
  s = clip_st_open(file, &L.st, st_err, sizeof st_err);
  if (s != CLIP_OK) {
    fail(&L, s, "%s", st_err);
    goto out;
  }
  if ((s = detect_naming(&L)) != CLIP_OK) goto out;

  clip_config c;
  memset(&c, 0, sizeof c);
  if ((s = derive_from_shapes(&L, &c)) != CLIP_OK) goto out;
  /* Defaults of OpenAI's checkpoints, the ones that ship without a config file. */
  c.heads = c.width / 64 > 0 ? c.width / 64 : 1;
  c.quick_gelu = 1;
  c.ln_eps = 1e-5f;

  size_t cp_len = strlen(dir) + 32;
  config_path = (char *)malloc(cp_len);
  if (!config_path) {
    s = fail(&L, CLIP_ERR_OUT_OF_MEMORY, "out of memory");
    goto out;
  }
  file_config fc;
  if ((s = load_config_file(&L, dir, config_path, cp_len, &fc)) != CLIP_OK) goto out;
  if (fc.path && (s = apply_config_file(&L, &fc, &c)) != CLIP_OK) goto out;
  if (c.heads <= 0 || c.width % c.heads != 0) {
    if (fc.path)
      s = fail(&L, CLIP_ERR_BAD_WEIGHTS, "width %d is not divisible by %d heads (from %s)",
               c.width, c.heads, fc.path);
    else
      s = fail(&L, CLIP_ERR_BAD_WEIGHTS, "width %d is not divisible by %d heads", c.width,
               c.heads);
    goto out;
  }

  clip_text_config tc;
  int has_text = 0;
  if ((s = text_config(&L, &fc, &c, &tc, &has_text, w->text_absent, sizeof w->text_absent)) !=
      CLIP_OK)
    goto out;

  /* Checking pass: every tensor present, convertible and of the right shape. */
  size_t vfloats = 0, tfloats = 0;
  clip_weights probe;
  memset(&probe, 0, sizeof probe);
  if ((s = walk(&L, &c, &probe, NULL, &vfloats)) != CLIP_OK) goto out;
  if (has_text && (s = walk_text_tower(&L, &tc, NULL, NULL, &tfloats)) != CLIP_OK) goto out;
  w->cfg = c;
  snprintf(w->naming, sizeof w->naming, "%s", L.hf ? "hf" : "openai");
  w->has_text = has_text;
  if (has_text) w->text.cfg = tc;
  if (what == LOAD_CONFIG) goto out;

  size_t layer_bytes = 0, bytes = 0, used = 0;
  if (what == LOAD_VISION) {
    struct stat fst;
    if (stat(file, &fst) != 0) {
      s = fail(&L, CLIP_ERR_IO, "cannot stat %s: %s", file, strerror(errno));
      goto out;
    }
    file_id_of(&fst, &w->source_id);
    if (!(w->source = strdup(file))) {
      s = fail(&L, CLIP_ERR_OUT_OF_MEMORY, "out of memory");
      goto out;
    }
    if ((s = alloc_arena(&L, c.layers, vfloats, &arena, &layer_bytes, &bytes)) != CLIP_OK) goto out;
    w->layer = (clip_layer_weights *)arena;
    s = walk(&L, &c, w, (float *)((char *)arena + layer_bytes), &used);
    if (s != CLIP_OK) goto out; /* cannot happen after the checking pass, but stay safe */
    w->arena = arena;
    w->arena_bytes = bytes;
  } else {
    if (!has_text) {
      s = fail(&L, CLIP_ERR_UNSUPPORTED, "%s", w->text_absent);
      goto out;
    }
    if ((s = alloc_arena(&L, tc.layers, tfloats, &arena, &layer_bytes, &bytes)) != CLIP_OK) goto out;
    w->text.layer = (clip_layer_weights *)arena;
    s = walk_text_tower(&L, &tc, &w->text, (float *)((char *)arena + layer_bytes), &used);
    if (s != CLIP_OK) goto out;
    w->text_arena = arena;
    w->text_arena_bytes = bytes;
  }
  arena = NULL;

out:
  clip_st_close(&L.st); /* the arena holds everything the engine keeps */
  free(config_path);
  free(file);
  free(dir);
  if (s != CLIP_OK) {
    free(arena);
    free(w->source);
    memset(w, 0, sizeof *w);
  }
  return s;
}

clip_status clip_weights_load(const char *path, clip_weights *w, char *err, size_t err_len) {
  if (err && err_len) err[0] = 0;
  if (!w) {
    if (err && err_len) snprintf(err, err_len, "weights: clip_weights_load: w is NULL");
    return CLIP_ERR_INVALID_ARGUMENT;
  }
  return load(path, w, LOAD_VISION, err, err_len);
}

clip_status clip_weights_load_text(clip_weights *w, char *err, size_t err_len) {
  if (err && err_len) err[0] = 0;
  if (!w || !w->source) {
    if (err && err_len) snprintf(err, err_len, "weights: clip_weights_load_text: no loaded weights");
    return CLIP_ERR_INVALID_ARGUMENT;
  }
  if (!w->has_text) {
    if (err && err_len) snprintf(err, err_len, "%s", w->text_absent);
    return CLIP_ERR_UNSUPPORTED;
  }
  if (w->text_arena) return CLIP_OK;
  /* The file must still be the one the engine was made from: the text tower is read from it
     now, and must belong to the vision tower already loaded. */
  struct stat fst;
  clip_file_id now;
  memset(&now, 0, sizeof now);
  if (stat(w->source, &fst) == 0) file_id_of(&fst, &now);
  if (memcmp(&now, &w->source_id, sizeof now) != 0) {
    if (err && err_len)
      snprintf(err, err_len,
               "weights: %s changed (or went away) since the engine was created, so its text "
               "tower cannot be read to match the vision tower; create the engine again",
               w->source);
    return CLIP_ERR_IO;
  }
  clip_weights t;
  clip_status s = load(w->source, &t, LOAD_TEXT, err, err_len);
  if (s != CLIP_OK) return s;
  if (memcmp(&t.cfg, &w->cfg, sizeof t.cfg) != 0 ||
      memcmp(&t.text.cfg, &w->text.cfg, sizeof t.text.cfg) != 0) {
    clip_weights_free(&t);
    if (err && err_len)
      snprintf(err, err_len,
               "weights: the config of %s changed since the engine was created; create the "
               "engine again", w->source);
    return CLIP_ERR_IO;
  }
  w->text = t.text;
  w->text_arena = t.text_arena;
  w->text_arena_bytes = t.text_arena_bytes;
  t.text_arena = NULL;
  clip_weights_free(&t);
  return CLIP_OK;
}

clip_status clip_weights_read_text_config(const char *path, clip_text_config *cfg, int *has_text,
                                          char *absent, size_t absent_len, char *err,
                                          size_t err_len) {
  if (err && err_len) err[0] = 0;
  if (absent && absent_len) absent[0] = 0;
  if (!cfg || !has_text) {
    if (err && err_len) snprintf(err, err_len, "weights: clip_weights_read_text_config: NULL output");
    return CLIP_ERR_INVALID_ARGUMENT;
  }
  clip_weights w;
  clip_status s = load(path, &w, LOAD_CONFIG, err, err_len);
  *cfg = w.text.cfg; /* zeroed on failure or without a text tower */
  *has_text = w.has_text;
  if (absent && absent_len) snprintf(absent, absent_len, "%s", w.text_absent);
  return s;
}

clip_status clip_weights_read_config(const char *path, clip_config *cfg, char *err,
                                     size_t err_len) {
  if (err && err_len) err[0] = 0;
  if (!cfg) {
    if (err && err_len) snprintf(err, err_len, "weights: clip_weights_read_config: cfg is NULL");
    return CLIP_ERR_INVALID_ARGUMENT;
  }
  clip_weights w;
  clip_status s = load(path, &w, LOAD_CONFIG, err, err_len);
  *cfg = w.cfg; /* zeroed on failure */
  return s;
}

void clip_weights_free(clip_weights *w) {
  if (!w) return;
  free(w->arena);
  free(w->text_arena);
  free(w->source);
  memset(w, 0, sizeof *w);
}
