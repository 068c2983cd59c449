// safetensors.go: a strict, bounded reader of safetensors headers (the 8-byte length, the
// JSON table of tensors) and the tensor summary `clipd weights inspect` prints. It never
// reads tensor data and refuses any header the reference implementation would refuse.

package weights

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/clipd/clipd/internal/echo"
)

// MaxHeaderSize is the largest JSON header accepted (the safetensors format's own limit).
const MaxHeaderSize = 100 << 20

// dtypeSizes are the element sizes of the dtypes the safetensors format defines in bytes.
var dtypeSizes = map[string]int64{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
	"I16": 2, "U16": 2, "F16": 2, "BF16": 2,
	"I32": 4, "U32": 4, "F32": 4,
	"I64": 8, "U64": 8, "F64": 8,
}

// Tensor is one entry of a safetensors header. Begin and End are byte offsets into the
// data section, which starts at 8+HeaderSize in the file.
type Tensor struct {
	Name       string
	DType      string
	Shape      []int64
	Begin, End int64
}

// Elements is the product of the shape (1 for a scalar).
func (t *Tensor) Elements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Header is a parsed safetensors header.
type Header struct {
	Tensors    []Tensor // sorted by Begin (file order)
	Metadata   map[string]string
	HeaderSize int64 // bytes of JSON after the 8-byte length
	FileSize   int64
}

// ReadHeader opens path and parses its safetensors header.
func ReadHeader(path string) (*Header, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, newErr(ErrMissing, err, fmt.Sprintf("weights: %s does not exist", path))
		}
		return nil, newErr(ErrMissing, err, fmt.Sprintf("weights: cannot open %s: %v", path, err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, newErr(ErrMissing, err, fmt.Sprintf("weights: cannot stat %s: %v", path, err))
	}
	if !st.Mode().IsRegular() {
		return nil, newErr(ErrMissing, nil, fmt.Sprintf("weights: %s is not a regular file", path))
	}
	h, err := ParseHeader(f, st.Size())
	if err != nil {
		return nil, newErr(ErrBadWeights, err, fmt.Sprintf("weights: %s is not a valid safetensors file: %v", path, err))
	}
	return h, nil
}

// ParseHeader parses the header of a safetensors file of the given size read through r.
// Errors are plain descriptions; ReadHeader adds the path and the ErrBadWeights kind.
func ParseHeader(r io.ReaderAt, size int64) (*Header, error) {
	if size < 8 {
		return nil, fmt.Errorf("file is %d bytes, shorter than the 8-byte header length", size)
	}
	var lenBuf [8]byte
	if _, err := r.ReadAt(lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("reading the header length: %v", err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n < 2 {
		return nil, fmt.Errorf("header length %d is too small", n)
	}
	if n > MaxHeaderSize {
		return nil, fmt.Errorf("header length %d is over the %d-byte limit", n, MaxHeaderSize)
	}
	if n > uint64(size-8) {
		return nil, fmt.Errorf("header length %d is larger than the file's %d bytes after the length (truncated file?)", n, size-8)
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, 8); err != nil {
		return nil, fmt.Errorf("reading the %d-byte header: %v", n, err)
	}
	h := &Header{HeaderSize: int64(n), FileSize: size}
	if err := h.parseJSON(buf); err != nil {
		return nil, err
	}
	if err := h.checkOffsets(size - 8 - int64(n)); err != nil {
		return nil, err
	}
	return h, nil
}

type tensorEntry struct {
	DType       *string  `json:"dtype"`
	Shape       *[]int64 `json:"shape"`
	DataOffsets *[]int64 `json:"data_offsets"`
}

func (h *Header) parseJSON(buf []byte) error {
	if buf[0] != '{' {
		return errors.New("header does not start with '{'")
	}
	if !utf8.Valid(buf) {
		return errors.New("header is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(buf))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("header JSON: %s", echo.Short(err.Error()))
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("header JSON: %s", echo.Short(err.Error()))
		}
		name, ok := tok.(string)
		if !ok {
			return fmt.Errorf("header JSON: key %s is not a string", echo.Short(fmt.Sprint(tok)))
		}
		if seen[name] {
			return fmt.Errorf("header JSON: key %s appears twice", echo.Quote(name))
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("header JSON: value of %s: %s", echo.Quote(name), echo.Short(err.Error()))
		}
		if name == "__metadata__" {
			if err := strictUnmarshal(raw, &h.Metadata); err != nil {
				return fmt.Errorf("__metadata__ must map strings to strings: %s", echo.Short(err.Error()))
			}
			continue
		}
		t, err := parseTensor(name, raw)
		if err != nil {
			return err
		}
		h.Tensors = append(h.Tensors, t)
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return fmt.Errorf("header JSON: %s", echo.Short(err.Error()))
	}
	// Only the space padding the writers add may follow the object.
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("header JSON: data after the closing '}'")
	}
	return nil
}

func strictUnmarshal(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func parseTensor(name string, raw []byte) (Tensor, error) {
	var e tensorEntry
	if err := strictUnmarshal(raw, &e); err != nil {
		return Tensor{}, fmt.Errorf("tensor %s: %s", echo.Quote(name), echo.Short(err.Error()))
	}
	if e.DType == nil || e.Shape == nil || e.DataOffsets == nil {
		return Tensor{}, fmt.Errorf("tensor %s: needs dtype, shape and data_offsets", echo.Quote(name))
	}
	if _, ok := dtypeSizes[*e.DType]; !ok {
		return Tensor{}, fmt.Errorf("tensor %s: unknown dtype %s", echo.Quote(name), echo.Quote(*e.DType))
	}
	if len(*e.DataOffsets) != 2 {
		return Tensor{}, fmt.Errorf("tensor %s: data_offsets has %d values, want 2", echo.Quote(name), len(*e.DataOffsets))
	}
	t := Tensor{Name: name, DType: *e.DType, Shape: *e.Shape, Begin: (*e.DataOffsets)[0], End: (*e.DataOffsets)[1]}
	if t.Begin < 0 || t.End < t.Begin {
		return Tensor{}, fmt.Errorf("tensor %s: bad data_offsets [%d, %d]", echo.Quote(name), t.Begin, t.End)
	}
	nbytes := uint64(dtypeSizes[t.DType])
	for _, d := range t.Shape {
		if d < 0 {
			return Tensor{}, fmt.Errorf("tensor %s: negative dimension in shape %s", echo.Quote(name), echo.Short(fmt.Sprint(t.Shape)))
		}
		hi, lo := bits.Mul64(nbytes, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return Tensor{}, fmt.Errorf("tensor %s: shape %s is too large", echo.Quote(name), echo.Short(fmt.Sprint(t.Shape)))
		}
		nbytes = lo
	}
	if uint64(t.End-t.Begin) != nbytes {
		return Tensor{}, fmt.Errorf("tensor %s: %s %s needs %d bytes, data_offsets [%d, %d] hold %d",
			echo.Quote(name), t.DType, echo.Short(fmt.Sprint(t.Shape)), nbytes, t.Begin, t.End, t.End-t.Begin)
	}
	return t, nil
}

// checkOffsets requires the tensors to cover the data section exactly: no holes, no overlap,
// nothing past its end (as the reference implementation does).
func (h *Header) checkOffsets(dataSize int64) error {
	sort.SliceStable(h.Tensors, func(i, j int) bool {
		if h.Tensors[i].Begin != h.Tensors[j].Begin {
			return h.Tensors[i].Begin < h.Tensors[j].Begin
		}
		return h.Tensors[i].End < h.Tensors[j].End
	})
	var at int64
	for _, t := range h.Tensors {
		if t.Begin != at {
			if t.Begin < at {
				return fmt.Errorf("tensor %s overlaps the previous tensor (begins at %d, previous ends at %d)", echo.Quote(t.Name), t.Begin, at)
			}
			return fmt.Errorf("hole in the data section before tensor %s (bytes %d to %d belong to no tensor)", echo.Quote(t.Name), at, t.Begin)
		}
		at = t.End
	}
	if at != dataSize {
		if at > dataSize {
			return fmt.Errorf("tensors need %d bytes of data, the file holds %d (truncated file?)", at, dataSize)
		}
		return fmt.Errorf("the file holds %d bytes of data, the tensors use %d", dataSize, at)
	}
	return nil
}

// Params is the total number of elements over all tensors.
func (h *Header) Params() int64 {
	var n int64
	for i := range h.Tensors {
		n += h.Tensors[i].Elements()
	}
	return n
}

// DTypeCounts maps each dtype to the number of tensors of it.
func (h *Header) DTypeCounts() map[string]int {
	m := map[string]int{}
	for i := range h.Tensors {
		m[h.Tensors[i].DType]++
	}
	return m
}

// Naming is the tensor naming scheme of a CLIP checkpoint.
type Naming string

// The naming schemes the engine loads.
const (
	NamingOpenAI  Naming = "openai" // OpenAI / open_clip: visual.*
	NamingHF      Naming = "hf"     // Hugging Face transformers: vision_model.*
	NamingUnknown Naming = "unknown"
)

// Describe is the human name of the scheme.
func (n Naming) Describe() string {
	switch n {
	case NamingOpenAI:
		return "OpenAI/open_clip (visual.*)"
	case NamingHF:
		return "Hugging Face (vision_model.*)"
	}
	return "unknown (neither visual.* nor vision_model.* tensors)"
}

// Naming reports which scheme the tensor names follow, and whether a text tower is present.
func (h *Header) Naming() (naming Naming, hasText bool) {
	var openai, hf int
	for i := range h.Tensors {
		name := h.Tensors[i].Name
		switch {
		case strings.HasPrefix(name, "visual."):
			openai++
		case strings.HasPrefix(name, "vision_model.") || strings.HasPrefix(name, "visual_projection."):
			hf++
		case strings.HasPrefix(name, "text_model.") || strings.HasPrefix(name, "transformer.") ||
			name == "token_embedding.weight" || name == "text_projection" || name == "text_projection.weight":
			hasText = true
		}
	}
	switch {
	case openai > 0 && openai >= hf:
		return NamingOpenAI, hasText
	case hf > 0:
		return NamingHF, hasText
	}
	return NamingUnknown, hasText
}
