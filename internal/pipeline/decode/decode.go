// decode.go: the package's entry points (Options, Image, Decoder, Decode), format sniffing,
// the error type every failure travels as, and the pool the RGB buffers come from.

package decode

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"sync"

	"github.com/clipd/clipd/internal/cgo/turbojpeg"
)

// DefaultMaxPixels is Pillow's Image.MAX_IMAGE_PIXELS (1024*1024*1024/4/3).
const DefaultMaxPixels = 89478485

// DefaultMinSide is the shorter side Fast mode keeps: CLIP B/32's input size.
const DefaultMinSide = 224

// Mode selects how JPEGs are decoded.
type Mode int

const (
	// Exact decodes at full size with libjpeg's defaults: the same bytes as Pillow.
	Exact Mode = iota
	// Fast decodes JPEGs DCT-scaled (M/8) to the smallest size whose shorter side is still
	// >= Options.MinSide. Much faster on large photos, but NOT bit-exact with Pillow: the
	// later resize starts from a different image. Other formats decode as in Exact.
	Fast
)

func (m Mode) String() string {
	if m == Fast {
		return "fast"
	}
	return "exact"
}

// ParseMode reads "exact" or "fast".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "exact", "":
		return Exact, nil
	case "fast":
		return Fast, nil
	}
	return 0, fmt.Errorf("unknown decode mode %q (want exact or fast)", s)
}

// Options tune decoding. The zero value is Exact, DefaultMinSide, DefaultMaxPixels, EXIF
// orientation ignored (as CLIP's reference preprocessing ignores it).
type Options struct {
	Mode                 Mode
	MinSide              int   // Fast: keep the shorter side >= this; 0 = DefaultMinSide
	MaxPixels            int64 // refuse larger images before decoding; 0 = DefaultMaxPixels, < 0 = no limit
	ApplyEXIFOrientation bool  // rotate/flip JPEGs by their EXIF orientation tag
}

func (o Options) minSide() int {
	if o.MinSide <= 0 {
		return DefaultMinSide
	}
	return o.MinSide
}

func (o Options) checkPixels(w, h int) error {
	if w <= 0 || h <= 0 {
		return &Error{Kind: ErrCorrupt, Detail: fmt.Sprintf("image has size %dx%d", w, h)}
	}
	limit := o.MaxPixels
	if limit == 0 {
		limit = DefaultMaxPixels
	}
	if limit > 0 && int64(w)*int64(h) > limit {
		return &Error{Kind: ErrTooManyPixels, Detail: fmt.Sprintf("%dx%d", w, h)}
	}
	return nil
}

// Sentinels for errors.Is: every *Error matches its Kind.
var (
	ErrNotImage      = errors.New("not an image")
	ErrTooManyPixels = errors.New("too many pixels")
	ErrTruncated     = errors.New("truncated")
	ErrCorrupt       = errors.New("corrupt")
	// ErrOverBudget: decoding the image would take more memory than the decoders' budget.
	ErrOverBudget = errors.New("too large for --memory")
)

// Error is a failed decode. Its text is the short reason a pipeline failure records:
// "too many pixels (30000x30000)", "truncated jpeg", "corrupt png: ...", "not an image
// (starts with "<!DOCTYPE")".
type Error struct {
	Kind   error  // one of the sentinels above
	Format string // "jpeg", "png", ...; empty when unknown
	Detail string
}

func (e *Error) Error() string {
	switch e.Kind {
	case ErrTooManyPixels, ErrNotImage, ErrOverBudget:
		return e.Kind.Error() + " (" + e.Detail + ")"
	case ErrTruncated:
		return "truncated " + e.Format
	}
	s := e.Kind.Error()
	if e.Format != "" {
		s += " " + e.Format
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Is matches the Kind sentinel.
func (e *Error) Is(target error) bool { return target == e.Kind }

// Image is a decoded picture: interleaved RGB8, row-major, stride Width*3.
type Image struct {
	RGB           []byte
	Width, Height int
	// OrigWidth and OrigHeight are the encoded image's size (Width and Height are smaller
	// after a Fast, DCT-scaled JPEG decode).
	OrigWidth, OrigHeight int
	buf                   *[]byte // the pooled backing array; nil once released
	class                 int
}

// Release hands the pixels back to the pool; the Image must not be used afterwards.
// Calling it twice, or on nil, is harmless.
func (im *Image) Release() {
	if im == nil || im.buf == nil {
		return
	}
	putBuf(im.buf, im.class)
	im.buf, im.RGB = nil, nil
}

func newImage(w, h int) *Image {
	b, c := getBuf(w * h * 3)
	return &Image{RGB: (*b)[:w*h*3], Width: w, Height: h, OrigWidth: w, OrigHeight: h, buf: b, class: c}
}

// Decoder decodes one image at a time; it holds a TurboJPEG handle, so give each goroutine
// its own. Decode (the function) keeps a pool of them.
type Decoder struct {
	opt Options
	tj  *turbojpeg.Decompressor
}

// NewDecoder makes a decoder with the given options; Close frees it.
func NewDecoder(opt Options) (*Decoder, error) {
	tj, err := turbojpeg.NewDecompressor()
	if err != nil {
		return nil, err
	}
	return &Decoder{opt: opt, tj: tj}, nil
}

// Close frees the TurboJPEG handle; calling it again is a no-op.
func (d *Decoder) Close() error { return d.tj.Close() }

// Decode turns one encoded image into RGB8. The result's Release returns its buffer.
func (d *Decoder) Decode(data []byte) (*Image, error) {
	switch f := sniff(data); f {
	case "jpeg":
		return d.decodeJPEG(data)
	case "png", "gif", "webp", "bmp":
		return decodeGo(data, f, d.opt)
	}
	return nil, &Error{Kind: ErrNotImage, Detail: describeStart(data)}
}

var decoders = sync.Pool{}

// Decode decodes data with opt using a pooled Decoder. Safe for concurrent use.
func Decode(data []byte, opt Options) (*Image, error) {
	d, _ := decoders.Get().(*Decoder)
	if d == nil {
		var err error
		if d, err = NewDecoder(opt); err != nil {
			return nil, err
		}
	}
	d.opt = opt
	im, err := d.Decode(data)
	decoders.Put(d)
	return im, err
}

// sniff names the format from the magic bytes, as Pillow's plugins recognise them.
func sniff(b []byte) string {
	switch {
	case len(b) >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF:
		return "jpeg"
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return "png"
	case bytes.HasPrefix(b, []byte("GIF87a")) || bytes.HasPrefix(b, []byte("GIF89a")):
		return "gif"
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return "webp"
	case bytes.HasPrefix(b, []byte("BM")) && len(b) >= 26:
		return "bmp"
	}
	return ""
}

// describeStart quotes the first bytes of something that is not an image (often an HTML
// error page or a placeholder served with status 200).
func describeStart(b []byte) string {
	if len(b) == 0 {
		return "empty body"
	}
	n := min(len(b), 16)
	s := string(b[:n])
	if i := strings.IndexAny(s, "\r\n"); i > 0 {
		s = s[:i]
	}
	return "starts with " + strconv.Quote(s)
}

// Buffer pool: size classes 2^k * (1 + j/4), so a buffer is at most 25% larger than asked for
// and images of similar sizes share buffers.
const minClassBits = 12

var bufPools [4 * 64]sync.Pool

func classOf(n int) (idx, size int) {
	if n <= 1<<minClassBits {
		return 0, 1 << minClassBits
	}
	k := bits.Len(uint(n-1)) - 1 // 2^k < n <= 2^(k+1)
	step := 1 << k / 4
	j := (n - 1<<k + step - 1) / step // 1..4
	return (k-minClassBits)*4 + j, 1<<k + j*step
}

func getBuf(n int) (*[]byte, int) {
	idx, size := classOf(n)
	if p, ok := bufPools[idx].Get().(*[]byte); ok {
		return p, idx
	}
	b := make([]byte, size)
	return &b, idx
}

// maxPooled is the largest buffer kept for reuse: a larger one is left to the collector, so
// that released pixels of a rare huge image do not stay allocated outside the decode budget.
const maxPooled = 16 << 20

func putBuf(b *[]byte, idx int) {
	if len(*b) <= maxPooled {
		bufPools[idx].Put(b)
	}
}
