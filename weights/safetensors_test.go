// safetensors_test.go: the header reader on the committed tiny models and on headers broken
// every way the format forbids (its fuzz target is in safetensors_fuzz_test.go).
package weights

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadHeaderGoldenModels(t *testing.T) {
	for _, c := range []struct {
		dir     string
		tensors int
		dtype   string
		naming  Naming
	}{
		{"tiny_openai_quick_f32", 32, "F32", NamingOpenAI},
		{"tiny_openai_noconfig_f16", 20, "F16", NamingOpenAI},
		{"tiny_hf_erf_f16", 40, "F16", NamingHF},
	} {
		path := filepath.Join("..", "testdata", "golden", c.dir, "model.safetensors")
		h, err := ReadHeader(path)
		if err != nil {
			t.Fatalf("%s: %v", c.dir, err)
		}
		st, _ := os.Stat(path)
		if h.FileSize != st.Size() || len(h.Tensors) != c.tensors || h.DTypeCounts()[c.dtype] != c.tensors {
			t.Errorf("%s: size %d, %d tensors, dtypes %v", c.dir, h.FileSize, len(h.Tensors), h.DTypeCounts())
		}
		if n, text := h.Naming(); n != c.naming || text {
			t.Errorf("%s: naming %s (text %v), want %s", c.dir, n, text, c.naming)
		}
		// The data section is exactly what the tensors use.
		var bytesUsed int64
		for _, tn := range h.Tensors {
			bytesUsed += tn.End - tn.Begin
		}
		if 8+h.HeaderSize+bytesUsed != h.FileSize {
			t.Errorf("%s: 8 + %d + %d != %d", c.dir, h.HeaderSize, bytesUsed, h.FileSize)
		}
	}
	// tiny_openai_quick_f32: width 32, patch 8, image 32, 2 layers, mlp 64, embed 16.
	h, _ := ReadHeader("../testdata/golden/tiny_openai_quick_f32/model.safetensors")
	const width, mlp, layers, grid = 32, 64, 2, 4
	perBlock := int64(3*width*width + 3*width + width*width + width + 2*2*width + mlp*width + mlp + width*mlp + width)
	want := int64(width*3*8*8) + width + int64((grid*grid+1)*width) + 2*2*width + layers*perBlock + width*16
	if h.Params() != want {
		t.Errorf("params %d, want %d", h.Params(), want)
	}
}

// st builds a safetensors file from a header JSON and a data section.
func st(header string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(header)))
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

func parse(b []byte) (*Header, error) { return ParseHeader(bytes.NewReader(b), int64(len(b))) }

func TestParseHeaderAccepts(t *testing.T) {
	for name, b := range map[string][]byte{
		"two tensors":                st(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1,2],"data_offsets":[8,12]}}`, make([]byte, 12)),
		"order differs from offsets": st(`{"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, make([]byte, 2)),
		"padding and metadata":       st(`{"__metadata__":{"format":"pt"},"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]}}    `, make([]byte, 8)),
		"empty":                      st(`{}`, nil),
		"zero-size tensor":           st(`{"z":{"dtype":"F16","shape":[0,4],"data_offsets":[0,0]}}`, nil),
	} {
		if _, err := parse(b); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	h, _ := parse(st(`{"__metadata__":{"format":"pt"},"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]}}`, make([]byte, 8)))
	if h.Metadata["format"] != "pt" || h.Tensors[0].Elements() != 1 || h.Params() != 1 {
		t.Errorf("header %+v", h)
	}
}

func TestParseHeaderRejects(t *testing.T) {
	huge := make([]byte, 8)
	binary.LittleEndian.PutUint64(huge, 1<<40)
	tooBig := make([]byte, 8)
	binary.LittleEndian.PutUint64(tooBig, 1000)
	one := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	cases := map[string]struct {
		b    []byte
		want string
	}{
		"short file":          {[]byte{1, 2, 3}, "shorter than"},
		"length over limit":   {huge, "over the"},
		"length past the end": {append(tooBig, []byte("{}")...), "larger than the file"},
		"length too small":    {st("{", nil), "too small"},
		"not an object":       {st(`["a"]`, nil), "does not start"},
		"bad utf-8":           {st("{\"\xff\":{}}", nil), "UTF-8"},
		"bad json":            {st(`{"a":{"dtype":"F32",}}`, make([]byte, 8)), "JSON"},
		"duplicate key":       {st(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, make([]byte, 2)), "twice"},
		"unknown dtype":       {st(`{"a":{"dtype":"F12","shape":[1],"data_offsets":[0,1]}}`, make([]byte, 1)), "unknown dtype"},
		"unknown field":       {st(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1}}`, make([]byte, 1)), "unknown field"},
		"missing offsets":     {st(`{"a":{"dtype":"U8","shape":[1]}}`, nil), "needs dtype"},
		"three offsets":       {st(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}`, make([]byte, 1)), "3 values"},
		"negative dim":        {st(`{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}`, nil), "negative"},
		"size mismatch":       {st(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, make([]byte, 8)), "needs 12 bytes"},
		"overflowing shape":   {st(`{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, make([]byte, 8)), "too large"},
		"reversed offsets":    {st(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[5,4]}}`, nil), "bad data_offsets"},
		"hole":                {st(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, make([]byte, 2)), "hole"},
		"overlap":             {st(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, make([]byte, 2)), "overlaps"},
		"truncated data":      {st(one, make([]byte, 7)), "truncated"},
		"extra data":          {st(one, make([]byte, 9)), "the tensors use 8"},
		"trailing garbage":    {st(one+"x", make([]byte, 8)), "after the closing"},
		"metadata not string": {st(`{"__metadata__":{"n":1}}`, nil), "__metadata__"},
	}
	for name, c := range cases {
		_, err := parse(c.b)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", name, err, c.want)
		}
	}
}

func TestReadHeaderErrorKinds(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.safetensors")
	os.WriteFile(bad, []byte("<html>not weights</html>"), 0o644)
	if _, err := ReadHeader(bad); !errors.Is(err, ErrBadWeights) || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad file: %v, want ErrBadWeights naming the path", err)
	}
	if _, err := ReadHeader(filepath.Join(dir, "none.safetensors")); !errors.Is(err, ErrMissing) {
		t.Errorf("missing file: %v, want ErrMissing", err)
	}
}

func TestNaming(t *testing.T) {
	h := &Header{Tensors: []Tensor{{Name: "visual.proj"}, {Name: "transformer.resblocks.0.ln_1.weight"}, {Name: "token_embedding.weight"}}}
	if n, text := h.Naming(); n != NamingOpenAI || !text {
		t.Errorf("full OpenAI checkpoint: %s %v", n, text)
	}
	h = &Header{Tensors: []Tensor{{Name: "vision_model.post_layernorm.weight"}, {Name: "text_model.final_layer_norm.weight"}}}
	if n, text := h.Naming(); n != NamingHF || !text {
		t.Errorf("full HF checkpoint: %s %v", n, text)
	}
	h = &Header{Tensors: []Tensor{{Name: "encoder.weight"}}}
	if n, _ := h.Naming(); n != NamingUnknown {
		t.Errorf("other model: %s", n)
	}
}
