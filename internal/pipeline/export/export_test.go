package export

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/clipd/clipd/internal/cgo/h5"
	"github.com/clipd/clipd/internal/pipeline/item"
	"github.com/clipd/clipd/internal/pipeline/outfile"
	"github.com/clipd/clipd/internal/pipeline/sink/sinktest"
)

const testDim = 5

// writeRun writes a final file through the sink with one row per line (failing lines%4 == 0)
// and returns its path.
func writeRun(t *testing.T, dir string, lines int, dtype string, ids bool) string {
	t.Helper()
	attrs := outfile.Attrs{Model: "m", WeightsSHA256: "w", Preprocess: "exact", EmbedDim: testDim, Dtype: dtype,
		Input: "in.txt", Shard: "0/1", Version: "test"}
	var rows []sinktest.Row
	for l := 1; l <= lines; l++ {
		r := sinktest.Row{Item: item.Item{Seq: int64(l - 1), Line: int64(l), URL: fmt.Sprintf("http://h/%d.jpg", l)}}
		if ids {
			r.Item.ImageID = fmt.Sprintf("id%d", l)
		}
		if l%4 == 0 {
			r.Fail = "http 404"
		} else {
			r.Embedding = make([]float32, testDim)
			for j := range r.Embedding {
				r.Embedding[j] = float32(l) + float32(j)/3 - 1.1 // values that float16 rounds
			}
		}
		rows = append(rows, r)
	}
	return sinktest.WriteRun(t, dir, attrs, ids, 4, rows)
}

// writeCarried writes a file with h5 directly: rows rows without image ids, with the carried
// columns Caption and TEXT (datasets caption and text) and widths and heights.
func writeCarried(t *testing.T, path string, rows int) {
	t.Helper()
	f, err := h5.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	var open []*h5.Dataset
	defer func() { // datasets first: the file stays open (and locked) while one is
		for _, d := range open {
			d.Close()
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	var urls, captions, texts []string
	var widths, heights []int64
	var emb []float32
	for i := 0; i < rows; i++ {
		urls = append(urls, fmt.Sprintf("http://c/%d", i))
		captions = append(captions, fmt.Sprintf("a photo, number %d ✓", i))
		texts = append(texts, strings.Repeat("t", i))
		widths, heights = append(widths, int64(100+i)), append(heights, int64(200+i))
		for j := 0; j < testDim; j++ {
			emb = append(emb, float32(i*testDim+j)*0.001)
		}
	}
	ds := func(name string, kind h5.Kind, cols int) *h5.Dataset {
		d, err := f.CreateDataset(name, h5.DatasetOptions{Kind: kind, Rows: int64(rows), Cols: cols, ChunkRows: 4})
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, d)
		return d
	}
	for _, err := range []error{
		ds("urls", h5.String, 0).WriteStrings(0, urls), ds("caption", h5.String, 0).WriteStrings(0, captions),
		ds("text", h5.String, 0).WriteStrings(0, texts), ds("widths", h5.Int64, 0).WriteInt64(0, widths),
		ds("heights", h5.Int64, 0).WriteInt64(0, heights), ds("embeddings", h5.Float32, testDim).WriteFloat32(0, emb),
		f.SetAttr("saved_columns", "Caption,TEXT"), f.SetAttr("dtype", "float32"),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// checkNPY reads every part back with numpy and compares it with the file's rows read with
// h5py (as dtype): same shape, dtype and values, the parts in order.
func checkNPY(t *testing.T, h5path, dir string, per int64, parts int, dtype string) {
	t.Helper()
	const script = `
import sys, numpy as np, h5py
path, out, per, parts, dtype = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
with h5py.File(path, "r") as f:
    want = f["embeddings"][:].astype(dtype)
for k in range(parts):
    got = np.load("%s/img_emb/img_emb_%d.npy" % (out, k))
    rows = want[k*per:(k+1)*per]
    assert got.dtype == np.dtype(dtype), (k, got.dtype)
    assert got.shape == rows.shape, (k, got.shape, rows.shape)
    assert got.flags["C_CONTIGUOUS"]
    assert np.array_equal(got, rows), k
print("ok", len(want))
`
	cmd := exec.Command("/usr/bin/python3", "-c", script, h5path, dir, fmt.Sprint(per), fmt.Sprint(parts), dtype)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("numpy check: %v\n%s", err, out)
	}
}

// readParquet reads every row of a parquet file as column name -> value.
func readParquet(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	cols := pf.Schema().Columns()
	r := parquet.NewReader(pf)
	defer r.Close()
	var out []map[string]any
	buf := make([]parquet.Row, 7)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			m := map[string]any{}
			for _, v := range row {
				name := cols[v.Column()][0]
				if v.Kind() == parquet.Int64 {
					m[name] = v.Int64()
				} else {
					m[name] = string(v.ByteArray())
				}
			}
			out = append(out, m)
		}
		if err != nil {
			break
		}
	}
	if int64(len(out)) != pf.NumRows() {
		t.Fatalf("%s: read %d rows of %d", path, len(out), pf.NumRows())
	}
	return out
}

// h5Column reads a 1-D dataset whole (nil when absent).
func h5Column(t *testing.T, path, name string) []any {
	t.Helper()
	f, err := h5.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ok, _ := f.Has(name); !ok {
		return nil
	}
	d, err := f.OpenDataset(name, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var out []any
	if d.Kind() == h5.Int64 {
		v, err := d.ReadInt64(0, int(d.Rows()))
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range v {
			out = append(out, x)
		}
		return out
	}
	s, err := d.ReadStrings(0, int(d.Rows()))
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range s {
		out = append(out, x)
	}
	return out
}

// checkParquet compares the metadata parts, concatenated, with the file's datasets: each
// parquet column with its dataset, and no other columns.
func checkParquet(t *testing.T, h5path, dir string, per int64, parts int, columns map[string]string) {
	t.Helper()
	var rows []map[string]any
	for k := 0; k < parts; k++ {
		part := readParquet(t, MetadataPath(dir, k))
		if k < parts-1 && int64(len(part)) != per {
			t.Fatalf("metadata_%d has %d rows, want %d", k, len(part), per)
		}
		rows = append(rows, part...)
	}
	for col, dataset := range columns {
		want := h5Column(t, h5path, dataset)
		if len(want) != len(rows) {
			t.Fatalf("%d metadata rows, %s has %d", len(rows), dataset, len(want))
		}
		for i := range want {
			if rows[i][col] != want[i] {
				t.Fatalf("row %d: %s = %#v, %s has %#v", i, col, rows[i][col], dataset, want[i])
			}
		}
	}
	for _, r := range rows {
		if len(r) != len(columns) {
			t.Fatalf("metadata row %v: want columns %v", r, columns)
		}
	}
}

func TestExportFloat16(t *testing.T) {
	tmp := t.TempDir()
	path := writeRun(t, filepath.Join(tmp, "run"), 23, "float16", true) // 18 rows, 5 failures
	out := filepath.Join(tmp, "export")
	res, err := NPY(context.Background(), path, Options{Dir: out, RowsPerPart: 4})
	if err != nil {
		t.Fatal(err)
	}
	// The sink writes widths and heights in newer versions.
	cols, columns := []string{"url", "image_id"}, map[string]string{"url": "urls", "image_id": "image_ids"}
	if h5Column(t, path, "widths") != nil {
		cols = append(cols, "width", "height")
		columns["width"], columns["height"] = "widths", "heights"
	}
	if res.Rows != 18 || res.Dim != testDim || res.Dtype != "float16" || res.Parts != 5 || !slices.Equal(res.Columns, cols) {
		t.Fatalf("result %+v", res)
	}
	checkNPY(t, path, out, 4, 5, "float16")
	checkParquet(t, path, out, 4, 5, columns)
	if _, err := os.Stat(EmbPath(out, 5)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("part 5: %v", err)
	}

	// float32 on request, and a rerun over the export with fewer parts removes the others.
	res, err = NPY(context.Background(), path, Options{Dir: out, RowsPerPart: 7, Dtype: "float32"})
	if err != nil || res.Parts != 3 || res.Dtype != "float32" {
		t.Fatalf("rerun: %+v %v", res, err)
	}
	checkNPY(t, path, out, 7, 3, "float32")
	checkParquet(t, path, out, 7, 3, columns)
	for _, d := range []string{EmbDir, MetadataDir} {
		ents, _ := os.ReadDir(filepath.Join(out, d))
		if len(ents) != 3 {
			t.Errorf("%s holds %d files after the rerun, want 3 (no stale parts, no .tmp)", d, len(ents))
		}
	}
}

func TestExportCarriedColumns(t *testing.T) {
	tmp := t.TempDir()
	path := filepath.Join(tmp, "carried.h5")
	writeCarried(t, path, 10)
	out := filepath.Join(tmp, "x")
	res, err := NPY(context.Background(), path, Options{Dir: out, RowsPerPart: 3, Dtype: "float16"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Parts != 4 || res.Dtype != "float16" || !slices.Equal(res.Columns, []string{"url", "caption", "text", "width", "height"}) {
		t.Fatalf("result %+v", res)
	}
	checkNPY(t, path, out, 3, 4, "float16")
	checkParquet(t, path, out, 3, 4, map[string]string{"url": "urls", "caption": "caption", "text": "text", "width": "widths", "height": "heights"})
}

func TestExportEmptyAndDefaultParts(t *testing.T) {
	tmp := t.TempDir()
	path := filepath.Join(tmp, "empty.h5")
	writeCarried(t, path, 0)
	res, err := NPY(context.Background(), path, Options{Dir: filepath.Join(tmp, "e")})
	if err != nil || res.Parts != 1 || res.Rows != 0 {
		t.Fatalf("empty file: %+v %v", res, err)
	}
	checkNPY(t, path, filepath.Join(tmp, "e"), DefaultRowsPerPart, 1, "float32")
}

func TestNPYHeader(t *testing.T) {
	for _, rows := range []int64{0, 7, 1 << 40} {
		h, err := NPYHeader("<f2", rows, 768)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("{'descr': '<f2', 'fortran_order': False, 'shape': (%d, 768), }", rows)
		if len(h)%64 != 0 || string(h[:8]) != npyMagic || int(h[8])|int(h[9])<<8 != len(h)-10 ||
			!strings.HasPrefix(string(h[10:]), want) || h[len(h)-1] != '\n' {
			t.Fatalf("header %q", h)
		}
	}
}

func TestExportErrors(t *testing.T) {
	tmp := t.TempDir()
	if _, err := NPY(context.Background(), filepath.Join(tmp, "missing.h5"), Options{Dir: tmp}); !errors.Is(err, outfile.ErrInput) {
		t.Errorf("missing file: %v", err)
	}
	path := filepath.Join(tmp, "c.h5")
	writeCarried(t, path, 3)
	blocker := filepath.Join(tmp, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NPY(context.Background(), path, Options{Dir: filepath.Join(blocker, "sub")}); !errors.Is(err, outfile.ErrOutput) {
		t.Errorf("output below a file: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := filepath.Join(tmp, "cancelled")
	if _, err := NPY(ctx, path, Options{Dir: out}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(out, EmbDir)); len(ents) != 0 {
		t.Errorf("a cancelled export left %d files", len(ents))
	}
}
