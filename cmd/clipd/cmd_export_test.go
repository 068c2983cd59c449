package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/pipeline/export"
)

func TestExportCommand(t *testing.T) {
	tmp := t.TempDir()
	out := filepath.Join(tmp, "run")
	writeRun(t, out, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9}, testRunAttrs("in.txt", "0/1"), true) // 7 rows
	blocker := filepath.Join(tmp, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string // in stdout+stderr
	}{
		{[]string{"export", out, "--rows-per-part", "3"}, exitOK, filepath.Join(out, "export") + ": 7 rows x 4 float32 in 3 parts (img_emb, metadata: url, image_id"},
		{[]string{"export", filepath.Join(out, "Images_Embedded.h5"), "-o", filepath.Join(tmp, "x"), "--dtype", "float16"}, exitOK, "7 rows x 4 float16 in 1 part"},
		{[]string{"export", filepath.Join(tmp, "missing")}, exitInput, "clipd: " + filepath.Join(tmp, "missing") + ": no such file or directory"},
		{[]string{"export", tmp}, exitInput, "no clipd output in this folder"},
		{[]string{"export", out, "-o", filepath.Join(blocker, "x")}, exitOutput, "clipd: writing " + filepath.Join(blocker, "x")},
		{[]string{"export", out, "--format", "csv"}, exitUsage, `--format "csv": want npy`},
		{[]string{"export", out, "--rows-per-part", "0"}, exitUsage, "--rows-per-part 0: want 1 or more"},
		{[]string{"export", out, "--dtype", "float64"}, exitUsage, `--dtype "float64": want float16 or float32`},
		{[]string{"export"}, exitUsage, "takes OUTPUT|FILE.h5|s3://BUCKET/KEY, got 0"},
		{[]string{"export", out, "--frobnicate"}, exitUsage, "flag provided but not defined: -frobnicate"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"clipd"}, c.args...), &stdout, &stderr)
		if code != c.code || !strings.Contains(stdout.String()+stderr.String(), c.want) {
			t.Errorf("%v: exit %d, want %d with %q\nstdout: %s\nstderr: %s", c.args, code, c.code, c.want, stdout.String(), stderr.String())
		}
		if c.code != exitOK && strings.Count(strings.TrimSuffix(stderr.String(), "\n"), "\n") != 0 && !strings.Contains(c.want, "takes") {
			t.Errorf("%v: stderr is not one line: %q", c.args, stderr.String())
		}
	}
	for k := 0; k < 3; k++ {
		for _, p := range []string{export.EmbPath(filepath.Join(out, "export"), k), export.MetadataPath(filepath.Join(out, "export"), k)} {
			if _, err := os.Stat(p); err != nil {
				t.Error(err)
			}
		}
	}
	// What numpy loads is the file's rows, in order.
	script := `import sys, numpy as np, h5py
e = np.concatenate([np.load(sys.argv[2] + "/img_emb/img_emb_%d.npy" % k) for k in range(3)])
assert np.array_equal(e, h5py.File(sys.argv[1], "r")["embeddings"][:]), e
x = np.load(sys.argv[3] + "/img_emb/img_emb_0.npy")
assert x.dtype == np.float16 and np.array_equal(x, e.astype(np.float16))`
	if b, err := exec.Command("/usr/bin/python3", "-c", script, filepath.Join(out, "Images_Embedded.h5"),
		filepath.Join(out, "export"), filepath.Join(tmp, "x")).CombinedOutput(); err != nil {
		t.Fatalf("numpy: %v\n%s", err, b)
	}
}

func TestExportDir(t *testing.T) {
	for in, want := range map[string]string{"/o/Images_Embedded.h5": "/o/export", "/o/all.h5": "/o/all_export"} {
		if got := exportDir(in); got != want {
			t.Errorf("exportDir(%s) = %s, want %s", in, got, want)
		}
	}
}
