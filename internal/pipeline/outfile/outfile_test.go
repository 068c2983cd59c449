// outfile_test.go: error classes and one-line messages of Open, WrapRead and WrapWrite; a
// File's Commit (rows, attributes, rename) and Abort; chunk names and temporaries.
package outfile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/clipd/clipd/internal/cgo/h5"
)

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notes := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notes, []byte("not hdf5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{notes, notes + ": not an HDF5 file (or unreadable); give a clipd output file"},
		{filepath.Join(dir, "missing.h5"), filepath.Join(dir, "missing.h5") + ": no such file or directory"},
		{dir, dir + ": is a directory; give a clipd output file"},
	} {
		f, err := Open(c.path)
		if err == nil {
			f.Close()
			t.Fatalf("Open(%s) succeeded", c.path)
		}
		if !errors.Is(err, ErrInput) || errors.Is(err, ErrOutput) || err.Error() != c.want {
			t.Errorf("Open(%s) = %q, want ErrInput %q", c.path, err, c.want)
		}
	}
	if _, err := Open(filepath.Join(dir, "missing.h5")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v does not match os.ErrNotExist", err)
	}
	if _, err := Inspect(context.Background(), notes, 1, 1); !errors.Is(err, ErrInput) || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "H5F") {
		t.Errorf("Inspect(notes.txt) = %q, want one ErrInput line without HDF5's stack", err)
	}
}

func TestWrapKeepsClassAndCause(t *testing.T) {
	pe := &os.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}
	err := WrapWrite("/out/a.h5.tmp", pe)
	if !errors.Is(err, ErrOutput) || !errors.Is(err, syscall.ENOSPC) || err.Error() != "writing /out/a.h5.tmp: no space left on device" {
		t.Fatalf("WrapWrite = %q", err)
	}
	if again := WrapWrite("/elsewhere", err); again != err {
		t.Fatalf("WrapWrite of a classified error rewrapped it: %q", again)
	}
	if r := WrapRead("/in.h5", err); r != err || errors.Is(r, ErrInput) {
		t.Fatalf("WrapRead of an output error changed its class: %q", r)
	}
	in := WrapRead("/in.h5", errors.New("bad block"))
	if !errors.Is(in, ErrInput) || errors.Is(in, ErrOutput) || in.Error() != "reading /in.h5: bad block" {
		t.Fatalf("WrapRead = %q", in)
	}
	if WrapWrite("x", nil) != nil || WrapRead("x", nil) != nil {
		t.Fatal("nil wrapped into an error")
	}
}

func TestCommitAndAbort(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.h5")
	f, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	et := EmbeddedTable(false, false, h5.Float32, 2)
	tf, err := f.CreateTable(et, 0, 16, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := tf.Pending()
	b.Strs[ColURLs] = append(b.Strs[ColURLs], "u0", "u1")
	b.Ints[ColLines] = append(b.Ints[ColLines], 1, 2)
	b.Raw[ColValues] = make([]byte, 2*2*4)
	b.N = 2
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the file is in place before Commit")
	}
	if err := f.Commit(Attrs{Model: "m", EmbedDim: 2}); err != nil { // the pending rows are flushed by Commit
		t.Fatal(err)
	}
	if _, err := os.Stat(f.Tmp()); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("temporary left after Commit")
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a, err := ReadAttrs(r)
	if err != nil || a.Model != "m" || a.EmbedDim != 2 || a.Dtype != "float32" {
		t.Fatalf("attrs %+v, %v", a, err)
	}
	in, n, err := OpenTable(r, et, 0)
	if err != nil || n != 2 {
		t.Fatalf("OpenTable: %d rows, %v", n, err)
	}
	defer in.Close()
	if in.Dataset(ColIDs) != nil || in.Table().Cols[ColIDs].Name != "" || et.Cols[ColIDs].Name != "" {
		t.Fatal("ids column present")
	}
	if _, _, err := OpenTable(r, FailedTable(false, true), 0); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "has no failed_urls dataset") {
		t.Fatalf("OpenTable of a missing table = %v", err)
	}

	// A commit whose rename fails (the target is a non-empty directory): ErrOutput, no tmp.
	blocked := filepath.Join(dir, "blocked.h5")
	if err := os.MkdirAll(filepath.Join(blocked, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	f2, err := Create(blocked)
	if err != nil {
		t.Fatal(err)
	}
	if err := f2.Commit(Attrs{}); !errors.Is(err, ErrOutput) || !strings.HasPrefix(err.Error(), "writing "+blocked+": ") {
		t.Fatalf("Commit onto a directory = %v", err)
	}
	if _, err := os.Stat(f2.Tmp()); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("temporary left after a failed Commit")
	}

	f3, err := Create(filepath.Join(dir, "aborted.h5"))
	if err != nil {
		t.Fatal(err)
	}
	f3.Abort()
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Fatalf("Abort left files: %v", ents)
	}
	// Create under a regular file: ErrOutput naming the temporary.
	if _, err := Create(filepath.Join(path, "x.h5")); !errors.Is(err, ErrOutput) || !strings.Contains(err.Error(), "x.h5.tmp") {
		t.Fatalf("Create under a file = %v", err)
	}
}

func TestNames(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"Images_Embedded_10.h5", "Images_Embedded_2.h5", "Images_Embedded_3.h5.tmp", "Images_Embedded.h5", "other.h5"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := ListChunks(dir)
	if err != nil || len(cs) != 2 || cs[0].K != 2 || cs[1].K != 10 || cs[1].Path != ChunkPath(dir, 10) {
		t.Fatalf("ListChunks = %+v, %v", cs, err)
	}
	for n, want := range map[string]bool{"Images_Embedded_3.h5.tmp": true, "Images_Embedded.h5.tmp": true,
		"Images_Embedded_3.h5": false, "notes.tmp": false, ".clipd-run.json.tmp": false} {
		if IsTemp(n) != want {
			t.Errorf("IsTemp(%s) = %v", n, !want)
		}
	}
}

func TestScanDir(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"Images_Embedded_0.h5", "Images_Embedded_1.h5", "notes.txt",
		ShardDirName(0, 2) + "/Images_Embedded.h5", ShardDirName(1, 2) + "/Images_Embedded_0.h5", "shard-x/Images_Embedded.h5"} {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := ScanDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Final != "" || c.Chunks != 2 || len(c.Shards) != 2 {
		t.Fatalf("ScanDir = %+v", c)
	}
	s0, s1 := c.Shards[0], c.Shards[1]
	if s0.Index != 0 || s0.Count != 2 || s0.Final != filepath.Join(dir, "shard-00000-of-00002", FinalName) || s0.Chunks != 0 ||
		s1.Index != 1 || s1.Final != "" || s1.Chunks != 1 {
		t.Fatalf("shards = %+v", c.Shards)
	}
	if _, err := ScanDir(filepath.Join(dir, "missing")); !errors.Is(err, ErrInput) || !strings.HasSuffix(err.Error(), "missing: no such file or directory") {
		t.Fatalf("ScanDir(missing) = %v", err)
	}
}

func TestShards(t *testing.T) {
	for _, c := range []struct {
		s    string
		idx  []int
		n    int
		back string
	}{{"", []int{0}, 1, "0/1"}, {"0/1", []int{0}, 1, "0/1"}, {"2/4", []int{2}, 4, "2/4"}, {"3,0,1/4", []int{0, 1, 3}, 4, "0,1,3/4"}} {
		idx, n, err := ParseShards(c.s)
		if err != nil || n != c.n || fmt.Sprint(idx) != fmt.Sprint(c.idx) || FormatShards(idx, n) != c.back {
			t.Errorf("ParseShards(%q) = %v %d %v", c.s, idx, n, err)
		}
	}
	if FormatShards([]int{3, 1, 0, 2}, 4) != "0/1" {
		t.Error("all four shards do not format as the whole input")
	}
	for _, bad := range []string{"4/4", "x/2", "1/0", "1"} {
		if _, _, err := ParseShards(bad); err == nil {
			t.Errorf("ParseShards(%q) succeeded", bad)
		}
	}
}

// TestAppendRowFills: a column the source lacks (ids, lines, the input index) gets "", 0.
func TestAppendRowFills(t *testing.T) {
	src := EmbeddedTable(false, false, h5.Float32, 1).NewBlock()
	src.Strs[ColURLs] = []string{"u"}
	src.Ints[ColLines] = []int64{7}
	src.Raw[ColValues] = []byte{1, 2, 3, 4}
	src.N = 1
	dst := WithInputIndex(EmbeddedTable(true, false, h5.Float32, 1)).NewBlock()
	dst.AppendRow(src, 0)
	dst.AppendRow(src, 0)
	if dst.N != 2 || len(dst.Strs[ColIDs]) != 2 || dst.Strs[ColIDs][1] != "" || len(dst.Ints[ColInput]) != 2 ||
		dst.Ints[ColLines][1] != 7 || len(dst.Raw[ColValues]) != 8 {
		t.Fatalf("AppendRow: %+v", dst)
	}
}

func TestInputs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.h5")
	f, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []InputEntry{{"a.txt", "sha256:aa size:3", "0/1", 0, ""}, {"b.parquet", "", "0,2/4", 10, "original"}}
	if err := f.WriteInputs(want); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(Attrs{}); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := ReadInputs(r)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ReadInputs = %+v, %v", got, err)
	}
}
