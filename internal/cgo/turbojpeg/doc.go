// Package turbojpeg wraps the TurboJPEG 2.x decompression API of libjpeg-turbo (Debian 12's
// libturbojpeg0, 2.1.5): header reading, full and DCT-scaled decoding to packed pixels.
package turbojpeg
