// merge_test.go: merging shard outputs restores input order; shards of one run are checked
// (each once, all present unless AllowMissing, same settings); files of several inputs keep
// every dataset and record each row's input; Find expands folders and patterns. The inputs
// are final files written by package sink (hence an external test package: sink imports merge).
package merge_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/cgo/h5"
	"github.com/clipd/clipd/internal/pipeline/item"
	"github.com/clipd/clipd/internal/pipeline/merge"
	"github.com/clipd/clipd/internal/pipeline/outfile"
	"github.com/clipd/clipd/internal/pipeline/sink/sinktest"
)

const testDim = 8

func testAttrs(dtype, shard string) outfile.Attrs {
	return outfile.Attrs{Model: "ViT-B/32", WeightsSHA256: "abc", Preprocess: "exact", Version: "test", Input: "list.txt",
		InputFingerprint: "sha256:00 size:1", EmbedDim: testDim, Dtype: dtype, Shard: shard}
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
// fails when L%5 == 0), with image ids when ids.
func writeShard(t *testing.T, dir string, lines []int64, attrs outfile.Attrs, ids bool) string {
	t.Helper()
	var rows []sinktest.Row
	for seq, l := range lines {
		r := sinktest.Row{Item: item.Item{Seq: int64(seq), Line: l, URL: fmt.Sprintf("http://h/u%d", l)}, Embedding: embOf(l)}
		if ids {
			r.Item.ImageID = fmt.Sprint(l)
		}
		if l%5 == 0 {
			r.Fail = "timeout"
		}
		rows = append(rows, r)
	}
	return sinktest.WriteRun(t, dir, attrs, ids, 3, rows)
}

// table reads a whole table of path: urls, ids, lines, input index.
func table(t *testing.T, path string, failed bool) (urls, ids []string, lines, index []int64) {
	t.Helper()
	f, err := h5.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tb := outfile.WithInputIndex(outfile.EmbeddedTable(true, false, h5.Float32, testDim))
	if failed {
		tb = outfile.WithInputIndex(outfile.FailedTable(true, false))
	}
	tf, n, err := outfile.OpenTable(f, tb, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tf.Close()
	b := tf.Table().NewBlock()
	if err := tf.Read(b, 0, int(n)); err != nil {
		t.Fatal(err)
	}
	return b.Strs[outfile.ColURLs], b.Strs[outfile.ColIDs], b.Ints[outfile.ColLines], b.Ints[outfile.ColInput]
}

func TestMergeShards(t *testing.T) {
	tmp := t.TempDir()
	a := writeShard(t, filepath.Join(tmp, "a"), []int64{2, 4, 6, 8, 10, 12}, testAttrs("float32", "0/2"), true)
	b := writeShard(t, filepath.Join(tmp, "b"), []int64{3, 5, 7, 9, 11}, testAttrs("float32", "1/2"), true)
	out := filepath.Join(tmp, "merged.h5")
	st, err := merge.Files(context.Background(), []string{a, b, a}, out, merge.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if !st.ByLine || st.Inputs != 2 || st.DistinctInputs != 1 || st.Rows != 9 || st.Failures != 2 || st.Shard != "0/1" {
		t.Fatalf("stats = %+v", st)
	}
	urls, ids, _, index := table(t, out, false)
	var exp []string
	for l := int64(2); l <= 12; l++ {
		if l%5 != 0 {
			exp = append(exp, fmt.Sprintf("http://h/u%d", l))
		}
	}
	if fmt.Sprint(urls) != fmt.Sprint(exp) || ids[0] != "2" || index != nil {
		t.Fatalf("urls = %v ids = %v index = %v, want %v", urls, ids, index, exp)
	}
	fu, _, _, _ := table(t, out, true)
	if fmt.Sprint(fu) != "[http://h/u5 http://h/u10]" {
		t.Fatalf("failed urls = %v", fu)
	}
	f, _ := outfile.Open(out)
	attrs, _ := outfile.ReadAttrs(f)
	has, _ := f.Has("inputs")
	f.Close()
	if attrs.Input != "list.txt" || attrs.Shard != "0/1" || attrs.InputFingerprint != "sha256:00 size:1" || has {
		t.Fatalf("merged attrs %+v (inputs datasets: %v)", attrs, has)
	}

	// different dtype: refused
	c := writeShard(t, filepath.Join(tmp, "c"), []int64{1}, testAttrs("float16", "0/1"), true)
	if _, err := merge.Files(context.Background(), []string{a, c}, filepath.Join(tmp, "x.h5"), merge.Options{}); !errors.Is(err, outfile.ErrMismatch) {
		t.Fatalf("merge float32 + float16 = %v", err)
	}
}

func TestMergeRefusesOtherRuns(t *testing.T) {
	tmp := t.TempDir()
	s0 := writeShard(t, filepath.Join(tmp, "s0"), []int64{1, 2}, testAttrs("float32", "0/3"), true)
	s1 := writeShard(t, filepath.Join(tmp, "s1"), []int64{3}, testAttrs("float32", "1/3"), true)
	again := writeShard(t, filepath.Join(tmp, "again"), []int64{3, 4}, testAttrs("float32", "1/3"), true)
	limited := testAttrs("float32", "2/3")
	limited.Limit = 100
	lim := writeShard(t, filepath.Join(tmp, "lim"), []int64{6}, limited, true)
	changed := testAttrs("float32", "2/3")
	changed.InputFingerprint = "sha256:11 size:2"
	chg := writeShard(t, filepath.Join(tmp, "chg"), []int64{6}, changed, true)
	eight := writeShard(t, filepath.Join(tmp, "eight"), []int64{6}, testAttrs("float32", "2/8"), true)
	out := filepath.Join(tmp, "out.h5")
	for _, c := range []struct {
		files []string
		want  string
	}{
		{[]string{s0, s1, again}, "merge: " + s1 + " and " + again + " both hold shard 1/3 of list.txt: merge each shard once (leave one of them out)"},
		{[]string{s0, lim}, "merge: " + s0 + " and " + lim + " are runs of list.txt with different limit (0 vs 100): merge the shards of one run only (rerun the odd one with the run's flags)"},
		{[]string{s0, chg}, "merge: " + s0 + " and " + chg + " are runs of list.txt with different input_fingerprint (sha256:00 size:1 vs sha256:11 size:2): the input changed between the runs; rerun every shard on one version of it"},
		{[]string{s0, eight}, "merge: " + s0 + " and " + eight + " are runs of list.txt with different shard counts (3 vs 8): merge the shards of one run only (rerun the odd one with the run's flags)"},
		{[]string{s0}, "list.txt: shards 1, 2 of 3 missing (have 0): finish them (rerun those array tasks, or clipd embed --shard 1/3 with the run's flags) and merge again"},
	} {
		_, err := merge.Files(context.Background(), c.files, out, merge.Options{})
		if !errors.Is(err, outfile.ErrMismatch) || err.Error() != c.want {
			t.Errorf("merge %v:\n got %v\nwant %s", c.files, err, c.want)
		}
	}
	var me *merge.MissingShardsError
	if _, err := merge.Files(context.Background(), []string{s0, s1}, out, merge.Options{}); !errors.As(err, &me) || fmt.Sprint(me.Missing) != "[2]" {
		t.Fatalf("two of three shards: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("a refused merge wrote %s", out)
	}
	st, err := merge.Files(context.Background(), []string{s1, s0}, out, merge.Options{AllowMissing: true})
	if err != nil || st.Shard != "0,1/3" || st.Rows != 3 {
		t.Fatalf("--allow-missing: %+v, %v", st, err)
	}
	// the partial merge and the last shard make the whole
	last := writeShard(t, filepath.Join(tmp, "last"), []int64{7}, testAttrs("float32", "2/3"), true)
	whole := filepath.Join(tmp, "whole.h5")
	if st, err := merge.Files(context.Background(), []string{out, last}, whole, merge.Options{}); err != nil || st.Shard != "0/1" || !st.ByLine {
		t.Fatalf("partial + last: %+v, %v", st, err)
	}
	if urls, _, _, _ := table(t, whole, false); fmt.Sprint(urls) != "[http://h/u1 http://h/u2 http://h/u3 http://h/u7]" {
		t.Fatalf("partial + last = %v", urls)
	}
}

// TestMergeInputs: files of different inputs, one with image ids and one without, keep
// both (empty ids where there were none), and record each row's input; merging that file
// again with a third input maps its indexes onto the new inputs datasets.
func TestMergeInputs(t *testing.T) {
	tmp := t.TempDir()
	aAttrs := testAttrs("float32", "0/1")
	bAttrs := testAttrs("float32", "0/1")
	bAttrs.Input, bAttrs.InputFingerprint, bAttrs.Limit, bAttrs.URLKind = "other.parquet", "", 3, "original"
	a := writeShard(t, filepath.Join(tmp, "a"), []int64{1, 2, 5}, aAttrs, true)
	b := writeShard(t, filepath.Join(tmp, "b"), []int64{7, 2, 10}, bAttrs, false) // u2 is in a too
	ab := filepath.Join(tmp, "ab.h5")
	st, err := merge.Files(context.Background(), []string{b, a}, ab, merge.Options{})
	if err != nil || st.DistinctInputs != 2 || st.Rows != 3 || st.DuplicateRows != 1 {
		t.Fatalf("merge of two inputs: %+v, %v", st, err)
	}
	urls, ids, _, index := table(t, ab, false)
	if fmt.Sprint(urls) != "[http://h/u7 http://h/u2 http://h/u1]" || fmt.Sprintf("%q", ids) != `["" "" "1"]` || fmt.Sprint(index) != "[0 0 1]" {
		t.Fatalf("rows %v ids %q index %v", urls, ids, index)
	}
	fu, _, _, findex := table(t, ab, true)
	if fmt.Sprint(fu) != "[http://h/u10 http://h/u5]" || fmt.Sprint(findex) != "[0 1]" {
		t.Fatalf("failures %v index %v", fu, findex)
	}
	f, _ := outfile.Open(ab)
	entries, err := outfile.ReadInputs(f)
	attrs, _ := outfile.ReadAttrs(f)
	f.Close()
	want := "[{other.parquet  0/1 3 original} {list.txt sha256:00 size:1 0/1 0 }]"
	if err != nil || fmt.Sprint(entries) != want {
		t.Fatalf("inputs = %v, %v; want %s", entries, err, want)
	}
	if attrs.Input != "merge of 2 inputs (see the inputs datasets)" || attrs.Shard != "0/1" || attrs.Limit != -1 || !strings.HasPrefix(attrs.URLKind, "mixed") {
		t.Fatalf("attrs %+v", attrs)
	}

	cAttrs := testAttrs("float32", "0/1")
	cAttrs.Input = "third.txt"
	c := writeShard(t, filepath.Join(tmp, "c"), []int64{8}, cAttrs, true)
	abc := filepath.Join(tmp, "abc.h5")
	if _, err := merge.Files(context.Background(), []string{c, ab}, abc, merge.Options{}); err != nil {
		t.Fatal(err)
	}
	urls, _, _, index = table(t, abc, false)
	if fmt.Sprint(urls) != "[http://h/u8 http://h/u7 http://h/u2 http://h/u1]" || fmt.Sprint(index) != "[0 1 1 2]" {
		t.Fatalf("re-merge: rows %v index %v", urls, index)
	}
	// ab's list.txt already holds its one shard: a second whole run of it is refused
	if _, err := merge.Files(context.Background(), []string{ab, a}, filepath.Join(tmp, "x.h5"), merge.Options{}); !errors.Is(err, outfile.ErrMismatch) ||
		!strings.Contains(err.Error(), "both hold shard 0/1 of list.txt") {
		t.Fatalf("merged file + one of its inputs: %v", err)
	}
}

func TestFind(t *testing.T) {
	tmp := t.TempDir()
	out := filepath.Join(tmp, "OUTPUT")
	var shards []string
	for i := 0; i < 3; i++ {
		dir := filepath.Join(out, outfile.ShardDirName(i, 4))
		if i == 1 {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(outfile.ChunkPath(dir, 0), nil, 0o644)
			continue
		}
		shards = append(shards, writeShard(t, dir, []int64{int64(i)}, testAttrs("float32", fmt.Sprintf("%d/4", i)), true))
	}
	single := writeShard(t, filepath.Join(tmp, "single"), []int64{1}, testAttrs("float32", "0/1"), true)
	found, err := merge.Find([]string{out, filepath.Join(out, "shard-*", outfile.FinalName), single})
	if err != nil || fmt.Sprint(found.Files) != fmt.Sprint(append(shards, single)) || len(found.Unfinished) != 1 || found.Unfinished[0].Index != 1 {
		t.Fatalf("Find = %+v, %v", found, err)
	}
	unfinished := filepath.Join(tmp, "unfinished")
	os.MkdirAll(unfinished, 0o755)
	os.WriteFile(outfile.ChunkPath(unfinished, 0), nil, 0o644)
	os.WriteFile(outfile.ChunkPath(unfinished, 1), nil, 0o644)
	for arg, want := range map[string]string{
		unfinished:                     unfinished + " holds an unfinished run (2 chunk files): rerun the same clipd embed to finish it",
		tmp:                            tmp + ": no clipd output in this folder (no Images_Embedded.h5, no shard-*-of-*/Images_Embedded.h5); give clipd embed's output folder or its files",
		filepath.Join(tmp, "nope*.h5"): filepath.Join(tmp, "nope*.h5") + ": the pattern matches nothing; give clipd embed's output folder or its files",
	} {
		if _, err := merge.Find([]string{arg}); !errors.Is(err, outfile.ErrInput) || err.Error() != want {
			t.Errorf("Find(%s) = %v, want %s", arg, err, want)
		}
	}
	if _, err := merge.Find([]string{filepath.Join(tmp, "[")}); !errors.Is(err, filepath.ErrBadPattern) {
		t.Errorf("Find([) = %v", err)
	}
}
