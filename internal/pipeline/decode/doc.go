// Package decode turns fetched image bytes (JPEG, PNG, GIF, WebP, BMP) into interleaved RGB8
// pixels the way Pillow's Image.open(f).convert('RGB') does, refusing decompression bombs and
// damaged files with a short reason.
package decode
