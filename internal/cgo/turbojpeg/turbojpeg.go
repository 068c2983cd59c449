// turbojpeg.go: the cgo wrapper of libturbojpeg's decompressor (tjInitDecompress,
// tjDecompressHeader3, tjDecompress2, tjGetScalingFactors). TurboJPEG's -1 returns become
// *Error values here and nowhere else.

package turbojpeg

/*
#cgo LDFLAGS: -lturbojpeg
#include <stdlib.h>
#include <turbojpeg.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// PixelFormat is a TurboJPEG pixel format (TJPF_*).
type PixelFormat int

// The pixel formats the decoder uses.
const (
	PixelRGB  PixelFormat = C.TJPF_RGB
	PixelGray PixelFormat = C.TJPF_GRAY
	PixelCMYK PixelFormat = C.TJPF_CMYK
)

// BytesPerPixel is tjPixelSize for the format.
func (p PixelFormat) BytesPerPixel() int {
	switch p {
	case PixelRGB:
		return 3
	case PixelGray:
		return 1
	case PixelCMYK:
		return 4
	}
	return 0
}

// Colorspace is the JPEG's colour space (TJCS_*).
type Colorspace int

// JPEG colour spaces.
const (
	ColorspaceRGB   Colorspace = C.TJCS_RGB
	ColorspaceYCbCr Colorspace = C.TJCS_YCbCr
	ColorspaceGray  Colorspace = C.TJCS_GRAY
	ColorspaceCMYK  Colorspace = C.TJCS_CMYK
	ColorspaceYCCK  Colorspace = C.TJCS_YCCK
)

// Flags are TJFLAG_* bits.
type Flags int

// Decompression flags. The zero value (accurate integer DCT, fancy upsampling) decodes the
// same bytes as libjpeg's defaults, which Pillow uses.
const (
	FlagFastDCT        Flags = C.TJFLAG_FASTDCT
	FlagFastUpsample   Flags = C.TJFLAG_FASTUPSAMPLE
	FlagStopOnWarning  Flags = C.TJFLAG_STOPONWARNING
	FlagLimitScans     Flags = C.TJFLAG_LIMITSCANS // refuse progressive JPEGs with > 500 scans
	FlagAccurateDCT    Flags = C.TJFLAG_ACCURATEDCT
	FlagNoRealloc      Flags = C.TJFLAG_NOREALLOC
	FlagBottomUp       Flags = C.TJFLAG_BOTTOMUP
	FlagProgressiveOut Flags = C.TJFLAG_PROGRESSIVE
)

// Chroma subsampling (TJSAMP_*), as Header.Subsampling reports it.
const (
	Samp444  = C.TJSAMP_444
	Samp422  = C.TJSAMP_422
	Samp420  = C.TJSAMP_420
	SampGray = C.TJSAMP_GRAY
	Samp440  = C.TJSAMP_440
	Samp411  = C.TJSAMP_411
)

// Header is what tjDecompressHeader3 reports.
type Header struct {
	Width, Height int
	Subsampling   int // TJSAMP_*; -1 (TJSAMP_UNKNOWN in later releases) when unusual
	Colorspace    Colorspace
}

// ScalingFactor is num/denom, as tjscalingfactor.
type ScalingFactor struct{ Num, Denom int }

// Scaled is TJSCALED: the size of dim decoded at this factor.
func (s ScalingFactor) Scaled(dim int) int { return (dim*s.Num + s.Denom - 1) / s.Denom }

// Error is a failed or warned TurboJPEG call. Warning is true when libjpeg only warned (the
// image was decoded, possibly with damage: corrupt data, or a premature end of the file).
type Error struct {
	Op      string
	Msg     string
	Warning bool
}

func (e *Error) Error() string { return e.Op + ": " + e.Msg }

// ErrClosed is returned by a closed Decompressor.
var ErrClosed = errors.New("turbojpeg: decompressor is closed")

// Decompressor is one tjhandle. It is not safe for concurrent use: give each goroutine its
// own (they are cheap) or take them from a sync.Pool.
type Decompressor struct {
	h C.tjhandle
}

// NewDecompressor creates a decompressor; Close frees it (a finalizer-like cleanup frees a
// forgotten one when it is collected).
func NewDecompressor() (*Decompressor, error) {
	h := C.tjInitDecompress()
	if h == nil {
		return nil, &Error{Op: "tjInitDecompress", Msg: C.GoString(C.tjGetErrorStr2(nil))}
	}
	d := &Decompressor{h: h}
	runtime.SetFinalizer(d, (*Decompressor).Close)
	return d, nil
}

// Close frees the handle; calling it again is a no-op.
func (d *Decompressor) Close() error {
	if d.h != nil {
		C.tjDestroy(d.h)
		d.h = nil
		runtime.SetFinalizer(d, nil)
	}
	return nil
}

// reset replaces the handle after a failure: libjpeg-turbo 2.1's tjDecompressHeader3 returns
// from an error without aborting the decompressor, and the next call on that handle would
// resume the old stream's marker parsing ("Unsupported marker type" on a good file).
func (d *Decompressor) reset() {
	C.tjDestroy(d.h)
	d.h = C.tjInitDecompress()
	if d.h == nil {
		runtime.SetFinalizer(d, nil)
	}
}

func (d *Decompressor) err(op string) *Error {
	return &Error{
		Op:      op,
		Msg:     C.GoString(C.tjGetErrorStr2(d.h)),
		Warning: C.tjGetErrorCode(d.h) == C.TJERR_WARNING,
	}
}

// Header reads the JPEG's size, subsampling and colour space without decoding pixels.
func (d *Decompressor) Header(data []byte) (Header, error) {
	if d.h == nil {
		return Header{}, ErrClosed
	}
	if len(data) == 0 {
		return Header{}, &Error{Op: "tjDecompressHeader3", Msg: "empty input"}
	}
	var w, h, ss, cs C.int
	r := C.tjDecompressHeader3(d.h, (*C.uchar)(unsafe.Pointer(&data[0])), C.ulong(len(data)), &w, &h, &ss, &cs)
	if r != 0 {
		err := d.err("tjDecompressHeader3")
		d.reset()
		return Header{}, err
	}
	if w <= 0 || h <= 0 {
		// A stream without a frame header (e.g. SOI then the end of the data) "succeeds".
		d.reset()
		return Header{}, &Error{Op: "tjDecompressHeader3", Msg: "no image in the data"}
	}
	return Header{Width: int(w), Height: int(h), Subsampling: int(ss), Colorspace: Colorspace(cs)}, nil
}

// Decompress decodes data into dst as width x height pixels of format pf with the given row
// pitch (bytes); width and height select the DCT scaling (TurboJPEG picks the largest scaling
// factor whose output fits them; pass the header's size for a full decode, or
// ScalingFactor.Scaled sizes). dst must hold pitch*height bytes. A non-nil *Error with
// Warning set means the image was decoded but libjpeg warned.
func (d *Decompressor) Decompress(data, dst []byte, width, pitch, height int, pf PixelFormat, flags Flags) error {
	if d.h == nil {
		return ErrClosed
	}
	if len(data) == 0 {
		return &Error{Op: "tjDecompress2", Msg: "empty input"}
	}
	if width <= 0 || height <= 0 || pitch < width*pf.BytesPerPixel() || len(dst) < pitch*height {
		return &Error{Op: "tjDecompress2", Msg: fmt.Sprintf("bad output geometry %dx%d pitch %d for %d bytes", width, height, pitch, len(dst))}
	}
	// data and dst hold no Go pointers; cgo keeps them in place for the call.
	r := C.tjDecompress2(d.h, (*C.uchar)(unsafe.Pointer(&data[0])), C.ulong(len(data)),
		(*C.uchar)(unsafe.Pointer(&dst[0])), C.int(width), C.int(pitch), C.int(height), C.int(pf), C.int(flags))
	if r != 0 {
		err := d.err("tjDecompress2")
		if !err.Warning {
			d.reset()
		}
		return err
	}
	return nil
}

var (
	factorsOnce sync.Once
	factors     []ScalingFactor
)

// ScalingFactors lists the DCT scaling factors this libjpeg-turbo supports (tjGetScalingFactors).
func ScalingFactors() []ScalingFactor {
	factorsOnce.Do(func() {
		var n C.int
		p := C.tjGetScalingFactors(&n)
		if p == nil || n <= 0 {
			factors = []ScalingFactor{{1, 1}}
			return
		}
		for _, f := range unsafe.Slice(p, int(n)) {
			factors = append(factors, ScalingFactor{Num: int(f.num), Denom: int(f.denom)})
		}
	})
	return factors
}
