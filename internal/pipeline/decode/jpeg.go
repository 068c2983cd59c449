// jpeg.go: JPEG decoding through libjpeg-turbo: the exact full-size decode (Pillow's bytes),
// the DCT-scaled Fast decode, CMYK/YCCK to RGB as Pillow converts it, truncation detection.

package decode

import (
	"bytes"
	"errors"
	"strings"

	"github.com/clipd/clipd/internal/cgo/turbojpeg"
)

// jpegFlags: libjpeg's defaults (accurate integer DCT, fancy upsampling), as Pillow decodes,
// plus a cap of 500 scans so a crafted progressive file cannot keep a worker busy for minutes.
const jpegFlags = turbojpeg.FlagLimitScans

// jpegHeader reads a JPEG's header and refuses what decodeJPEG would refuse before decoding
// (an unreadable header, too many pixels), with the same errors.
func (d *Decoder) jpegHeader(data []byte) (turbojpeg.Header, error) {
	h, err := d.tj.Header(data)
	if err != nil {
		if jerr := jpegError(err, data); jerr != nil {
			return h, jerr
		}
		return h, &Error{Kind: ErrCorrupt, Format: "jpeg", Detail: err.Error()}
	}
	if err := d.opt.checkPixels(h.Width, h.Height); err != nil {
		return h, withFormat(err, "jpeg")
	}
	return h, nil
}

func (d *Decoder) decodeJPEG(data []byte) (*Image, error) {
	h, err := d.jpegHeader(data)
	if err != nil {
		return nil, err
	}
	w, ht := h.Width, h.Height
	if d.opt.Mode == Fast {
		w, ht = fastSize(h.Width, h.Height, d.opt.minSide())
	}
	cmyk := h.Colorspace == turbojpeg.ColorspaceCMYK || h.Colorspace == turbojpeg.ColorspaceYCCK
	im := newImage(w, ht)
	im.OrigWidth, im.OrigHeight = h.Width, h.Height
	if !cmyk {
		err = d.tj.Decompress(data, im.RGB, w, w*3, ht, turbojpeg.PixelRGB, jpegFlags)
	} else {
		// libjpeg cannot convert CMYK to RGB; decode the (YCCK -> ) CMYK samples and convert
		// them as Pillow does.
		tmp, class := getBuf(w * ht * 4)
		err = d.tj.Decompress(data, (*tmp)[:w*ht*4], w, w*4, ht, turbojpeg.PixelCMYK, jpegFlags)
		if err == nil || isWarning(err) {
			invertedCMYKToRGB(im.RGB, (*tmp)[:w*ht*4])
		}
		putBuf(tmp, class)
	}
	if err != nil {
		if jerr := jpegError(err, data); jerr != nil {
			im.Release()
			return nil, jerr
		}
	}
	if d.opt.ApplyEXIFOrientation {
		if o := jpegOrientation(data); o > 1 {
			im = orient(im, o)
		}
	}
	return im, nil
}

// fastSize is the smallest DCT-scaled size (factor M/8, M <= 8) whose shorter side stays
// >= minSide; the full size when even 8/8 does not reach it.
func fastSize(w, h, minSide int) (int, int) {
	bw, bh := w, h
	for _, f := range turbojpeg.ScalingFactors() {
		if f.Num > f.Denom {
			continue
		}
		sw, sh := f.Scaled(w), f.Scaled(h)
		if min(sw, sh) >= minSide && sw*sh < bw*bh {
			bw, bh = sw, sh
		}
	}
	return bw, bh
}

func isWarning(err error) bool {
	var te *turbojpeg.Error
	return errors.As(err, &te) && te.Warning
}

// jpegError maps a TurboJPEG failure to a decode *Error, or to nil for a warning Pillow would
// also accept (corrupt-but-complete data such as extraneous bytes before a marker).
// Truncation is a failure, as in Pillow ("image file is truncated"): libjpeg reports it as a
// "Premature end of JPEG file" warning, but only the first warning's text is kept, so a
// damaged file that also lacks its end-of-image marker counts as truncated too.
func jpegError(err error, data []byte) error {
	var te *turbojpeg.Error
	if !errors.As(err, &te) {
		return &Error{Kind: ErrCorrupt, Format: "jpeg", Detail: err.Error()}
	}
	if strings.Contains(te.Msg, "Premature end of JPEG file") || (te.Warning && !endsWithEOI(data)) {
		return &Error{Kind: ErrTruncated, Format: "jpeg"}
	}
	if te.Warning {
		return nil
	}
	return &Error{Kind: ErrCorrupt, Format: "jpeg", Detail: te.Msg}
}

// endsWithEOI: an FF D9 marker within the last bytes (some writers append a few bytes of
// padding after it).
func endsWithEOI(data []byte) bool {
	tail := data[max(0, len(data)-32):]
	return bytes.Contains(tail, []byte{0xFF, 0xD9})
}

// invertedCMYKToRGB converts libjpeg's CMYK samples to RGB as Pillow does: JPEG CMYK is read
// as Adobe-inverted ("CMYK;I", so c = 255 - sample), then Convert.c's cmyk2rgb:
// r = clip(nk - nk*c/255) with nk = 255 - k and MULDIV255's rounding.
func invertedCMYKToRGB(dst, src []byte) {
	n := len(src) / 4
	_ = dst[n*3-1]
	for i := 0; i < n; i++ {
		s := src[i*4 : i*4+4 : i*4+4]
		nk := int(s[3]) // 255 - (255 - sample)
		o := dst[i*3 : i*3+3 : i*3+3]
		o[0] = clip8(nk - mulDiv255(255-int(s[0]), nk))
		o[1] = clip8(nk - mulDiv255(255-int(s[1]), nk))
		o[2] = clip8(nk - mulDiv255(255-int(s[2]), nk))
	}
}

func mulDiv255(a, b int) int {
	t := a*b + 128
	return ((t >> 8) + t) >> 8
}

func clip8(v int) byte {
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return byte(v)
}

func withFormat(err error, format string) error {
	var e *Error
	if errors.As(err, &e) && e.Format == "" {
		e.Format = format
	}
	return err
}
