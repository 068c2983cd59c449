// cmd_merge_test.go: `clipd merge` and `clipd inspect` on small files written through the
// sink package.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/pipeline/item"
	"github.com/clipd/clipd/internal/pipeline/sink"
)

// writeOutput writes a final file with one row per line in lines (failing lines%4 == 0).
func writeOutput(t *testing.T, dir string, lines []int64) string {
	t.Helper()
	attrs := sink.Attrs{Model: "m", EmbedDim: 4, Dtype: "float32", Input: "in.txt", Version: "test"}
	w, err := sink.Open(sink.Options{Dir: dir, ChunkSize: 2, Attrs: attrs, HasImageIDs: true})
	if err != nil {
		t.Fatal(err)
	}
	for seq, l := range lines {
		it := item.Item{Seq: int64(seq), Line: l, URL: fmt.Sprintf("http://h/%d", l), ImageID: fmt.Sprintf("id%d", l)}
		if l%4 == 0 {
			err = w.AddFailure(item.Failure{Item: it, Stage: "fetch", Reason: "http 404"})
		} else {
			err = w.Add(sink.Row{Item: it, Embedding: []float32{float32(l), 0.5, -1, 2}})
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

func TestMergeAndInspect(t *testing.T) {
	tmp := t.TempDir()
	a := writeOutput(t, filepath.Join(tmp, "a"), []int64{1, 3, 4, 5})
	b := writeOutput(t, filepath.Join(tmp, "b"), []int64{2, 3, 8})
	out := filepath.Join(tmp, "all.h5")
	var stdout strings.Builder
	if err := runMerge(context.Background(), mergeOptions{Inputs: []string{a, b}, Output: out, Stdout: &stdout}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "4 rows, 2 failures from 2 files (1 duplicate rows") {
		t.Fatalf("merge printed %q", stdout.String())
	}
	if err := runMerge(context.Background(), mergeOptions{Inputs: []string{a, out}, Output: out}); exitCode(err) != exitUsage {
		t.Fatalf("output among the inputs: %v", err)
	}

	stdout.Reset()
	if err := runInspect(context.Background(), inspectOptions{Path: out, Rows: 2, Stdout: &stdout}); err != nil {
		t.Fatal(err)
	}
	text := stdout.String()
	for _, want := range []string{"rows        4", "embed dim   4", "dtype       float32", "failures    2",
		"       2  http 404", "model           m", "normalized      false", "0  http://h/1  id1  [1 0.5 -1 2 ...]",
		"1  http://h/2  id2  [2 0.5 -1 2 ...]"} {
		if !strings.Contains(text, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "http://h/3") {
		t.Errorf("--rows 2 printed a third row:\n%s", text)
	}

	stdout.Reset()
	if err := runInspect(context.Background(), inspectOptions{Path: out, Rows: 10, JSON: true, Stdout: &stdout}); err != nil {
		t.Fatal(err)
	}
	var info sink.Info
	if err := json.Unmarshal([]byte(stdout.String()), &info); err != nil {
		t.Fatal(err)
	}
	if info.Rows != 4 || len(info.First) != 4 || info.First[2].URL != "http://h/3" || info.FailuresByReason[0].Count != 2 ||
		info.Attrs["embed_dim"] != float64(4) {
		t.Fatalf("inspect --json = %+v", info)
	}
	if err := runInspect(context.Background(), inspectOptions{Path: filepath.Join(tmp, "missing.h5"), Stdout: &stdout}); err == nil ||
		!strings.Contains(err.Error(), "missing.h5") {
		t.Fatalf("inspect of a missing file = %v", err)
	}
}
