// h5_test.go: round trips through the binding, read back by Go and by h5py (Debian's
// /usr/bin/python3), float16 conversion against numpy, and error reporting.
package h5

import (
	"errors"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const python = "/usr/bin/python3"

// runPython runs script with args under Debian's python3 (with h5py and numpy) and returns
// its stdout; the test is skipped when that python or h5py is missing.
func runPython(t *testing.T, script string, args ...string) string {
	t.Helper()
	if err := exec.Command(python, "-c", "import h5py, numpy").Run(); err != nil {
		t.Skipf("%s with h5py and numpy is needed: %v", python, err)
	}
	cmd := exec.Command(python, append([]string{"-W", "ignore", "-c", script}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s%s", err, out, stderr.String())
	}
	return string(out)
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.h5")
	f, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	urls := []string{"http://a/1.jpg", "https://b/é.png", ""}
	ds, err := f.CreateDataset("urls", DatasetOptions{Kind: String, ChunkRows: 2, Deflate: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := ds.WriteStrings(0, urls[:2]); err != nil {
		t.Fatal(err)
	}
	if err := ds.WriteStrings(2, urls[2:]); err != nil { // appends: the dataset grows
		t.Fatal(err)
	}
	emb := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12.5}
	e32, err := f.CreateDataset("e32", DatasetOptions{Kind: Float32, Cols: 4, ChunkRows: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := e32.WriteFloat32(0, emb); err != nil {
		t.Fatal(err)
	}
	e16, err := f.CreateDataset("e16", DatasetOptions{Kind: Float16, Cols: 4, Rows: 3, ChunkRows: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := e16.WriteFloat32(1, emb[4:]); err != nil { // rows 1..2; row 0 stays the fill value 0
		t.Fatal(err)
	}
	seqs, err := f.CreateDataset("seqs", DatasetOptions{Kind: Int64})
	if err != nil {
		t.Fatal(err)
	}
	if err := seqs.WriteInt64(0, []int64{5, -1, 1 << 40}); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{"model": "ViT-B/32", "embed_dim": 4, "normalized": true, "n64": int64(-7)} {
		if err := f.SetAttr(name, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.SetAttr("model", "replaced"); err != nil { // setting twice replaces
		t.Fatal(err)
	}
	for _, d := range []*Dataset{ds, e32, e16, seqs} {
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	g, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	u, err := g.OpenDataset("urls", 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := u.ReadStrings(0, int(u.Rows()))
	if err != nil || strings.Join(got, "|") != strings.Join(urls, "|") {
		t.Fatalf("urls = %q, %v; want %q", got, err, urls)
	}
	if _, err := u.ReadStrings(2, 2); err == nil {
		t.Fatal("reading past the end: no error")
	}
	h, err := g.OpenDataset("e16", 0)
	if err != nil {
		t.Fatal(err)
	}
	if h.Kind() != Float16 || h.Rows() != 3 || h.Cols() != 4 {
		t.Fatalf("e16: kind %s rows %d cols %d", h.Kind(), h.Rows(), h.Cols())
	}
	v, err := h.ReadFloat32(1, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range v {
		if x != emb[4+i] {
			t.Fatalf("e16[%d] = %v, want %v", i, x, emb[4+i])
		}
	}
	s, err := g.OpenDataset("seqs", 0)
	if err != nil {
		t.Fatal(err)
	}
	iv, err := s.ReadInt64(0, 3)
	if err != nil || iv[0] != 5 || iv[1] != -1 || iv[2] != 1<<40 {
		t.Fatalf("seqs = %v, %v", iv, err)
	}
	attrs, err := g.Attrs()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"model": "replaced", "embed_dim": int64(4), "normalized": true, "n64": int64(-7)}
	if len(attrs) != len(want) {
		t.Fatalf("attrs = %v", attrs)
	}
	for _, a := range attrs {
		if want[a.Name] != a.Value {
			t.Fatalf("attr %s = %#v, want %#v", a.Name, a.Value, want[a.Name])
		}
	}

	out := runPython(t, `
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
assert [s.decode() for s in f["urls"][:]] == ["http://a/1.jpg", "https://b/é.png", ""], f["urls"][:]
assert list(f["urls"].asstr()[:]) == ["http://a/1.jpg", "https://b/é.png", ""]
assert h5py.check_string_dtype(f["urls"].dtype).encoding == "utf-8"
assert f["e32"].dtype == np.float32 and f["e32"].shape == (3, 4)
assert f["e32"].maxshape == (None, 4) and f["e32"].chunks == (2, 4)
assert f["urls"].compression == "gzip"
assert (f["e32"][:] == np.arange(1, 13, dtype=np.float32).reshape(3, 4) + np.array([0]*11 + [0.5], np.float32).reshape(3, 4)).all()
assert f["e16"].dtype == np.float16, f["e16"].dtype
assert (f["e16"][0] == 0).all() and (f["e16"][1:] == np.array([[5,6,7,8],[9,10,11,12.5]], np.float16)).all()
assert f["seqs"].dtype == np.int64 and list(f["seqs"][:]) == [5, -1, 1 << 40]
assert f.attrs["model"] == "replaced" and f.attrs["embed_dim"] == 4
assert f.attrs["normalized"] is np.True_ or f.attrs["normalized"] == True and f.attrs["normalized"].dtype == np.bool_, repr(f.attrs["normalized"])
print("ok")
`, path)
	if strings.TrimSpace(out) != "ok" {
		t.Fatalf("python: %s", out)
	}
}

// TestFloat16MatchesNumpy compares the conversion with numpy's astype(float16) on values
// covering normals, subnormals, ties, overflow and underflow.
func TestFloat16MatchesNumpy(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	vals := []float32{0, -0, 1, -1, 65504, 65520, 65519.99, 1e6, -1e6, 6e-8, 3e-8, 2.9802322e-08, 1e-10,
		6.1035156e-05, 6.097555e-05, 1.00048828125, 1.00146484375, float32(math.Inf(1)), float32(math.Inf(-1))}
	for i := 0; i < 2000; i++ {
		vals = append(vals, float32(rng.NormFloat64()*math.Pow(10, float64(rng.Intn(12)-8))))
	}
	// every half value (and the midpoints above it) must survive the trip
	for h := 0; h < 0x7c00; h++ {
		x := Float16ToFloat32(uint16(h))
		if got := Float32ToFloat16(x); got != uint16(h) {
			t.Fatalf("half %#04x -> %v -> %#04x", h, x, got)
		}
	}
	path := filepath.Join(t.TempDir(), "v.f32")
	if err := os.WriteFile(path, float32Bytes(vals), 0o644); err != nil {
		t.Fatal(err)
	}
	out := runPython(t, `
import sys, numpy as np
v = np.fromfile(sys.argv[1], dtype="<f4")
print(" ".join(str(int(x)) for x in v.astype(np.float16).view(np.uint16)))
`, path)
	fields := strings.Fields(out)
	if len(fields) != len(vals) {
		t.Fatalf("python gave %d values, want %d", len(fields), len(vals))
	}
	for i, x := range vals {
		if got := Float32ToFloat16(x); fields[i] != itoa(int(got)) {
			t.Errorf("Float32ToFloat16(%g) = %d, numpy %s", x, got, fields[i])
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(filepath.Join(dir, "missing.h5"))
	var he *Error
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "missing.h5") {
		t.Fatalf("Open(missing) = %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "junk.h5"), []byte("not hdf5"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(dir, "junk.h5")); err == nil {
		t.Fatal("Open(junk) succeeded")
	}
	f, err := Create(filepath.Join(dir, "x.h5"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.OpenDataset("nope", 0); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("OpenDataset(nope) = %v", err)
	}
	if ok, err := f.Has("nope"); ok || err != nil {
		t.Fatalf("Has(nope) = %v, %v", ok, err)
	}
	d, err := f.CreateDataset("x", DatasetOptions{Kind: Float32, Cols: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.WriteFloat32(0, []float32{1, 2, 3}); err == nil {
		t.Fatal("3 values into 2-wide rows: no error")
	}
	if ok, _ := f.Has("x"); !ok {
		t.Fatal("Has(x) = false")
	}
}
