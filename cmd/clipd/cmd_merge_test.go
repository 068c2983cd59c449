// cmd_merge_test.go: `clipd merge` and `clipd inspect` on small files written through the
// sink package, and their exit codes and one-line errors when a file is missing, not HDF5,
// does not match, or the output cannot be written.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/pipeline/item"
	"github.com/clipd/clipd/internal/pipeline/outfile"
	"github.com/clipd/clipd/internal/pipeline/sink"
)

// writeOutput writes a final file with one row per line in lines (failing lines%4 == 0).
func writeOutput(t *testing.T, dir string, lines []int64) string {
	t.Helper()
	return writeOutputDtype(t, dir, lines, "float32")
}

func writeOutputDtype(t *testing.T, dir string, lines []int64, dtype string) string {
	t.Helper()
	attrs := outfile.Attrs{Model: "m", EmbedDim: 4, Dtype: dtype, Input: "in.txt", Version: "test"}
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
	var info outfile.Info
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

// runClipd runs the app in-process and returns its exit code, stdout and stderr.
func runClipd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"clipd"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestMergeInspectExitCodes(t *testing.T) {
	tmp := t.TempDir()
	good := writeOutput(t, filepath.Join(tmp, "a"), []int64{1, 2, 3})
	half := writeOutputDtype(t, filepath.Join(tmp, "h"), []int64{5, 6}, "float16")
	notes := filepath.Join(tmp, "notes.txt")
	if err := os.WriteFile(notes, []byte("remember the milk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(tmp, "missing.h5")
	out := filepath.Join(tmp, "out.h5")
	underFile := filepath.Join(notes, "out.h5") // a path under a regular file: fails even as root

	for _, c := range []struct {
		args []string
		code int
		line string // the whole stderr line, or a substring when it starts with "..."
	}{
		{[]string{"inspect", notes}, exitInput, "clipd: " + notes + ": not an HDF5 file (or unreadable); give a clipd output file"},
		{[]string{"inspect", missing}, exitInput, "clipd: " + missing + ": no such file or directory"},
		{[]string{"inspect", tmp}, exitInput, "clipd: " + tmp + ": is a directory; give a clipd output file"},
		{[]string{"merge", "-o", out, missing}, exitInput, "clipd: " + missing + ": no such file or directory"},
		{[]string{"merge", "-o", out, good, notes}, exitInput, "clipd: " + notes + ": not an HDF5 file (or unreadable); give a clipd output file"},
		{[]string{"merge", "-o", out, good, half}, exitInput, "...inputs do not match: " + good + " has dtype float32, " + half + " has float16"},
		{[]string{"merge", "-o", underFile, good}, exitOutput, "clipd: writing " + notes + ": not a directory"},
		{[]string{"merge", missing, "-o", out}, exitUsage, `...clipd: "-o" after the arguments: flags go before them`},
		{[]string{"merge", good}, exitUsage, "...merge needs --output OUT.h5"},
	} {
		code, stdout, stderr := runClipd(c.args...)
		lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
		ok := len(lines) == 1 && strings.HasPrefix(lines[0], "clipd: ")
		if want, sub := strings.CutPrefix(c.line, "..."); sub {
			ok = ok && strings.Contains(lines[0], want)
		} else {
			ok = ok && lines[0] == c.line
		}
		if code != c.code || !ok || stdout != "" {
			t.Errorf("clipd %s: exit %d, want %d; stderr %q, want one line %q; stdout %q", strings.Join(c.args, " "), code, c.code, stderr, c.line, stdout)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed merge left %s: %v", out, err)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 3 { // a, h, notes.txt, nothing else (no out.h5.tmp)
		t.Errorf("files left in %s: %v", tmp, ents)
	}
}

// TestMergeDiskFull merges onto a full tmpfs (root only): exit 5, one line naming the file
// and the cause, and no temporary left.
func TestMergeDiskFull(t *testing.T) {
	if raceBuild() {
		// HDF5 keeps the file whose close failed open until its atexit handler, which
		// crashes the race runtime's exit (see sink's TestDiskFull).
		t.Skip("skipped under -race")
	}
	tmp := t.TempDir()
	lines := make([]int64, 40)
	for i := range lines {
		lines[i] = int64(i + 1)
	}
	in := writeOutput(t, filepath.Join(tmp, "a"), lines)
	full := filepath.Join(tmp, "full")
	if err := os.Mkdir(full, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", full).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v %s", err, out)
	}
	defer exec.Command("umount", "-l", full).Run()
	code, _, stderr := runClipd("merge", "-o", filepath.Join(full, "all.h5"), in)
	lines2 := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if code != exitOutput || len(lines2) != 1 || !strings.HasPrefix(lines2[0], "clipd: writing "+filepath.Join(full, "all.h5")) ||
		!strings.HasSuffix(lines2[0], ": no space left on device") {
		t.Fatalf("merge onto a full disk: exit %d, stderr %q", code, stderr)
	}
	if ents, _ := os.ReadDir(full); len(ents) != 0 {
		t.Fatalf("files left on the full disk: %v", ents)
	}
}

// raceBuild reports whether the test binary was built with -race.
func raceBuild() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}
