/* weights_fixture.h: test helper that writes small CLIP vision towers (and text towers
   beside them) as .safetensors files, in either naming (OpenAI/open_clip `visual.*`, bare, or
   Hugging Face) and dtype (F32, F16, BF16), with values known in advance: canonical element i
   of canonical tensor `tag` is wf_value(tag, i). Tests edit the tensor list (drop, reshape,
   retype) before writing to make broken files. Header-only so any C test can include it. */
#ifndef CLIP_WEIGHTS_FIXTURE_H
#define CLIP_WEIGHTS_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
#define WF_FN static __attribute__((unused))
#else
#define WF_FN static
#endif

/* Canonical tensor tags: wf_value(tag, i) is the value of element i of the canonical array
   (the layout of clip_weights in internal.h). */
enum {
  WF_PATCH = 0, WF_CLS, WF_POS, WF_LN_PRE_W, WF_LN_PRE_B, WF_LN_POST_W, WF_LN_POST_B, WF_PROJ,
  WF_LAYER0 = 10, /* + 20*layer + one of the below */
  WF_LN1_W = 0, WF_LN1_B, WF_QKV_W, WF_QKV_B, WF_OUT_W, WF_OUT_B, WF_LN2_W, WF_LN2_B,
  WF_FC1_W, WF_FC1_B, WF_FC2_W, WF_FC2_B
};

/* The text tower's tags: its top-level tensors, then its blocks as the vision blocks. */
enum { WF_TEXT_TOK = 1000, WF_TEXT_POS, WF_TEXT_LNF_W, WF_TEXT_LNF_B, WF_TEXT_PROJ,
       WF_TEXT_LAYER0 = 1010 };

WF_FN int wf_layer_tag(int layer, int which) { return WF_LAYER0 + 20 * layer + which; }
WF_FN int wf_text_layer_tag(int layer, int which) { return WF_TEXT_LAYER0 + 20 * layer + which; }

/* Multiples of 1/16 in [-1.875, 1.875]: exact in F16 and BF16. LayerNorm gains sit around 1
   (multiples of 1/64 in [0.53, 1.47], still exact) so a gain read as a bias shows. */
WF_FN float wf_value(int tag, size_t i) {
  int r = (int)(((size_t)tag * 37u + i * 11u + (i / 7u) * 3u) % 61u) - 30;
  float v = (float)r / 16.0f;
  int gain = tag == WF_LN_PRE_W || tag == WF_LN_POST_W || tag == WF_TEXT_LNF_W ||
             (tag >= WF_LAYER0 && tag < WF_TEXT_TOK &&
              ((tag - WF_LAYER0) % 20 == WF_LN1_W || (tag - WF_LAYER0) % 20 == WF_LN2_W)) ||
             (tag >= WF_TEXT_LAYER0 && ((tag - WF_TEXT_LAYER0) % 20 == WF_LN1_W ||
                                        (tag - WF_TEXT_LAYER0) % 20 == WF_LN2_W));
  return gain ? 1.0f + v / 4.0f : v;
}

typedef struct wf_tensor {
  char name[160];     /* the tensor's name */
  char raw_key[200];  /* if set: written verbatim between the quotes instead of name */
  char dtype[16];
  int ndim;
  int64_t shape[8];
  unsigned char *data;
  size_t nbytes;
} wf_tensor;

typedef struct wf_file {
  wf_tensor *t;
  int n, cap;
} wf_file;

static const uint16_t wf_bad_half = 0xFFFF;

/* float -> F16 bits, only for values F16 holds exactly (all fixture values); else 0xFFFF. */
WF_FN uint16_t wf_float_to_half(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  uint32_t sign = (b >> 16) & 0x8000u;
  int exp = (int)((b >> 23) & 0xFF);
  uint32_t mant = b & 0x7FFFFFu;
  if (exp == 0 && mant == 0) return (uint16_t)sign;
  int he = exp - 127 + 15;
  if (he < 1 || he > 30 || (mant & 0x1FFFu)) return wf_bad_half;
  return (uint16_t)(sign | (uint32_t)he << 10 | mant >> 13);
}

WF_FN uint16_t wf_float_to_bf16(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  if (b & 0xFFFFu) return wf_bad_half;
  return (uint16_t)(b >> 16);
}

WF_FN wf_tensor *wf_add_raw(wf_file *f, const char *name, const char *dtype, int ndim,
                            const int64_t *shape, const void *bytes, size_t nbytes) {
  if (f->n == f->cap) {
    f->cap = f->cap ? 2 * f->cap : 64;
    f->t = (wf_tensor *)realloc(f->t, (size_t)f->cap * sizeof *f->t);
    if (!f->t) abort();
  }
  wf_tensor *t = &f->t[f->n++];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
  t->nbytes = nbytes;
  t->data = (unsigned char *)malloc(nbytes ? nbytes : 1);
  if (!t->data) abort();
  if (bytes)
    memcpy(t->data, bytes, nbytes);
  else
    memset(t->data, 0, nbytes);
  return t;
}

/* Adds a float tensor stored as dtype "F32", "F16" or "BF16" (little-endian). */
WF_FN wf_tensor *wf_add(wf_file *f, const char *name, const char *dtype, int ndim,
                        const int64_t *shape, const float *v) {
  size_t n = 1;
  for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
  int half = strcmp(dtype, "F32") != 0;
  size_t nbytes = n * (half ? 2 : 4);
  unsigned char *b = (unsigned char *)malloc(nbytes ? nbytes : 1);
  if (!b) abort();
  for (size_t i = 0; i < n; i++) {
    if (!half) {
      uint32_t u;
      memcpy(&u, &v[i], 4);
      for (int k = 0; k < 4; k++) b[4 * i + k] = (unsigned char)(u >> (8 * k));
    } else {
      uint16_t h = strcmp(dtype, "F16") == 0 ? wf_float_to_half(v[i]) : wf_float_to_bf16(v[i]);
      if (h == wf_bad_half) {
        fprintf(stderr, "weights_fixture: %g is not exact in %s\n", v[i], dtype);
        abort();
      }
      b[2 * i] = (unsigned char)(h & 0xFF);
      b[2 * i + 1] = (unsigned char)(h >> 8);
    }
  }
  wf_tensor *t = wf_add_raw(f, name, dtype, ndim, shape, b, nbytes);
  free(b);
  return t;
}

WF_FN wf_tensor *wf_find(wf_file *f, const char *name) {
  for (int i = 0; i < f->n; i++)
    if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
  return NULL;
}

/* Removes `name`; returns 1 if it was there. */
WF_FN int wf_remove(wf_file *f, const char *name) {
  wf_tensor *t = wf_find(f, name);
  if (!t) return 0;
  free(t->data);
  int i = (int)(t - f->t);
  memmove(&f->t[i], &f->t[i + 1], (size_t)(f->n - i - 1) * sizeof *f->t);
  f->n--;
  return 1;
}

/* Removes every tensor whose name starts with prefix; returns how many. */
WF_FN int wf_remove_prefix(wf_file *f, const char *prefix) {
  int removed = 0;
  for (int i = 0; i < f->n;) {
    if (strncmp(f->t[i].name, prefix, strlen(prefix)) == 0) {
      free(f->t[i].data);
      memmove(&f->t[i], &f->t[i + 1], (size_t)(f->n - i - 1) * sizeof *f->t);
      f->n--;
      removed++;
    } else {
      i++;
    }
  }
  return removed;
}

WF_FN void wf_free(wf_file *f) {
  for (int i = 0; i < f->n; i++) free(f->t[i].data);
  free(f->t);
  memset(f, 0, sizeof *f);
}

WF_FN void wf_put_u64(FILE *fp, uint64_t v) {
  for (int k = 0; k < 8; k++) fputc((int)((v >> (8 * k)) & 0xFF), fp);
}

/* Writes a valid safetensors file: tensors packed in list order, header padded with spaces
   to a multiple of 8 (as the reference writer does). Returns 0 on success. */
WF_FN int wf_write(const wf_file *f, const char *path) {
  size_t cap = 4096 + (size_t)f->n * 512, len = 0;
  char *h = (char *)malloc(cap);
  if (!h) return -1;
  len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
  uint64_t off = 0;
  for (int i = 0; i < f->n; i++) {
    const wf_tensor *t = &f->t[i];
    len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                            t->raw_key[0] ? t->raw_key : t->name, t->dtype);
    for (int d = 0; d < t->ndim; d++)
      len += (size_t)snprintf(h + len, cap - len, "%s%lld", d ? "," : "", (long long)t->shape[d]);
    len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%llu,%llu]}",
                            (unsigned long long)off, (unsigned long long)(off + t->nbytes));
    off += t->nbytes;
  }
  len += (size_t)snprintf(h + len, cap - len, "}");
  while (len % 8) h[len++] = ' ';
  FILE *fp = fopen(path, "wb");
  if (!fp) {
    free(h);
    return -1;
  }
  wf_put_u64(fp, len);
  fwrite(h, 1, len, fp);
  for (int i = 0; i < f->n; i++) fwrite(f->t[i].data, 1, f->t[i].nbytes, fp);
  free(h);
  return fclose(fp) == 0 ? 0 : -1;
}

/* ---- a whole tiny vision tower ---- */

typedef struct wf_spec {
  int width, layers, patch, grid, mlp, embed;
  int hf;             /* 1: Hugging Face names; 0: OpenAI names */
  const char *prefix; /* OpenAI names: "visual." or "" */
  const char *dtype;  /* "F32", "F16" or "BF16" for every vision tensor */
} wf_spec;

WF_FN wf_spec wf_tiny_spec(int hf, const char *dtype) {
  wf_spec s;
  s.width = 64;
  s.layers = 2;
  s.patch = 8;
  s.grid = 4; /* image 32 */
  s.mlp = 256;
  s.embed = 32;
  s.hf = hf;
  s.prefix = "visual.";
  s.dtype = dtype;
  return s;
}

/* Adds canonical tensor `tag` (n elements, from offset `first` of the canonical array) under
   `name` with the given file shape. */
WF_FN wf_tensor *wf_add_tag(wf_file *f, const wf_spec *s, const char *name, int ndim,
                             const int64_t *shape, int tag, size_t first) {
  size_t n = 1;
  for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
  float *v = (float *)malloc((n ? n : 1) * sizeof *v);
  if (!v) abort();
  for (size_t i = 0; i < n; i++) v[i] = wf_value(tag, first + i);
  wf_tensor *t = wf_add(f, name, s->dtype, ndim, shape, v);
  free(v);
  return t;
}

/* One pre-LN block (both towers name theirs alike below their prefix `b`), canonical tags
   from tag_of(layer, which). */
WF_FN void wf_add_block(wf_file *f, const wf_spec *s, const char *b, int l, int64_t W, int64_t M,
                        int (*tag_of)(int, int)) {
  char name[160];
#define WF_SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define WF_L(suffix, ndim, shape, which, first)                                                 \
  do {                                                                                         \
    snprintf(name, sizeof name, "%s%s", b, suffix);                                            \
    wf_add_tag(f, s, name, ndim, shape, tag_of(l, which), first);                              \
  } while (0)
  WF_L(s->hf ? "layer_norm1.weight" : "ln_1.weight", 1, WF_SHAPE(W), WF_LN1_W, 0);
  WF_L(s->hf ? "layer_norm1.bias" : "ln_1.bias", 1, WF_SHAPE(W), WF_LN1_B, 0);
  if (s->hf) {
    /* q, k, v are row blocks 0, 1, 2 of the canonical (3W, W) qkv. */
    static const char *const part[3] = {"q_proj", "k_proj", "v_proj"};
    for (int k = 0; k < 3; k++) {
      char sfx[64];
      snprintf(sfx, sizeof sfx, "self_attn.%s.weight", part[k]);
      WF_L(sfx, 2, WF_SHAPE(W, W), WF_QKV_W, (size_t)(k * W * W));
      snprintf(sfx, sizeof sfx, "self_attn.%s.bias", part[k]);
      WF_L(sfx, 1, WF_SHAPE(W), WF_QKV_B, (size_t)(k * W));
    }
  } else {
    WF_L("attn.in_proj_weight", 2, WF_SHAPE(3 * W, W), WF_QKV_W, 0);
    WF_L("attn.in_proj_bias", 1, WF_SHAPE(3 * W), WF_QKV_B, 0);
  }
  WF_L(s->hf ? "self_attn.out_proj.weight" : "attn.out_proj.weight", 2, WF_SHAPE(W, W), WF_OUT_W, 0);
  WF_L(s->hf ? "self_attn.out_proj.bias" : "attn.out_proj.bias", 1, WF_SHAPE(W), WF_OUT_B, 0);
  WF_L(s->hf ? "layer_norm2.weight" : "ln_2.weight", 1, WF_SHAPE(W), WF_LN2_W, 0);
  WF_L(s->hf ? "layer_norm2.bias" : "ln_2.bias", 1, WF_SHAPE(W), WF_LN2_B, 0);
  WF_L(s->hf ? "mlp.fc1.weight" : "mlp.c_fc.weight", 2, WF_SHAPE(M, W), WF_FC1_W, 0);
  WF_L(s->hf ? "mlp.fc1.bias" : "mlp.c_fc.bias", 1, WF_SHAPE(M), WF_FC1_B, 0);
  WF_L(s->hf ? "mlp.fc2.weight" : "mlp.c_proj.weight", 2, WF_SHAPE(W, M), WF_FC2_W, 0);
  WF_L(s->hf ? "mlp.fc2.bias" : "mlp.c_proj.bias", 1, WF_SHAPE(W), WF_FC2_B, 0);
#undef WF_L
#undef WF_SHAPE
}

/* A [rows, cols] file tensor whose element (r, c) is canonical element (c, r) of `tag`: how
   OpenAI stores its projections ([W, E] for the canonical (E, W)). */
WF_FN void wf_add_transposed(wf_file *f, const wf_spec *s, const char *name, int64_t rows,
                             int64_t cols, int tag) {
  float *v = (float *)malloc((size_t)(rows * cols) * sizeof *v);
  if (!v) abort();
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) v[r * cols + c] = wf_value(tag, (size_t)(c * rows + r));
  const int64_t shape[2] = {rows, cols};
  wf_add(f, name, s->dtype, 2, shape, v);
  free(v);
}

/* A text tower: context length, vocabulary, width, blocks, MLP width, embedding. */
typedef struct wf_text_spec {
  int ctx, vocab, width, layers, mlp, embed;
} wf_text_spec;

WF_FN wf_text_spec wf_tiny_text_spec(void) {
  wf_text_spec t = {8, 40, 64, 2, 128, 32}; /* embed = wf_tiny_spec's */
  return t;
}

WF_FN int wf_text_tag_of(int l, int which) { return wf_text_layer_tag(l, which); }

/* Adds every text tensor of t, named and stored as s says (s->hf, s->dtype); OpenAI's sit at
   the top level beside visual.*. */
WF_FN void wf_add_text(wf_file *f, const wf_spec *s, const wf_text_spec *t) {
  const int64_t W = t->width, M = t->mlp, E = t->embed, V = t->vocab, C = t->ctx;
  const int64_t tok_shape[2] = {V, W}, pos_shape[2] = {C, W}, w_shape[1] = {W};
  wf_add_tag(f, s, s->hf ? "text_model.embeddings.token_embedding.weight" : "token_embedding.weight",
             2, tok_shape, WF_TEXT_TOK, 0);
  wf_add_tag(f, s, s->hf ? "text_model.embeddings.position_embedding.weight" : "positional_embedding",
             2, pos_shape, WF_TEXT_POS, 0);
  for (int l = 0; l < t->layers; l++) {
    char b[96];
    snprintf(b, sizeof b, "%s%d.", s->hf ? "text_model.encoder.layers." : "transformer.resblocks.", l);
    wf_add_block(f, s, b, l, W, M, wf_text_tag_of);
  }
  wf_add_tag(f, s, s->hf ? "text_model.final_layer_norm.weight" : "ln_final.weight", 1, w_shape,
             WF_TEXT_LNF_W, 0);
  wf_add_tag(f, s, s->hf ? "text_model.final_layer_norm.bias" : "ln_final.bias", 1, w_shape,
             WF_TEXT_LNF_B, 0);
  if (s->hf) {
    const int64_t p_shape[2] = {E, W};
    wf_add_tag(f, s, "text_projection.weight", 2, p_shape, WF_TEXT_PROJ, 0);
  } else {
    wf_add_transposed(f, s, "text_projection", W, E, WF_TEXT_PROJ);
  }
}

/* Adds every vision tensor of the tower described by s. */
WF_FN void wf_add_model(wf_file *f, const wf_spec *s) {
  const int64_t W = s->width, P = s->patch, T = (int64_t)s->grid * s->grid + 1, M = s->mlp,
                E = s->embed;
  char name[160];
  const char *pre = s->prefix;
#define WF_SHAPE(...) ((const int64_t[]){__VA_ARGS__})
  if (s->hf) {
    wf_add_tag(f, s, "vision_model.embeddings.patch_embedding.weight", 4, WF_SHAPE(W, 3, P, P), WF_PATCH, 0);
    wf_add_tag(f, s, "vision_model.embeddings.class_embedding", 1, WF_SHAPE(W), WF_CLS, 0);
    wf_add_tag(f, s, "vision_model.embeddings.position_embedding.weight", 2, WF_SHAPE(T, W), WF_POS, 0);
    wf_add_tag(f, s, "vision_model.pre_layrnorm.weight", 1, WF_SHAPE(W), WF_LN_PRE_W, 0);
    wf_add_tag(f, s, "vision_model.pre_layrnorm.bias", 1, WF_SHAPE(W), WF_LN_PRE_B, 0);
  } else {
    snprintf(name, sizeof name, "%sconv1.weight", pre);
    wf_add_tag(f, s, name, 4, WF_SHAPE(W, 3, P, P), WF_PATCH, 0);
    snprintf(name, sizeof name, "%sclass_embedding", pre);
    wf_add_tag(f, s, name, 1, WF_SHAPE(W), WF_CLS, 0);
    snprintf(name, sizeof name, "%spositional_embedding", pre);
    wf_add_tag(f, s, name, 2, WF_SHAPE(T, W), WF_POS, 0);
    snprintf(name, sizeof name, "%sln_pre.weight", pre);
    wf_add_tag(f, s, name, 1, WF_SHAPE(W), WF_LN_PRE_W, 0);
    snprintf(name, sizeof name, "%sln_pre.bias", pre);
    wf_add_tag(f, s, name, 1, WF_SHAPE(W), WF_LN_PRE_B, 0);
  }
  for (int l = 0; l < s->layers; l++) {
    char b[96];
    if (s->hf)
      snprintf(b, sizeof b, "vision_model.encoder.layers.%d.", l);
    else
      snprintf(b, sizeof b, "%stransformer.resblocks.%d.", pre, l);
    wf_add_block(f, s, b, l, W, M, wf_layer_tag);
  }
  if (s->hf) {
    wf_add_tag(f, s, "vision_model.post_layernorm.weight", 1, WF_SHAPE(W), WF_LN_POST_W, 0);
    wf_add_tag(f, s, "vision_model.post_layernorm.bias", 1, WF_SHAPE(W), WF_LN_POST_B, 0);
    wf_add_tag(f, s, "visual_projection.weight", 2, WF_SHAPE(E, W), WF_PROJ, 0);
  } else {
    snprintf(name, sizeof name, "%sln_post.weight", pre);
    wf_add_tag(f, s, name, 1, WF_SHAPE(W), WF_LN_POST_W, 0);
    snprintf(name, sizeof name, "%sln_post.bias", pre);
    wf_add_tag(f, s, name, 1, WF_SHAPE(W), WF_LN_POST_B, 0);
    /* OpenAI stores proj as [W, E]: file element (w, e) is canonical element (e, w). */
    snprintf(name, sizeof name, "%sproj", pre);
    wf_add_transposed(f, s, name, W, E, WF_PROJ);
  }
#undef WF_SHAPE
}

#endif /* CLIP_WEIGHTS_FIXTURE_H */
