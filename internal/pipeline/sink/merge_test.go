// merge_test.go: merging two shard outputs restores input order, drops a URL present in
// both, and refuses files of different settings.
package sink

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/clipd/clipd/internal/cgo/h5"
	"github.com/clipd/clipd/internal/pipeline/item"
)

// writeShard writes a final file of the input lines in lines (line L has URL u<L>, and
// fails when L%5 == 0); extra rows are added after them.
func writeShard(t *testing.T, dir string, lines []int64, attrs Attrs) string {
	t.Helper()
	opt := Options{Dir: dir, ChunkSize: 3, Attrs: attrs, HasImageIDs: true, Key: RunKey{Input: attrs.Input}}
	w, err := Open(opt)
	if err != nil {
		t.Fatal(err)
	}
	for seq, l := range lines {
		it := item.Item{Seq: int64(seq), Line: l, URL: fmt.Sprintf("http://h/u%d", l), ImageID: fmt.Sprint(l)}
		if l%5 == 0 {
			err = w.AddFailure(item.Failure{Item: it, Stage: "fetch", Reason: "timeout"})
		} else {
			err = w.Add(Row{Item: it, Embedding: embOf(l)})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	p, err := Finalize(dir, attrs)
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
	st, err := Merge(context.Background(), []string{a, b}, out, MergeOptions{Version: "test"})
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
	et, n, err := openTable(f, embeddedTable(true, false, h5.Float32, testDim), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer et.close()
	urls, _ := et.ds[colURLs].ReadStrings(0, int(n))
	emb, _ := et.ds[colValues].ReadFloat32(0, int(n))
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
	ft, m, err := openTable(f, failedTable(true, false), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ft.close()
	fu, _ := ft.ds[colURLs].ReadStrings(0, int(m))
	if len(fu) != 2 || fu[0] != "http://h/u5" || fu[1] != "http://h/u10" {
		t.Fatalf("failed urls = %v", fu)
	}

	// different dtype: refused
	c := writeShard(t, filepath.Join(tmp, "c"), []int64{1}, testAttrs("float16"))
	if _, err := Merge(context.Background(), []string{a, c}, filepath.Join(tmp, "x.h5"), MergeOptions{}); !errors.Is(err, ErrMismatch) {
		t.Fatalf("merge float32 + float16 = %v", err)
	}
}
