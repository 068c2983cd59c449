// footprint.go: the memory one decode takes, from the image's header alone, per format and
// bit depth: the output RGB8 buffer, and the decoder's intermediate image and scratch that are
// alive beside it while it runs (Go's PNG decoder gives a 16-bit RGBA image as NRGBA64, 8 B/px;
// a progressive JPEG keeps every DCT coefficient, 2 B per sample). The decode stage takes the
// whole footprint from its budget before decoding, so that what decoders hold at once stays
// within the memory plan.

package decode

import (
	"bytes"
	"encoding/binary"
	"image/gif"
	"image/png"

	"golang.org/x/image/bmp"
	"golang.org/x/image/webp"

	"github.com/clipd/clipd/internal/cgo/turbojpeg"
)

// Footprint is the memory one decode takes: Peak bytes while it runs, of which Kept (the
// output image's buffer, Image.Held) stay allocated after it.
type Footprint struct {
	Peak, Kept int64
}

// Footprint models what decoding data with d's options takes, reading only the headers. It
// fails as Decode would fail on them (not an image, a corrupt header, too many pixels), and
// then the body need not be decoded at all.
func (d *Decoder) Footprint(data []byte) (Footprint, error) {
	f := sniff(data)
	if f == "" {
		return Footprint{}, &Error{Kind: ErrNotImage, Detail: describeStart(data)}
	}
	if f == "jpeg" {
		return d.jpegFootprint(data)
	}
	w, h, perPixel, err := goFootprint(data, f)
	if err != nil {
		return Footprint{}, err
	}
	if err := d.opt.checkPixels(w, h); err != nil {
		return Footprint{}, withFormat(err, f)
	}
	kept := heldSize(w * h * 3)
	return Footprint{Peak: kept + int64(float64(w)*float64(h)*perPixel), Kept: kept}, nil
}

func (d *Decoder) jpegFootprint(data []byte) (Footprint, error) {
	hd, err := d.tj.Header(data)
	if err != nil {
		if jerr := jpegError(err, data); jerr != nil {
			return Footprint{}, jerr
		}
		return Footprint{}, &Error{Kind: ErrCorrupt, Format: "jpeg", Detail: err.Error()}
	}
	if err := d.opt.checkPixels(hd.Width, hd.Height); err != nil {
		return Footprint{}, withFormat(err, "jpeg")
	}
	w, h := hd.Width, hd.Height
	if d.opt.Mode == Fast {
		w, h = fastSize(hd.Width, hd.Height, d.opt.minSide())
	}
	kept := heldSize(w * h * 3)
	peak := kept
	full := float64(hd.Width) * float64(hd.Height)
	cmyk := hd.Colorspace == turbojpeg.ColorspaceCMYK || hd.Colorspace == turbojpeg.ColorspaceYCCK
	if cmyk {
		peak += heldSize(w * h * 4) // the CMYK samples converted from
	}
	if jpegProgressive(data) {
		// libjpeg keeps the whole image's coefficients (2 bytes per sample, at full size even
		// when DCT-scaled), plus MCU padding.
		samples := 3.0
		switch {
		case cmyk:
			samples = 4
		case hd.Subsampling == turbojpeg.SampGray:
			samples = 1
		case hd.Subsampling == turbojpeg.Samp420 || hd.Subsampling == turbojpeg.Samp411:
			samples = 1.5
		case hd.Subsampling == turbojpeg.Samp422 || hd.Subsampling == turbojpeg.Samp440:
			samples = 2
		}
		peak += int64(full*samples*2*1.05) + 64<<10
	}
	if d.opt.ApplyEXIFOrientation {
		peak += kept // orient copies into a new image
	}
	return Footprint{Peak: peak + jpegScratch(w), Kept: kept}, nil
}

// jpegScratch is libjpeg's working memory on a sequential decode: a few rows of samples
// for upsampling and colour conversion, and its fixed tables.
func jpegScratch(w int) int64 { return int64(w)*3*16*2 + 256<<10 }

// jpegProgressive reports whether the first frame header (SOFn) is progressive (SOF2, 6,
// 10 or 14), walking the marker segments from the start.
func jpegProgressive(d []byte) bool {
	i := 2
	for i+4 <= len(d) {
		if d[i] != 0xFF {
			return false
		}
		m := d[i+1]
		switch {
		case m == 0xFF: // fill byte
			i++
			continue
		case m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7):
			i += 2
			continue
		case m == 0xC2 || m == 0xC6 || m == 0xCA || m == 0xCE:
			return true
		case m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC:
			return false // another SOFn
		case m == 0xDA || m == 0xD9:
			return false
		}
		i += 2 + int(binary.BigEndian.Uint16(d[i+2:]))
	}
	return false
}

// goFootprint reads the size of a PNG, GIF, WebP or BMP and the bytes per pixel Go's decoder
// allocates beside the output: its intermediate image (and, where the decoder builds one
// from another, that too).
func goFootprint(data []byte, format string) (w, h int, perPixel float64, err error) {
	r := bytes.NewReader(data)
	switch format {
	case "png":
		cfg, err := png.DecodeConfig(r)
		if err != nil {
			return 0, 0, 0, goError(err, format)
		}
		return cfg.Width, cfg.Height, pngPerPixel(data), nil
	case "gif":
		cfg, err := gif.DecodeConfig(r)
		if err != nil {
			return 0, 0, 0, goError(err, format)
		}
		// The first frame as paletted pixels, and its copy onto the logical screen.
		return cfg.Width, cfg.Height, 2, nil
	case "webp":
		cfg, err := webp.DecodeConfig(r)
		if err != nil {
			return 0, 0, 0, goError(err, format)
		}
		// Lossy: YCbCr 4:2:0 (1.5 B/px) or NYCbCrA with alpha (2.5). Lossless (VP8L): ARGB
		// words (4 B/px), a transform's copy (4) and the NRGBA result (4).
		perPixel := 2.5
		if len(data) >= 16 && (string(data[12:16]) == "VP8L" || string(data[12:16]) == "VP8X") {
			perPixel = 12
		}
		return cfg.Width, cfg.Height, perPixel, nil
	default: // bmp
		cfg, err := bmp.DecodeConfig(r)
		if err != nil {
			return 0, 0, 0, goError(err, format)
		}
		return cfg.Width, cfg.Height, 4, nil // RGBA or NRGBA (paletted files take 1)
	}
}

// pngPerPixel is the image Go's PNG decoder returns for the IHDR's colour type and bit
// depth (and a tRNS chunk, which turns gray and RGB into NRGBA or NRGBA64), doubled for an
// interlaced file (each pass is decoded into its own image, then merged).
func pngPerPixel(data []byte) float64 {
	if len(data) < 33 {
		return 8
	}
	depth, ctype, interlaced := data[24], data[25], data[28] == 1
	trns := pngHasTRNS(data)
	var bpp float64
	switch {
	case ctype == 3: // paletted
		bpp = 1
	case ctype == 0 && !trns:
		bpp = 1
		if depth == 16 {
			bpp = 2
		}
	default: // RGB (RGBA in Go), gray+alpha, RGBA, or gray with tRNS
		bpp = 4
		if depth == 16 {
			bpp = 8
		}
	}
	if interlaced {
		bpp *= 2
	}
	return bpp
}

// pngHasTRNS walks the chunks before the first IDAT looking for tRNS.
func pngHasTRNS(d []byte) bool {
	for i := 8; i+8 <= len(d); {
		n := int(binary.BigEndian.Uint32(d[i:]))
		typ := string(d[i+4 : i+8])
		switch typ {
		case "tRNS":
			return true
		case "IDAT", "IEND":
			return false
		}
		if n < 0 || n > len(d) {
			return false
		}
		i += 12 + n
	}
	return false
}

// heldSize is the size of the pooled buffer an n-byte image gets (Image.Held).
func heldSize(n int) int64 {
	_, size := classOf(n)
	return int64(size)
}

// Held is the size of the image's pooled buffer (of RGB for an image made elsewhere): what
// it holds of a budget until Release; 0 after it.
func (im *Image) Held() int64 {
	switch {
	case im == nil:
		return 0
	case im.buf == nil:
		return int64(len(im.RGB))
	}
	return int64(len(*im.buf))
}
