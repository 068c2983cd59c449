// npy_test.go: ReadNPY on what numpy.save writes (float16/32/64, one vector or rows), and
// refusing what it cannot read with one line.
package search

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadNPY(t *testing.T) {
	dir := t.TempDir()
	const py = `
import sys, numpy as np
d = sys.argv[1]
v = np.arange(12, dtype=np.float64).reshape(3, 4) / 4 - 1
np.save(d + "/f2.npy", v.astype(np.float16))
np.save(d + "/f4.npy", v.astype(np.float32))
np.save(d + "/f8.npy", v)
np.save(d + "/one.npy", v[1].astype(np.float32))
np.save(d + "/fortran.npy", np.asfortranarray(v.astype(np.float32)))
np.save(d + "/int.npy", v.astype(np.int32))
np.save(d + "/big.npy", v.astype(">f4"))
np.save(d + "/3d.npy", v.astype(np.float32).reshape(1, 3, 4))
`
	if b, err := exec.Command("/usr/bin/python3", "-c", py, dir).CombinedOutput(); err != nil {
		t.Fatalf("numpy: %v\n%s", err, b)
	}
	for _, name := range []string{"f2", "f4", "f8"} {
		vals, rows, cols, err := ReadNPY(filepath.Join(dir, name+".npy"))
		if err != nil || rows != 3 || cols != 4 || len(vals) != 12 {
			t.Fatalf("%s: %d x %d, %v", name, rows, cols, err)
		}
		for i, v := range vals {
			if want := float32(i)/4 - 1; v != want {
				t.Fatalf("%s: value %d is %v, want %v", name, i, v, want)
			}
		}
	}
	if vals, rows, cols, err := ReadNPY(filepath.Join(dir, "one.npy")); err != nil || rows != 1 || cols != 4 || vals[0] != 0 {
		t.Fatalf("one vector: %v %d x %d, %v", vals, rows, cols, err)
	}
	full, _ := os.ReadFile(filepath.Join(dir, "f4.npy"))
	os.WriteFile(filepath.Join(dir, "short.npy"), full[:len(full)-1], 0o644)
	os.WriteFile(filepath.Join(dir, "text.npy"), []byte("hello"), 0o644)
	for name, want := range map[string]string{
		"fortran": "it is not in C order", "int": "its dtype is not a little-endian float", "big": "its dtype is not a little-endian float",
		"3d": "its shape is not (D,) or (N, D)", "short": "bytes, want", "text": "not a .npy file",
	} {
		_, _, _, err := ReadNPY(filepath.Join(dir, name+".npy"))
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line with %q", name, err, want)
		}
	}
}
