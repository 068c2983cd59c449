// cmd_merge_test.go: `clipd merge` and `clipd inspect` on small files written through the
// sink package: their exit codes and one-line errors when a file is missing, not HDF5,
// does not match, or the output cannot be written; the shards of one run merged from their
// output folder equal the unsharded run, read back with h5py.
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
	"github.com/clipd/clipd/internal/pipeline/sink/sinktest"
	"github.com/clipd/clipd/internal/pipeline/source"
)

// testRunAttrs are the attributes of a test run of input over shard.
func testRunAttrs(input, shard string) outfile.Attrs {
	return outfile.Attrs{Model: "m", WeightsSHA256: "w", Preprocess: "exact", EmbedDim: 4, Dtype: "float32", Input: input,
		InputFingerprint: "sha256:0f size:9", Shard: shard, Version: "test"}
}

// writeOutput writes a final file with one row per line in lines (failing lines%4 == 0):
// a whole run of its own input, named after dir (dir a: a.txt), so that the files of two
// folders merge as two inputs.
func writeOutput(t *testing.T, dir string, lines []int64) string {
	t.Helper()
	return writeRun(t, dir, lines, testRunAttrs(filepath.Base(dir)+".txt", "0/1"), true)
}

func writeOutputDtype(t *testing.T, dir string, lines []int64, dtype string) string {
	t.Helper()
	a := testRunAttrs(filepath.Base(dir)+".txt", "0/1")
	a.Dtype = dtype
	return writeRun(t, dir, lines, a, true)
}

// writeRun writes a final file in dir (clipd embed's output folder) of the lines given
// (line L: URL http://h/L, image id idL when ids, failing when L%4 == 0).
func writeRun(t *testing.T, dir string, lines []int64, attrs outfile.Attrs, ids bool) string {
	t.Helper()
	var rows []sinktest.Row
	for seq, l := range lines {
		r := sinktest.Row{Item: item.Item{Seq: int64(seq), Line: l, URL: fmt.Sprintf("http://h/%d", l)}, Embedding: []float32{float32(l), 0.5, -1, 2}}
		if ids {
			r.Item.ImageID = fmt.Sprintf("id%d", l)
		}
		if l%4 == 0 {
			r.Fail = "http 404"
		}
		rows = append(rows, r)
	}
	return sinktest.WriteRun(t, dir, attrs, ids, 2, rows)
}

func TestMergeAndInspect(t *testing.T) {
	tmp := t.TempDir()
	a := writeRun(t, filepath.Join(tmp, "a"), []int64{1, 3, 4, 5}, testRunAttrs("a.txt", "0/1"), true)
	b := writeRun(t, filepath.Join(tmp, "b"), []int64{2, 3, 8}, testRunAttrs("b.txt", "0/1"), true)
	out := filepath.Join(tmp, "all.h5")
	var stdout strings.Builder
	if err := runMerge(context.Background(), mergeOptions{Inputs: []string{a, b}, Output: out, Stdout: &stdout}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "4 rows, 2 failures from 2 files of 2 inputs (1 duplicate rows") {
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
		"1  http://h/3  id3  [3 0.5 -1 2 ...]", "input           merge of 2 inputs (see the inputs datasets)",
		"inputs (input_index):", "  1  b.txt  shards 0/1  limit 0  url_kind \"\"  sha256:0f size:9"} {
		if !strings.Contains(text, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "http://h/5") {
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
	if info.Rows != 4 || len(info.First) != 4 || info.First[2].URL != "http://h/5" || len(info.Inputs) != 2 || info.FailuresByReason[0].Count != 2 ||
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
		{[]string{"inspect", tmp}, exitInput, "clipd: " + tmp + ": no clipd output in this folder (no Images_Embedded.h5); give a clipd output file or folder"},
		{[]string{"merge", "-o", out, missing}, exitInput, "clipd: " + missing + ": no such file or directory"},
		{[]string{"merge", "-o", out, good, notes}, exitInput, "clipd: " + notes + ": not an HDF5 file (or unreadable); give a clipd output file"},
		{[]string{"merge", "-o", out, good, half}, exitInput, "...inputs do not match: " + good + " has dtype float32, " + half + " has float16"},
		{[]string{"merge", "-o", underFile, good}, exitOutput, "clipd: writing " + notes + ": not a directory"},
		{[]string{"merge", missing, "-o", out}, exitInput, "clipd: " + missing + ": no such file or directory"},
		{[]string{"merge", good}, exitUsage, "...merge needs --output OUT.h5 unless its one argument is an output folder"},
		{[]string{"merge", "-o", out, good, filepath.Join(tmp, "[")}, exitUsage, "...syntax error in pattern; quote a glob such as 'OUTPUT/shard-*'"},
		{[]string{"merge", "-o", out, good, filepath.Join(tmp, "*.parquet")}, exitInput, "clipd: " + filepath.Join(tmp, "*.parquet") + ": the pattern matches nothing; give clipd embed's output folder or its files"},
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

// h5read reads every dataset and root attribute of path with h5py (strings decoded, arrays
// as lists), as h5py users will.
func h5read(t *testing.T, path string) (datasets map[string]any, attrs map[string]any) {
	t.Helper()
	const script = `
import h5py, json, sys
def plain(v):
    if hasattr(v, "tolist"): v = v.tolist()
    if isinstance(v, bytes): return v.decode()
    if isinstance(v, list): return [plain(x) for x in v]
    return v
with h5py.File(sys.argv[1], "r") as f:
    ds = {k: plain(f[k][:]) for k in f.keys()}
    json.dump({"datasets": ds, "attrs": {k: plain(v) for k, v in f.attrs.items()}}, sys.stdout)
`
	out, err := exec.Command("/usr/bin/python3", "-c", script, path).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		if strings.Contains(string(stderr), "No module named") {
			t.Skipf("h5py not available: %s", stderr)
		}
		t.Fatalf("h5py reading %s: %v\n%s", path, err, stderr)
	}
	var r struct{ Datasets, Attrs map[string]any }
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	return r.Datasets, r.Attrs
}

// writeShardedRun writes the n shards of lines 1..rows of input in.txt into out's shard
// folders, as clipd embed --shard i/n --output out does; it returns the shard files.
func writeShardedRun(t *testing.T, out string, rows, n int) []string {
	t.Helper()
	var files []string
	for i := 0; i < n; i++ {
		sh := source.Shard{Index: i, Count: n}
		var lines []int64
		for l := int64(1); l <= int64(rows); l++ {
			if sh.Contains(fmt.Sprintf("http://h/%d", l)) {
				lines = append(lines, l)
			}
		}
		files = append(files, writeRun(t, filepath.Join(out, outfile.ShardDirName(i, n)), lines, testRunAttrs("in.txt", sh.String()), true))
	}
	return files
}

// oneLine checks that stderr is the one line want (a substring when want starts with "...").
func checkOneErrorLine(t *testing.T, what string, code, wantCode int, stderr, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	ok := len(lines) == 1
	if w, sub := strings.CutPrefix(want, "..."); sub {
		ok = ok && strings.Contains(lines[0], w)
	} else {
		ok = ok && lines[0] == want
	}
	if code != wantCode || !ok {
		t.Errorf("%s: exit %d, want %d; stderr %q, want one line %q", what, code, wantCode, stderr, want)
	}
}

// TestMergeShardFolder: `clipd merge OUTPUT` joins the 4 shards of one run into
// OUTPUT/Images_Embedded.h5, which equals the unsharded run (rows, embeddings, ids, lines,
// failures, and the run's identity with shard 0/1).
func TestMergeShardFolder(t *testing.T) {
	tmp := t.TempDir()
	const rows = 60
	var all []int64
	for l := int64(1); l <= rows; l++ {
		all = append(all, l)
	}
	single := writeRun(t, filepath.Join(tmp, "single"), all, testRunAttrs("in.txt", "0/1"), true)
	out := filepath.Join(tmp, "OUTPUT")
	shards := writeShardedRun(t, out, rows, 4)

	code, stdout, stderr := runClipd("merge", out)
	merged := filepath.Join(out, outfile.FinalName)
	if code != exitOK || stderr != "" || stdout != merged+": 45 rows, 15 failures from 4 files (0 duplicate rows and 0 duplicate failures dropped)\n" {
		t.Fatalf("clipd merge OUTPUT: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	wantDS, wantAttrs := h5read(t, single)
	gotDS, gotAttrs := h5read(t, merged)
	if urls, _ := wantDS["urls"].([]any); len(urls) != 45 || len(wantDS) != 11 { // urls, embeddings, image_ids, lines, widths, heights and 5 failed_*
		t.Fatalf("the single run's datasets: %v (%d urls)", datasetNames(wantDS), len(urls))
	}
	if len(gotDS) != len(wantDS) {
		t.Errorf("merged datasets %v, single run %v", datasetNames(gotDS), datasetNames(wantDS))
	}
	for k, v := range wantDS {
		if fmt.Sprint(gotDS[k]) != fmt.Sprint(v) {
			t.Errorf("dataset %s: merged %v\nsingle run %v", k, gotDS[k], v)
		}
	}
	for k, v := range wantAttrs {
		if k != "created" && k != "clipd_version" && fmt.Sprint(gotAttrs[k]) != fmt.Sprint(v) {
			t.Errorf("attribute %s: merged %v, single run %v", k, gotAttrs[k], v)
		}
	}
	if gotAttrs["shard"] != "0/1" || gotAttrs["input"] != "in.txt" || gotAttrs["input_fingerprint"] != "sha256:0f size:9" {
		t.Errorf("merged identity %v", gotAttrs)
	}

	// a quoted glob of the shard folders and -o give the same file
	glob := filepath.Join(tmp, "glob.h5")
	if code, _, stderr := runClipd("merge", "-o", glob, filepath.Join(out, "shard-*")); code != exitOK {
		t.Fatalf("clipd merge -o glob.h5 'OUTPUT/shard-*': exit %d, %s", code, stderr)
	}
	if g, _ := h5read(t, glob); fmt.Sprint(g["urls"]) != fmt.Sprint(wantDS["urls"]) {
		t.Errorf("glob merge urls %v", g["urls"])
	}

	// a folder with only the whole run: nothing to merge
	code, stdout, _ = runClipd("merge", filepath.Join(tmp, "single"))
	if code != exitOK || !strings.HasSuffix(stdout, "is the whole run already ("+filepath.Join(tmp, "single")+" has no shard folders): nothing to merge\n") {
		t.Errorf("clipd merge SINGLE: exit %d, stdout %q", code, stdout)
	}

	// the same shard twice (a copy of shard 2 elsewhere): refused, naming both
	dup := writeRun(t, filepath.Join(tmp, "copy"), []int64{3}, testRunAttrs("in.txt", "2/4"), true)
	code, _, stderr = runClipd("merge", "-o", filepath.Join(tmp, "x.h5"), out, dup)
	checkOneErrorLine(t, "merge OUTPUT + a copy of shard 2", code, exitInput, stderr,
		"clipd: merge: "+shards[2]+" and "+dup+" both hold shard 2/4 of in.txt: merge each shard once (leave one of them out)")

	// a shard of the same input with other settings: refused, naming the attribute
	other := testRunAttrs("in.txt", "2/4")
	other.Limit = 10
	lim := writeRun(t, filepath.Join(tmp, "lim"), []int64{3}, other, true)
	code, _, stderr = runClipd("merge", "-o", filepath.Join(tmp, "x.h5"), shards[0], shards[1], lim, shards[3])
	checkOneErrorLine(t, "merge shards with another limit", code, exitInput, stderr,
		"clipd: merge: "+shards[0]+" and "+lim+" are runs of in.txt with different limit (0 vs 10): merge the shards of one run only (rerun the odd one with the run's flags)")
	if _, err := os.Stat(filepath.Join(tmp, "x.h5")); !os.IsNotExist(err) {
		t.Errorf("a refused merge wrote x.h5")
	}
}

// TestMergeMissingShards: a shard still running (chunk files only) is missing: refused with
// the indices and the remedy, or merged without it under --allow-missing.
func TestMergeMissingShards(t *testing.T) {
	tmp := t.TempDir()
	out := filepath.Join(tmp, "OUTPUT")
	shards := writeShardedRun(t, out, 30, 4)
	if err := os.Remove(shards[2]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(outfile.ChunkPath(filepath.Dir(shards[2]), 0), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runClipd("merge", out)
	checkOneErrorLine(t, "merge with shard 2 missing", code, exitInput, stderr,
		"clipd: merge: in.txt: shard 2 of 4 missing (have 0, 1, 3): finish it (rerun that array task, or clipd embed --shard 2/4 with the run's flags) and merge again"+
			" (unfinished: shard-00002-of-00004 has 1 chunk files), or pass --allow-missing to merge the 3 present")
	if stdout != "" {
		t.Errorf("stdout %q", stdout)
	}
	code, stdout, stderr = runClipd("merge", "--allow-missing", out)
	if code != exitOK || !strings.Contains(stdout, "from 3 files (shards 0,1,3/4 only)") {
		t.Fatalf("--allow-missing: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if _, attrs := h5read(t, filepath.Join(out, outfile.FinalName)); attrs["shard"] != "0,1,3/4" {
		t.Errorf("partial merge shard attribute %v", attrs["shard"])
	}
}

// TestMergeInputsKeepsIDs: files of different inputs, one without image ids: every row keeps
// its image id ("" where there was none) and its input (input_index into the inputs datasets).
func TestMergeInputsKeepsIDs(t *testing.T) {
	tmp := t.TempDir()
	a := writeRun(t, filepath.Join(tmp, "a"), []int64{1, 2, 4}, testRunAttrs("a.parquet", "0/1"), true)
	bAttrs := testRunAttrs("b.txt", "0/1")
	bAttrs.InputFingerprint, bAttrs.Limit = "sha256:bb size:2", 5
	b := writeRun(t, filepath.Join(tmp, "b"), []int64{5, 6, 8}, bAttrs, false)
	out := filepath.Join(tmp, "ab.h5")
	if code, _, stderr := runClipd("merge", "-o", out, a, b); code != exitOK {
		t.Fatalf("merge: exit %d, %s", code, stderr)
	}
	ds, attrs := h5read(t, out)
	for k, want := range map[string]string{
		"urls": "[http://h/1 http://h/2 http://h/5 http://h/6]", "image_ids": "[id1 id2  ]", "input_index": "[0 0 1 1]",
		"failed_urls": "[http://h/4 http://h/8]", "failed_image_ids": "[id4 ]", "failed_input_index": "[0 1]",
		"inputs": "[a.parquet b.txt]", "inputs_fingerprint": "[sha256:0f size:9 sha256:bb size:2]", "inputs_shards": "[0/1 0/1]",
		"inputs_limit": "[0 5]", "inputs_url_kind": "[ ]",
	} {
		if got := fmt.Sprint(ds[k]); got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}
	if attrs["input"] != "merge of 2 inputs (see the inputs datasets)" || attrs["limit"] != float64(-1) {
		t.Errorf("attrs %v", attrs)
	}
}

func datasetNames(m map[string]any) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}
