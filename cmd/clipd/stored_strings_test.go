// stored_strings_test.go: a URL holding a NUL byte (issue "hardening", item 8) used to be
// stored cut at the NUL in failed_urls (HDF5 strings are C strings); it is stored with the
// NUL written as %00, in urls and failed_urls alike, read back byte for byte with h5py.
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"image/color"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/clipd/clipd/embed"
	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// rawStrings reads datasets of path with h5py as raw bytes (no decoding), hex-free: JSON
// of latin-1 strings, so every byte comes back as itself.
func rawStrings(t *testing.T, path string, names ...string) map[string][]string {
	t.Helper()
	const py = `
import sys, json, h5py
f = h5py.File(sys.argv[1], "r")
json.dump({n: [bytes(x).decode("latin-1") for x in f[n][:]] for n in sys.argv[2:]}, sys.stdout)
`
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/python3", append([]string{"-c", py, path}, names...)...).Output()
	if err != nil {
		t.Fatalf("h5py cannot read %s: %v", path, err)
	}
	var r map[string][]string
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestURLWithNULStoredWhole(t *testing.T) {
	srv := newImageServer(t)
	dir := t.TempDir()

	// A list: the NUL line fails at the source; the next one embeds.
	bad := srv.URL + "/img/a\x00b.jpg?q=\x00"
	list := filepath.Join(dir, "urls.txt")
	if err := os.WriteFile(list, []byte(bad+"\n"+srv.URL+"/img/"+goodFiles(t)[0]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "list-out")
	if code, _, se := clipdRun(t, embedFlags(list, out)...); code != exitOK {
		t.Fatalf("list: exit %d: %s", code, se)
	}
	got := rawStrings(t, filepath.Join(out, embed.FinalName), "failed_urls")
	want := srv.URL + "/img/a%00b.jpg?q=%00"
	if len(got["failed_urls"]) != 1 || got["failed_urls"][0] != want {
		t.Errorf("failed_urls %q, want [%q]", got["failed_urls"], want)
	}
	if outfile.StoredString(bad) != want || outfile.StoredString(want) != want {
		t.Error("StoredString is not what the file holds, or not idempotent")
	}

	// A tar shard whose json gives a URL with a NUL: an embedded row, in urls.
	png := filepath.Join(dir, "x.png")
	solidPNG(t, png, color.RGBA{10, 200, 30, 255})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range []struct {
		name string
		body []byte
	}{
		{"000.png", readFile(t, png)},
		{"000.json", []byte(`{"url": "http://example.com/x\u0000y.png", "key": "000"}`)},
	} {
		tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.body))})
		tw.Write(m.body)
	}
	tw.Close()
	shard := filepath.Join(dir, "00000.tar")
	if err := os.WriteFile(shard, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out = filepath.Join(dir, "tar-out")
	if code, _, se := clipdRun(t, embedFlags(shard, out)...); code != exitOK {
		t.Fatalf("tar: exit %d: %s", code, se)
	}
	got = rawStrings(t, filepath.Join(out, embed.FinalName), "urls")
	if want := "http://example.com/x%00y.png"; len(got["urls"]) != 1 || got["urls"][0] != want {
		t.Errorf("urls %q, want [%q]", got["urls"], want)
	}
}
