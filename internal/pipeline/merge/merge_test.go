// merge_test.go: merging two shard outputs restores input order, drops a URL present in
// both, and refuses files of different settings; the inputs are final files written by
// package sink (hence an external test package: sink imports merge).
package merge_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/clipd/clipd/internal/cgo/h5"
	"github.com/clipd/clipd/internal/pipeline/item"
	"github.com/clipd/clipd/internal/pipeline/merge"
	"github.com/clipd/clipd/internal/pipeline/outfile"
	"github.com/clipd/clipd/internal/pipeline/sink"
)

const testDim = 8

func testAttrs(dtype string) outfile.Attrs {
	return outfile.Attrs{Model: "ViT-B/32", WeightsSHA256: "abc", Preprocess: "exact", Version: "test", Input: "list.txt",
		EmbedDim: testDim, Dtype: dtype}
}

// embOf is the test embedding of line l.
func embOf(l int64) []float32 {
	e := make([]float32, testDim)
	for i := range e {
		e[i] = float32(l)*10 + float32(i)*0.25
	}
	return e
}

// writeShard writes a final file of the input lines in lines (line L has URL u<L>, and
// fails when L%5 == 0); extra rows are added after them.
func writeShard(t *testing.T, dir string, lines []int64, attrs outfile.Attrs) string {
	t.Helper()
	opt := sink.Options{Dir: dir, ChunkSize: 3, Attrs: attrs, HasImageIDs: true}
	w, err := sink.Open(opt)
	if err != nil {
		t.Fatal(err)
	}
	for seq, l := range lines {
		it := item.Item{Seq: int64(seq), Line: l, URL: fmt.Sprintf("http://h/u%d", l), ImageID: fmt.Sprint(l)}
		if l%5 == 0 {
			err = w.AddFailure(item.Failure{Item: it, Stage: "fetch", Reason: "timeout"})
		} else {
			err = w.Add(sink.Row{Item: it, Embedding: embOf(l)})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	p, err := sink.Finalize(dir, attrs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMergeShards(t *testing.T) {
	tmp := t.TempDir()
	a := writeShard(t, filepath.Join(tmp, "a"), []int64{2, 4, 6, 8, 10, 12, 7}, testAttrs("float32"))
	b := writeShard(t, filepath.Join(tmp, "b"), []int64{3, 5, 7, 9, 11}, testAttrs("float32"))
	out := filepath.Join(tmp, "merged.h5")
	st, err := merge.Files(context.Background(), []string{a, b}, out, merge.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	// line 7 is in both shards: kept once
	if !st.ByLine || st.Rows != 9 || st.Failures != 2 || st.DuplicateRows != 1 {
		t.Fatalf("stats = %+v", st)
	}
	f, err := h5.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	et, n, err := outfile.OpenTable(f, outfile.EmbeddedTable(true, false, h5.Float32, testDim), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer et.Close()
	urls, _ := et.Dataset(outfile.ColURLs).ReadStrings(0, int(n))
	emb, _ := et.Dataset(outfile.ColValues).ReadFloat32(0, int(n))
	var exp []int64
	for l := int64(2); l <= 12; l++ {
		if l%5 != 0 {
			exp = append(exp, l)
		}
	}
	if len(urls) != len(exp) {
		t.Fatalf("urls = %v, want lines %v", urls, exp)
	}
	for i, l := range exp {
		if urls[i] != fmt.Sprintf("http://h/u%d", l) || emb[i*testDim+1] != embOf(l)[1] {
			t.Fatalf("row %d = %s, want line %d", i, urls[i], l)
		}
	}
	ft, m, err := outfile.OpenTable(f, outfile.FailedTable(true, false), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ft.Close()
	fu, _ := ft.Dataset(outfile.ColURLs).ReadStrings(0, int(m))
	if len(fu) != 2 || fu[0] != "http://h/u5" || fu[1] != "http://h/u10" {
		t.Fatalf("failed urls = %v", fu)
	}

	// different dtype: refused
	c := writeShard(t, filepath.Join(tmp, "c"), []int64{1}, testAttrs("float16"))
	if _, err := merge.Files(context.Background(), []string{a, c}, filepath.Join(tmp, "x.h5"), merge.Options{}); !errors.Is(err, outfile.ErrMismatch) {
		t.Fatalf("merge float32 + float16 = %v", err)
	}
}
