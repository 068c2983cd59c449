/* app.c: a program outside the project that uses the installed libclipengine through
   pkg-config, as other tools will: creates an engine on the weights given, embeds one
   synthetic image and prints the embedding's size and norm. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <clipengine.h>

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: app WEIGHTS\n");
    return 2;
  }
  printf("clipengine %s (API %d)\n", clip_version(), CLIP_API_VERSION);
  clip_engine_params p = clip_engine_default_params();
  p.weights_path = argv[1];
  p.backend = CLIP_BACKEND_CPU;
  p.threads = 1;
  char err[512];
  clip_engine *e = NULL;
  clip_status s = clip_engine_create(&p, &e, err, sizeof err);
  if (s != CLIP_OK) {
    fprintf(stderr, "create: %s: %s\n", clip_status_string(s), err);
    return 1;
  }
  clip_model_info info;
  clip_engine_info(e, &info);
  enum { W = 37, H = 23 };
  static uint8_t rgb[W * H * 3];
  for (int i = 0; i < W * H * 3; i++) rgb[i] = (uint8_t)(i * 7 + i / 5);
  clip_image im = {rgb, W, H, 0};
  float *out = malloc(sizeof(float) * info.embed_dim);
  s = clip_engine_embed_images(e, &im, 1, out);
  if (s != CLIP_OK) {
    fprintf(stderr, "embed: %s\n", clip_engine_last_error(e));
    return 1;
  }
  double norm = 0;
  for (int i = 0; i < info.embed_dim; i++) norm += (double)out[i] * out[i];
  printf("backend %s, embed_dim %d, norm %.6f\n", clip_engine_backend_name(e), info.embed_dim, sqrt(norm));
  free(out);
  clip_engine_destroy(e);
  return norm > 0 && isfinite(norm) ? 0 : 1;
}
