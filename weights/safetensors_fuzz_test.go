// safetensors_fuzz_test.go: fuzz targets for what the weights package parses from untrusted
// bytes: the safetensors header (it never panics, and what it accepts is consistent) and an
// HTTP Content-Range. `make fuzz` runs them.

package weights

import (
	"os"
	"path/filepath"
	"testing"
)

func FuzzParseHeader(f *testing.F) {
	f.Add(st(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add(st(`{"__metadata__":{"k":"v"},"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, make([]byte, 2)))
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0, '{', '}'})
	// The committed tiny models, whole: real headers as the writers lay them out.
	models, _ := filepath.Glob(filepath.Join("..", "testdata", "golden", "*", "model.safetensors"))
	if len(models) == 0 {
		f.Fatal("no golden models under testdata/golden")
	}
	for _, m := range models {
		b, err := os.ReadFile(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parse(b)
		if err != nil {
			return
		}
		var at int64
		for _, tn := range h.Tensors {
			if tn.Begin != at || tn.End < tn.Begin {
				t.Fatalf("accepted a header with tensor %q at [%d,%d) after %d", tn.Name, tn.Begin, tn.End, at)
			}
			at = tn.End
		}
		if 8+h.HeaderSize+at != int64(len(b)) {
			t.Fatalf("accepted: 8 + %d + %d != %d", h.HeaderSize, at, len(b))
		}
	})
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-99/100", "bytes 100-199/*", "bytes */1000", "bytes 5-4/10", " bytes 0-0/1 ", "bytes -1-3/4", "bytes 0-9223372036854775807/9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, end, complete, ok := parseContentRange(s)
		if !ok {
			return
		}
		if start < 0 || end < start || complete < -1 || (complete >= 0 && end >= complete) {
			t.Fatalf("parseContentRange(%q) = %d, %d, %d, ok", s, start, end, complete)
		}
	})
}
