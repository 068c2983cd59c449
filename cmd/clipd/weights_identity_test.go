// weights_identity_test.go: the weights' sha256 that a run records is the hash of the file
// it embeds with (issue "hardening", item 7): weights swapped under their recorded
// FILE.sha256 between a killed run and its resume are refused, where the resume used to
// finish with exit 0 and a file mixing two models' embeddings; an unchanged file is not
// read again at every run.
package main

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/embed"
	"github.com/clipd/clipd/weights"
	"github.com/clipd/clipd/weights/weightstest"
)

// copyWeights copies the tiny model's folder into a new folder, with the FILE.sha256 that
// `clipd weights fetch` writes beside a download, and returns the folder.
func copyWeights(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range []string{"model.safetensors", "open_clip_config.json"} {
		if err := os.WriteFile(filepath.Join(dir, n), readFile(t, filepath.Join(tinyWeights, n)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sum := weightstest.SHA256(readFile(t, filepath.Join(dir, "model.safetensors")))
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors.sha256"), []byte(sum+"  model.safetensors\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// swapWeights rewrites file in place as another model of the same shapes and size (its
// projection negated), puts its mtime back, and returns the new bytes' sha256. The sidecar
// is left as it was.
func swapWeights(t *testing.T, file string) string {
	t.Helper()
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	h, err := weights.ReadHeader(file)
	if err != nil {
		t.Fatal(err)
	}
	b := readFile(t, file)
	data := 8 + h.HeaderSize
	swapped := false
	for _, tn := range h.Tensors {
		if tn.Name != "visual.proj" || tn.DType != "F32" {
			continue
		}
		for o := data + tn.Begin; o < data+tn.End; o += 4 {
			v := math.Float32frombits(binary.LittleEndian.Uint32(b[o:]))
			binary.LittleEndian.PutUint32(b[o:], math.Float32bits(-v-0.5))
		}
		swapped = true
	}
	if !swapped {
		t.Fatal("the tiny model has no F32 visual.proj")
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(file, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	return weightstest.SHA256(b)
}

// The exact reproduction: kill -9 after the first chunk, swap the weights under their
// .sha256, rerun the same command: refused (exit 2, one line naming the weights' change),
// and nothing of the first model is finished with the second.
func TestResumeWithSwappedWeightsIsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	srv := newImageServer(t)
	srv.delay.Store(int64(100 * time.Millisecond))
	list := writeList(t, manyURLs(srv.URL, goodFiles(t), 40))
	wdir := copyWeights(t)
	wfile := filepath.Join(wdir, "model.safetensors")
	before := weightstest.SHA256(readFile(t, wfile))
	out := t.TempDir()
	cache := t.TempDir()
	args := func() []string {
		a := embedArgs(list, out, "--chunk-size", "5", "--cache-dir", cache)
		for i := range a {
			if a[i] == tinyWeights {
				a[i] = wdir
			}
		}
		return a
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if killed, log, _ := runKilledWhen(t, ctx, func() bool { return countChunks(out) >= 1 }, args()...); !killed {
		t.Fatalf("the first run was not killed after its first chunk:\n%s", log)
	}

	after := swapWeights(t, wfile)
	if after == before || weights.RecordedSHA256(wfile) != before {
		t.Fatal("the swap did not make other weights under the same sidecar")
	}
	code, _, se := runClipd(args()...)
	if code != exitUsage {
		t.Fatalf("resume with swapped weights: exit %d, want %d (refused); stderr:\n%s", code, exitUsage, se)
	}
	oneLine(t, "swapped weights", se, "the weights changed (sha256 "+before+", now "+after+")")
	if !strings.Contains(se, "--no-resume") {
		t.Errorf("%q does not say what to do", se)
	}
	if _, err := os.Stat(filepath.Join(out, embed.FinalName)); err == nil {
		t.Error("a final file was written from two models")
	}

	// --no-resume starts over with the new weights: the file records their sha256.
	code, _, se = runClipd(append(args(), "--no-resume")...)
	if code != exitOK {
		t.Fatalf("--no-resume: exit %d: %s", code, se)
	}
	r := readH5(t, filepath.Join(out, embed.FinalName))
	if r.Attrs["weights_sha256"] != after || len(r.URLs) != 40 {
		t.Errorf("after --no-resume: weights_sha256 %s, %d rows; want %s, 40", r.Attrs["weights_sha256"], len(r.URLs), after)
	}
}

// An unchanged weights file is hashed at its first run only (the run logs hashed=true,
// then hashed=false); the sha256 recorded is the file's either way.
func TestUnchangedWeightsNotHashedAgain(t *testing.T) {
	srv := newImageServer(t)
	list := writeList(t, manyURLs(srv.URL, goodFiles(t), 3))
	wdir := copyWeights(t)
	sum := weightstest.SHA256(readFile(t, filepath.Join(wdir, "model.safetensors")))
	// A hash is remembered only for a file last changed more than 2 s ago (a change in the
	// same timestamp granule as the hashed version would go unseen).
	time.Sleep(2100 * time.Millisecond)
	cache := t.TempDir()
	for i, want := range []string{"hashed=true", "hashed=false", "hashed=false"} {
		out := t.TempDir()
		a := embedFlags(list, out, "--cache-dir", cache, "--log-level", "info")
		for j := range a {
			if a[j] == tinyWeights {
				a[j] = wdir
			}
		}
		code, _, se := clipdRun(t, a...)
		if code != exitOK {
			t.Fatalf("run %d: exit %d: %s", i, code, se)
		}
		if !strings.Contains(se, "sha256="+sum+" "+want) {
			t.Errorf("run %d: the log does not say sha256=%s %s:\n%s", i, sum, want, se)
		}
		if r := readH5(t, filepath.Join(out, embed.FinalName)); r.Attrs["weights_sha256"] != sum {
			t.Errorf("run %d: weights_sha256 %s, want %s", i, r.Attrs["weights_sha256"], sum)
		}
	}
}
