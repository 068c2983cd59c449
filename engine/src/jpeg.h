/* jpeg.h: the CPU JPEG decoder behind clip_engine_embed_encoded (jpeg.c): libjpeg-turbo's
   TurboJPEG API called exactly as the Go decoder (internal/pipeline/decode/jpeg.go) calls
   it, so both give the same pixels and the same failures. Private to the engine. */
#ifndef CLIP_JPEG_H
#define CLIP_JPEG_H

#include <stddef.h>
#include <stdint.h>

#include "clipengine.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CLIP_IMAGE_ERR_LEN 160 /* per-image reason texts (clip_engine_image_error) */
#define CLIP_DEFAULT_MAX_PIXELS 89478485LL /* Pillow's Image.MAX_IMAGE_PIXELS */

/* Whether the bytes start like a JPEG (FF D8 FF), as the Go decoder's sniffing decides. */
int clip_jpeg_sniff(const uint8_t *data, size_t size);

/* Whether an FF D9 (end of image) marker is within the last 32 bytes (some writers pad
   after it): without it a warned decode counts as truncated (jpeg.go's endsWithEOI). */
int clip_jpeg_has_eoi(const uint8_t *data, size_t size);

/* The per-image status and reason for data that is not a JPEG ("not a jpeg (png)"). */
clip_status clip_jpeg_not_jpeg(const uint8_t *data, size_t size, char *msg, size_t msg_len);

/* The EXIF orientation (1..8) of a JPEG, or 0 when it has none (internal/pipeline/decode's
   jpegOrientation). */
int clip_jpeg_orientation(const uint8_t *data, size_t size);

/* The pixel limit options ask for: max_pixels 0 -> the default, < 0 -> none (returns -1). */
int64_t clip_decode_pixel_limit(const clip_decode_options *o);

/* One decoder (a TurboJPEG handle); one thread at a time. NULL when out of memory. */
typedef struct clip_jpeg_decoder clip_jpeg_decoder;
clip_jpeg_decoder *clip_jpeg_decoder_new(void);
void clip_jpeg_decoder_free(clip_jpeg_decoder *d); /* NULL is fine */

/* The JPEG's size and colour space (TJCS_*) from its header, with the checks the full decode
   makes first (header errors, the pixel limit). On failure the per-image status and reason. */
clip_status clip_jpeg_header(clip_jpeg_decoder *d, const uint8_t *data, size_t size,
                             const clip_decode_options *o, int *width, int *height,
                             int *colorspace, char *msg, size_t msg_len);

/* Whether a colour space clip_jpeg_header reported is YCbCr or grayscale (what nvJPEG
   converts as libjpeg does; CMYK, YCCK and RGB JPEGs stay on the CPU decoder). */
int clip_jpeg_is_ycc_or_gray(int colorspace);

/* Decodes one JPEG to interleaved RGB8 (*rgb malloc'ed, width*3 bytes a row; the caller
   frees it), applying EXIF orientation when o asks. On failure *rgb is NULL and the status
   is per-image (CLIP_ERR_IMAGE_*, CLIP_ERR_UNSUPPORTED, CLIP_ERR_OUT_OF_MEMORY) with the
   reason in msg, worded as the Go decoder's error. */
clip_status clip_jpeg_decode(clip_jpeg_decoder *d, const uint8_t *data, size_t size,
                             const clip_decode_options *o, uint8_t **rgb, int *width,
                             int *height, char *msg, size_t msg_len);

/* Rotates/flips an interleaved RGB8 image (w x h, packed) for EXIF orientation o (2..8) into
   dst (h x w for o >= 5, else w x h), as Pillow's ImageOps.exif_transpose. */
void clip_orient_rgb(const uint8_t *src, int w, int h, int o, uint8_t *dst);

#ifdef __cplusplus
}
#endif
#endif /* CLIP_JPEG_H */
