// text_test.go: a file with text_embeddings exports text_emb/text_emb_K.npy beside
// img_emb/img_emb_K.npy, row for row (as clip-retrieval's --enable_text writes them); an
// export of a file without them removes an earlier export's text parts.
package export

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/cgo/h5"
	"github.com/clipd/clipd/internal/pipeline/item"
	"github.com/clipd/clipd/internal/pipeline/outfile"
	"github.com/clipd/clipd/internal/pipeline/sink/sinktest"
)

// writeTextRun writes a final file with text embeddings (text column caption): line l's
// text embedding is -l - j/7, its image embedding l + j/3; every fourth line fails.
func writeTextRun(t *testing.T, dir string, lines int, dtype string) string {
	t.Helper()
	attrs := outfile.Attrs{Model: "m", WeightsSHA256: "w", Preprocess: "exact", EmbedDim: testDim, Dtype: dtype,
		Input: "in.csv", Shard: "0/1", Version: "test", TextColumn: "caption"}
	var rows []sinktest.Row
	for l := 1; l <= lines; l++ {
		r := sinktest.Row{Item: item.Item{Seq: int64(l - 1), Line: int64(l), URL: fmt.Sprintf("http://h/%d.jpg", l)}}
		if l%4 == 0 {
			r.Fail = "http 404"
		} else {
			r.Embedding, r.TextEmbedding = make([]float32, testDim), make([]float32, testDim)
			for j := range r.Embedding {
				r.Embedding[j] = float32(l) + float32(j)/3
				r.TextEmbedding[j] = -float32(l) - float32(j)/7
			}
		}
		rows = append(rows, r)
	}
	return sinktest.WriteRun(t, dir, attrs, false, 4, rows)
}

func TestExportTextEmbeddings(t *testing.T) {
	tmp := t.TempDir()
	for _, dtype := range []string{"float32", "float16"} {
		path := writeTextRun(t, filepath.Join(tmp, "run-"+dtype), 22, dtype) // 17 rows
		out := filepath.Join(tmp, "export-"+dtype)
		res, err := NPY(context.Background(), path, Options{Dir: out, RowsPerPart: 5})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Text || res.Parts != 4 || res.Rows != 17 {
			t.Fatalf("result %+v", res)
		}
		checkNPY(t, path, out, 5, 4, dtype)
		const script = `
import sys, numpy as np, h5py
path, out, dtype = sys.argv[1], sys.argv[2], sys.argv[3]
with h5py.File(path, "r") as f:
    text = f["text_embeddings"][:]
    urls = list(f["urls"].asstr()[:])
img = np.concatenate([np.load("%s/img_emb/img_emb_%d.npy" % (out, k)) for k in range(4)])
got = np.concatenate([np.load("%s/text_emb/text_emb_%d.npy" % (out, k)) for k in range(4)])
assert got.dtype == img.dtype == np.dtype(dtype) and got.shape == img.shape == (17, 5), (got.dtype, got.shape, img.shape)
assert np.array_equal(got, text)
lines = [int(u.rsplit("/", 1)[1].split(".")[0]) for u in urls]
want = np.array([[-l - j / 7 for j in range(5)] for l in lines], np.float32).astype(dtype)
assert np.array_equal(got, want)
assert [len(np.load("%s/text_emb/text_emb_%d.npy" % (out, k))) for k in range(4)] == [5, 5, 5, 2]
print("ok")
`
		if b, err := exec.Command("/usr/bin/python3", "-c", script, path, out, dtype).CombinedOutput(); err != nil {
			t.Fatalf("numpy check: %v\n%s", err, b)
		}
	}

	// An export of a file without text embeddings into the same folder: its text parts go.
	plain := writeRun(t, filepath.Join(tmp, "plain"), 6, "float32", false)
	out := filepath.Join(tmp, "export-float32")
	res, err := NPY(context.Background(), plain, Options{Dir: out})
	if err != nil || res.Text {
		t.Fatalf("plain: %+v %v", res, err)
	}
	if ents, err := os.ReadDir(filepath.Join(out, TextEmbDir)); err != nil || len(ents) != 0 {
		t.Errorf("text_emb after a plain export: %v %v", ents, err)
	}
	if _, err := os.Stat(TextEmbPath(out, 0)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("text_emb_0.npy: %v", err)
	}
}

// A file whose text_embeddings do not match its embeddings (fewer rows, another dim) is
// damaged: export and inspect refuse it, naming the dataset.
func TestDamagedTextEmbeddings(t *testing.T) {
	for _, c := range []struct {
		name       string
		rows, cols int
	}{{"fewer rows", 2, testDim}, {"another dim", 3, testDim + 1}} {
		path := filepath.Join(t.TempDir(), "d.h5")
		f, err := h5.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		var ds []*h5.Dataset
		mk := func(name string, kind h5.Kind, rows, cols int) *h5.Dataset {
			d, err := f.CreateDataset(name, h5.DatasetOptions{Kind: kind, Rows: int64(rows), Cols: cols, ChunkRows: 4})
			if err != nil {
				t.Fatal(err)
			}
			ds = append(ds, d)
			return d
		}
		for _, err := range []error{
			mk("urls", h5.String, 3, 0).WriteStrings(0, []string{"a", "b", "c"}),
			mk("embeddings", h5.Float32, 3, testDim).WriteFloat32(0, make([]float32, 3*testDim)),
			mk(outfile.TextEmbeddings, h5.Float32, c.rows, c.cols).WriteFloat32(0, make([]float32, c.rows*c.cols)),
			f.SetAttr("text_column", "caption"),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range ds {
			d.Close()
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := NPY(context.Background(), path, Options{Dir: t.TempDir()}); !errors.Is(err, outfile.ErrInput) || !strings.Contains(err.Error(), "text_embeddings is") {
			t.Errorf("%s: export: %v", c.name, err)
		}
		if _, err := outfile.Inspect(context.Background(), path, 5, 4); !errors.Is(err, outfile.ErrInput) || !strings.Contains(err.Error(), "text_embeddings has") {
			t.Errorf("%s: inspect: %v", c.name, err)
		}
	}
}
