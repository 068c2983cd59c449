/* jpeg.c: the CPU JPEG decoder of clip_engine_embed_encoded, a C twin of the Go decoder
   (internal/pipeline/decode: jpeg.go, exif.go, decode.go): the same TurboJPEG calls with the
   same flags (libjpeg's defaults, i.e. accurate integer DCT and fancy upsampling, plus the
   500-scan limit), the same handle resets, the same mapping of libjpeg's errors and warnings
   to corrupt / truncated / accepted, CMYK and YCCK converted to RGB as Pillow converts
   Adobe-inverted CMYK, the same EXIF orientation reading and transposes, the same pixel
   limit. Keep the two in step: cgo/engine's tests compare them on every fixture. */
#include "jpeg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef CLIP_HAVE_TURBOJPEG
#include <turbojpeg.h>
#endif

int clip_jpeg_sniff(const uint8_t *data, size_t size) {
  return size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
}

int clip_jpeg_has_eoi(const uint8_t *data, size_t size) {
  const size_t from = size > 32 ? size - 32 : 0;
  for (size_t i = from; i + 1 < size; i++)
    if (data[i] == 0xFF && data[i + 1] == 0xD9) return 1;
  return 0;
}

static int has_prefix(const uint8_t *d, size_t n, const char *p, size_t pn) {
  return n >= pn && memcmp(d, p, pn) == 0;
}

clip_status clip_jpeg_not_jpeg(const uint8_t *data, size_t size, char *msg, size_t msg_len) {
  const char *what = NULL;
  if (size == 0) what = "empty";
  else if (has_prefix(data, size, "\x89PNG\r\n\x1a\n", 8)) what = "png";
  else if (has_prefix(data, size, "GIF87a", 6) || has_prefix(data, size, "GIF89a", 6)) what = "gif";
  else if (size >= 12 && memcmp(data, "RIFF", 4) == 0 && memcmp(data + 8, "WEBP", 4) == 0) what = "webp";
  else if (has_prefix(data, size, "BM", 2) && size >= 26) what = "bmp";
  if (what) {
    snprintf(msg, msg_len, "not a jpeg (%s)", what);
  } else {
    char hex[3 * 8 + 1] = {0};
    const size_t k = size < 8 ? size : 8;
    for (size_t i = 0, at = 0; i < k; i++) at += (size_t)snprintf(hex + at, sizeof hex - at, "%s%02x", i ? " " : "", data[i]);
    snprintf(msg, msg_len, "not a jpeg (starts with %s)", hex);
  }
  return CLIP_ERR_UNSUPPORTED;
}

int64_t clip_decode_pixel_limit(const clip_decode_options *o) {
  if (!o || o->max_pixels == 0) return CLIP_DEFAULT_MAX_PIXELS;
  return o->max_pixels < 0 ? -1 : o->max_pixels;
}

/* ---- EXIF orientation (exif.go) ---- */

static uint32_t rd16(const uint8_t *p, int le) {
  return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 : (uint32_t)p[0] << 8 | (uint32_t)p[1];
}
static uint32_t rd32(const uint8_t *p, int le) {
  return le ? rd16(p, 1) | rd16(p + 2, 1) << 16 : rd16(p, 0) << 16 | rd16(p + 2, 0);
}

/* Tag 0x0112 of IFD0 of a TIFF header. */
static int tiff_orientation(const uint8_t *t, size_t n) {
  if (n < 8) return 0;
  int le;
  if (t[0] == 'I' && t[1] == 'I') le = 1;
  else if (t[0] == 'M' && t[1] == 'M') le = 0;
  else return 0;
  const uint64_t ifd = rd32(t + 4, le);
  if (ifd < 8 || ifd + 2 > n) return 0;
  const uint32_t count = rd16(t + ifd, le);
  for (uint32_t i = 0; i < count; i++) {
    const uint64_t e = ifd + 2 + (uint64_t)i * 12;
    if (e + 12 > n) return 0;
    if (rd16(t + e, le) == 0x0112) {
      const uint32_t typ = rd16(t + e + 2, le);
      uint32_t v;
      if (typ == 3) v = rd16(t + e + 8, le);       /* SHORT */
      else if (typ == 4) v = rd32(t + e + 8, le);  /* LONG */
      else return 0;
      return v >= 1 && v <= 8 ? (int)v : 0;
    }
  }
  return 0;
}

int clip_jpeg_orientation(const uint8_t *d, size_t n) {
  size_t pos = 2;
  while (pos + 4 <= n) {
    if (d[pos] != 0xFF) return 0;
    const uint8_t marker = d[pos + 1];
    if (marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01 || marker == 0xFF) {
      pos++;
      if (marker != 0xFF) pos++;
      continue;
    }
    if (marker == 0xDA || marker == 0xD9) return 0; /* start of scan: no EXIF before it */
    const size_t len = rd16(d + pos + 2, 0);
    if (len < 2 || pos + 2 + len > n) return 0;
    const uint8_t *seg = d + pos + 4;
    const size_t seg_len = len - 2;
    if (marker == 0xE1 && seg_len >= 6 && memcmp(seg, "Exif\0\0", 6) == 0)
      return tiff_orientation(seg + 6, seg_len - 6);
    pos += 2 + len;
  }
  return 0;
}

void clip_orient_rgb(const uint8_t *src, int w, int h, int o, uint8_t *dst) {
  const int dw = o >= 5 ? h : w;
  for (int y = 0; y < h; y++) {
    for (int x = 0; x < w; x++) {
      int dx, dy;
      switch (o) {
      case 2: dx = w - 1 - x; dy = y; break;
      case 3: dx = w - 1 - x; dy = h - 1 - y; break;
      case 4: dx = x; dy = h - 1 - y; break;
      case 5: dx = y; dy = x; break;
      case 6: dx = h - 1 - y; dy = x; break;
      case 7: dx = h - 1 - y; dy = w - 1 - x; break;
      case 8: dx = y; dy = w - 1 - x; break;
      default: dx = x; dy = y; break;
      }
      const uint8_t *s = src + ((size_t)y * w + x) * 3;
      uint8_t *t = dst + ((size_t)dy * dw + dx) * 3;
      t[0] = s[0];
      t[1] = s[1];
      t[2] = s[2];
    }
  }
}

#ifdef CLIP_HAVE_TURBOJPEG

/* ---- the decoder (jpeg.go, internal/cgo/turbojpeg) ---- */

struct clip_jpeg_decoder {
  tjhandle h;
};

clip_jpeg_decoder *clip_jpeg_decoder_new(void) {
  clip_jpeg_decoder *d = (clip_jpeg_decoder *)calloc(1, sizeof *d);
  if (!d) return NULL;
  d->h = tjInitDecompress();
  if (!d->h) {
    free(d);
    return NULL;
  }
  return d;
}

void clip_jpeg_decoder_free(clip_jpeg_decoder *d) {
  if (!d) return;
  if (d->h) tjDestroy(d->h);
  free(d);
}

/* A fresh handle after a failure: libjpeg-turbo 2.1's tjDecompressHeader3 returns from an
   error without aborting the decompressor, and the next call on that handle would resume the
   old stream's marker parsing (the Go wrapper's reset, for the same reason). */
static void reset(clip_jpeg_decoder *d) {
  if (d->h) tjDestroy(d->h);
  d->h = tjInitDecompress();
}

/* A failed or warned TurboJPEG call, as internal/cgo/turbojpeg's Error (libjpeg's messages
   are at most JMSG_LENGTH_MAX = 200 bytes). */
typedef struct tj_error {
  char msg[200];
  int warning;
} tj_error;

static void tj_error_of(clip_jpeg_decoder *d, tj_error *te) {
  snprintf(te->msg, sizeof te->msg, "%s", tjGetErrorStr2(d->h));
  te->warning = tjGetErrorCode(d->h) == TJERR_WARNING;
}


/* jpegError: CLIP_OK for a warning Pillow would also accept (corrupt-but-complete data such
   as extraneous bytes before a marker); truncation is a failure, as in Pillow. libjpeg
   reports it as a "Premature end of JPEG file" warning, but only the first warning's text
   is kept, so a damaged file that also lacks its end-of-image marker counts as truncated. */
static clip_status jpeg_error(const tj_error *te, const uint8_t *data, size_t size, char *msg,
                              size_t msg_len) {
  if (strstr(te->msg, "Premature end of JPEG file") || (te->warning && !clip_jpeg_has_eoi(data, size))) {
    snprintf(msg, msg_len, "truncated jpeg");
    return CLIP_ERR_IMAGE_TRUNCATED;
  }
  if (te->warning) return CLIP_OK;
  if (te->msg[0]) snprintf(msg, msg_len, "corrupt jpeg: %s", te->msg);
  else snprintf(msg, msg_len, "corrupt jpeg");
  return CLIP_ERR_IMAGE_CORRUPT;
}

clip_status clip_jpeg_header(clip_jpeg_decoder *d, const uint8_t *data, size_t size,
                             const clip_decode_options *o, int *width, int *height,
                             int *colorspace, char *msg, size_t msg_len) {
  if (!clip_jpeg_sniff(data, size)) return clip_jpeg_not_jpeg(data, size, msg, msg_len);
  if (!d->h) {
    reset(d);
    if (!d->h) {
      snprintf(msg, msg_len, "out of memory (tjInitDecompress)");
      return CLIP_ERR_OUT_OF_MEMORY;
    }
  }
  int w = 0, h = 0, ss = 0, cs = 0;
  tj_error te = {{0}, 0};
  int failed = tjDecompressHeader3(d->h, data, (unsigned long)size, &w, &h, &ss, &cs) != 0;
  if (failed) {
    tj_error_of(d, &te);
    reset(d);
  } else if (w <= 0 || h <= 0) {
    /* A stream without a frame header (SOI, then the end of the data) "succeeds". */
    reset(d);
    failed = 1;
    snprintf(te.msg, sizeof te.msg, "no image in the data");
  }
  if (failed) {
    clip_status s = jpeg_error(&te, data, size, msg, msg_len);
    if (s != CLIP_OK) return s;
    /* A warning with its end marker present: the Go decoder words the header's error with
       the call's name (jpeg.go's fallback to err.Error()). */
    snprintf(msg, msg_len, "corrupt jpeg: tjDecompressHeader3: %s", te.msg);
    return CLIP_ERR_IMAGE_CORRUPT;
  }
  const int64_t limit = clip_decode_pixel_limit(o);
  if (limit > 0 && (int64_t)w * (int64_t)h > limit) {
    snprintf(msg, msg_len, "too many pixels (%dx%d)", w, h);
    return CLIP_ERR_IMAGE_TOO_LARGE;
  }
  *width = w;
  *height = h;
  *colorspace = cs;
  return CLIP_OK;
}

int clip_jpeg_is_ycc_or_gray(int colorspace) {
  return colorspace == TJCS_YCbCr || colorspace == TJCS_GRAY;
}

/* MULDIV255 and cmyk2rgb of Pillow's Convert.c, on Adobe-inverted samples (c = 255 - s). */
static inline int mul_div255(int a, int b) {
  const int t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}
static inline uint8_t clip8i(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

static void inverted_cmyk_to_rgb(uint8_t *dst, const uint8_t *src, size_t pixels) {
  for (size_t i = 0; i < pixels; i++) {
    const uint8_t *s = src + 4 * i;
    uint8_t *t = dst + 3 * i;
    const int nk = s[3];
    t[0] = clip8i(nk - mul_div255(255 - s[0], nk));
    t[1] = clip8i(nk - mul_div255(255 - s[1], nk));
    t[2] = clip8i(nk - mul_div255(255 - s[2], nk));
  }
}

clip_status clip_jpeg_decode(clip_jpeg_decoder *d, const uint8_t *data, size_t size,
                             const clip_decode_options *o, uint8_t **rgb, int *width,
                             int *height, char *msg, size_t msg_len) {
  *rgb = NULL;
  int w, h, cs;
  clip_status s = clip_jpeg_header(d, data, size, o, &w, &h, &cs, msg, msg_len);
  if (s != CLIP_OK) return s;
  const int cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
  const size_t pixels = (size_t)w * (size_t)h;
  /* Zeroed: when libjpeg fails fatally after a warning, TurboJPEG reports a warning (its
     error code keeps the earlier warning), the rows after the failure are never written, and
     the image is accepted as the Go decoder accepts it; zeros there, as in the Go decoder's
     freshly allocated buffers, keep the result deterministic. */
  uint8_t *out = (uint8_t *)calloc(pixels, 3);
  uint8_t *tmp = cmyk ? (uint8_t *)calloc(pixels, 4) : NULL;
  if (!out || (cmyk && !tmp)) {
    free(out);
    free(tmp);
    snprintf(msg, msg_len, "out of memory decoding a %dx%d jpeg", w, h);
    return CLIP_ERR_OUT_OF_MEMORY;
  }
  int r;
  if (!cmyk) {
    r = tjDecompress2(d->h, data, (unsigned long)size, out, w, w * 3, h, TJPF_RGB, TJFLAG_LIMITSCANS);
  } else {
    /* libjpeg cannot convert CMYK to RGB: decode the (YCCK ->) CMYK samples and convert them
       as Pillow does. */
    r = tjDecompress2(d->h, data, (unsigned long)size, tmp, w, w * 4, h, TJPF_CMYK, TJFLAG_LIMITSCANS);
  }
  tj_error te = {{0}, 0};
  if (r != 0) {
    tj_error_of(d, &te);
    if (!te.warning) reset(d);
  }
  if (cmyk && (r == 0 || te.warning)) inverted_cmyk_to_rgb(out, tmp, pixels);
  free(tmp);
  if (r != 0 && (s = jpeg_error(&te, data, size, msg, msg_len)) != CLIP_OK) {
    free(out);
    return s;
  }
  if (o && o->apply_exif_orientation) {
    const int orientation = clip_jpeg_orientation(data, size);
    if (orientation > 1) {
      uint8_t *rot = (uint8_t *)malloc(pixels * 3);
      if (!rot) {
        free(out);
        snprintf(msg, msg_len, "out of memory orienting a %dx%d jpeg", w, h);
        return CLIP_ERR_OUT_OF_MEMORY;
      }
      clip_orient_rgb(out, w, h, orientation, rot);
      free(out);
      out = rot;
      if (orientation >= 5) {
        const int t = w;
        w = h;
        h = t;
      }
    }
  }
  *rgb = out;
  *width = w;
  *height = h;
  if (msg_len) msg[0] = 0;
  return CLIP_OK;
}

#else /* !CLIP_HAVE_TURBOJPEG */

/* Built without libturbojpeg (e.g. a GPU machine without its -dev files): every JPEG the CPU
   decoder is asked for fails alone, saying why. */
struct clip_jpeg_decoder {
  int unused;
};

clip_jpeg_decoder *clip_jpeg_decoder_new(void) {
  return (clip_jpeg_decoder *)calloc(1, sizeof(clip_jpeg_decoder));
}
void clip_jpeg_decoder_free(clip_jpeg_decoder *d) { free(d); }

static const char no_turbojpeg[] =
    "this libclipengine was built without libturbojpeg: no CPU jpeg decoder (install "
    "libturbojpeg0-dev and rebuild)";

clip_status clip_jpeg_header(clip_jpeg_decoder *d, const uint8_t *data, size_t size,
                             const clip_decode_options *o, int *width, int *height,
                             int *colorspace, char *msg, size_t msg_len) {
  if (!clip_jpeg_sniff(data, size)) return clip_jpeg_not_jpeg(data, size, msg, msg_len);
  snprintf(msg, msg_len, "%s", no_turbojpeg);
  return CLIP_ERR_UNSUPPORTED;
}

clip_status clip_jpeg_decode(clip_jpeg_decoder *d, const uint8_t *data, size_t size,
                             const clip_decode_options *o, uint8_t **rgb, int *width,
                             int *height, char *msg, size_t msg_len) {
  *rgb = NULL;
  int w, h, cs;
  return clip_jpeg_header(d, data, size, o, &w, &h, &cs, msg, msg_len);
}

int clip_jpeg_is_ycc_or_gray(int colorspace) { return 0; }

#endif
