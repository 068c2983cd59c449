// npy_fuzz_test.go: no .npy input panics ReadNPY or makes it accept values the file does not
// hold.
package search

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

func FuzzReadNPY(f *testing.F) {
	hdr := func(dict string) []byte {
		b := append([]byte("\x93NUMPY\x01\x00"), 0, 0)
		binary.LittleEndian.PutUint16(b[8:], uint16(len(dict)))
		return append(b, dict...)
	}
	f.Add(append(hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }\n"), 0, 0, 128, 63, 0, 0, 0, 64))
	f.Add(hdr("{'descr': '<f2', 'fortran_order': False, 'shape': (99999999999, 99999999999), }\n"))
	f.Add(hdr("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "q.npy")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		vals, rows, cols, err := ReadNPY(p)
		if err == nil && (rows < 1 || cols < 1 || len(vals) != rows*cols || len(data) < rows*cols*2) {
			t.Fatalf("ReadNPY accepted %d x %d with %d values from %d bytes", rows, cols, len(vals), len(data))
		}
	})
}
