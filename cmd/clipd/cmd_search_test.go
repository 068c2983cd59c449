// cmd_search_test.go: `clipd search` as users type it: the README's two commands (embed a
// folder, search it with one of its images) through the binary, the hits' cosines against
// numpy's on the file h5py reads, --vector queries, and every refusal as one line and its
// exit code.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/cgo/h5"
	"github.com/clipd/clipd/internal/pipeline/export"
)

// photoFolder copies the e2e fixture images (JPEG and PNG) into a folder and returns it.
func photoFolder(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "photos")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"img_00.jpg", "img_01.jpg", "img_02.jpg", "img_03.jpg", "img_04.jpg", "img_05.jpg", "img_24.png", "img_25.png", "img_26.png"} {
		if err := os.WriteFile(filepath.Join(dir, n), readFile(t, filepath.Join(e2eDir, n)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// embedFolder runs clipd embed on photos into a new output folder (in-process) and returns it.
func embedFolder(t *testing.T, photos string, extra ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	args := append([]string{"--quiet", "embed", "--input", photos, "--output", out, "--weights", tinyWeights, "--backend", "cpu", "--threads", "1"}, extra...)
	if code, _, stderr := runClipd(args...); code != exitOK {
		t.Fatalf("clipd embed: exit %d: %s", code, stderr)
	}
	return out
}

// fileCosines is numpy's cosine of every row of path's embeddings with row `row`, and the
// urls, as h5py reads the file.
func fileCosines(t *testing.T, path string, row int) ([]float64, []string) {
	t.Helper()
	const py = `
import sys, json, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
e = f["embeddings"][:].astype(np.float64)
e /= np.linalg.norm(e, axis=1, keepdims=True)
json.dump({"cos": (e @ e[int(sys.argv[2])]).tolist(), "urls": [u.decode() for u in f["urls"][:]]}, sys.stdout)
`
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := exec.CommandContext(ctx, "/usr/bin/python3", "-c", py, path, strconvItoa(row)).Output()
	if err != nil {
		t.Fatalf("h5py: %v", err)
	}
	var r struct {
		Cos  []float64 `json:"cos"`
		URLs []string  `json:"urls"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r.Cos, r.URLs
}

func strconvItoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// checkHits checks a query's hits against numpy's cosines of the file (cos: every row's
// cosine with the query): the k best rows, best first, each with numpy's cosine.
func checkHits(t *testing.T, what string, hits []searchHit, cos []float64, urls []string, k int) {
	t.Helper()
	if len(hits) != min(k, len(cos)) {
		t.Fatalf("%s: %d hits, want %d", what, len(hits), min(k, len(cos)))
	}
	for i, h := range hits {
		if h.Rank != i+1 || h.URL != urls[h.Row] || math.Abs(float64(h.Score)-cos[h.Row]) > 2e-6 {
			t.Fatalf("%s: hit %d = %+v; numpy: url %s cosine %v", what, i, h, urls[h.Row], cos[h.Row])
		}
		if i > 0 && h.Score > hits[i-1].Score {
			t.Fatalf("%s: hit %d scores above hit %d", what, i, i-1)
		}
	}
	last := hits[len(hits)-1]
	for r, c := range cos {
		in := false
		for _, h := range hits {
			in = in || h.Row == int64(r)
		}
		if !in && c > float64(last.Score)+2e-6 {
			t.Fatalf("%s: row %d (cosine %v) is not a hit but beats the last hit (%v)", what, r, c, last.Score)
		}
	}
}

// TestSearchReadmeExample: the README's two commands through the binary, from a folder of
// images to a search result: the query image is its own first hit with cosine 1, and the
// hits are numpy's top 5 of the file with numpy's cosines.
func TestSearchReadmeExample(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	photos := photoFolder(t)
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, clipdBinary(t), "embed", "--input", photos+"/", "--output", out+"/", "--weights", tinyWeights, "--backend", "cpu", "--quiet")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("clipd embed: %v\n%s", err, b)
	}
	query := filepath.Join(photos, "img_03.jpg")
	cmd = exec.CommandContext(ctx, clipdBinary(t), "search", out+"/", "--image", query, "--weights", tinyWeights, "--backend", "cpu", "-k", "5")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("clipd search: %v, stderr %q", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 6 || lines[0] != "image "+query+": 5 of 9 rows" || !strings.HasPrefix(lines[1], "   1  1.0000  "+query) {
		t.Fatalf("clipd search printed:\n%s", b)
	}
	// The same as JSON, checked against numpy on the file h5py reads.
	cmd = exec.CommandContext(ctx, clipdBinary(t), "search", out, "--image", query, "--weights", tinyWeights, "--backend", "cpu", "-k", "5", "--json")
	if b, err = cmd.Output(); err != nil {
		t.Fatalf("clipd search --json: %v", err)
	}
	var rep searchReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	cos, urls := fileCosines(t, rep.File, int(rep.Queries[0].Hits[0].Row))
	if urls[rep.Queries[0].Hits[0].Row] != query || rep.Rows != 9 || len(rep.Queries) != 1 {
		t.Fatalf("report %+v", rep)
	}
	checkHits(t, "--image", rep.Queries[0].Hits, cos, urls, 5)

	// The file is read in a child process: libhdf5 crashing on a damaged file (the hook makes
	// the child die of SIGSEGV as it would) is one line and exit 3.
	cmd = exec.CommandContext(ctx, clipdBinary(t), "search", out, "--vector", filepath.Join(t.TempDir(), "q.npy"))
	cmd.Env = append(os.Environ(), "CLIPD_TEST_CHILD_CRASH=1")
	stderr.Reset()
	cmd.Stderr = &stderr
	cmd.Run()
	checkOneErrorLine(t, "clipd search, its child crashing", exitStatus(cmd), exitInput, stderr.String(),
		"clipd: "+out+": libhdf5 crashed reading it (SIGSEGV): the file is damaged; clipd cannot read it")
}

// writeVectors writes rows of dim values as a (rows, dim) .npy of descr "<f4" or "<f2".
func writeVectors(t *testing.T, path string, vals []float32, dim int, descr string) {
	t.Helper()
	b, err := export.NPYHeader(descr, int64(len(vals)/dim), dim)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vals {
		if descr == "<f2" {
			b = binary.LittleEndian.AppendUint16(b, h5.Float32ToFloat16(v))
		} else {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSearchVectors: --vector with two queries (rows 2 and 7 of a float16 file, as numpy
// would save them) is one search; each finds its own row first and numpy's k best; k larger
// than the file gives every row.
func TestSearchVectors(t *testing.T) {
	out := embedFolder(t, photoFolder(t), "--dtype", "float16")
	file := filepath.Join(out, "Images_Embedded.h5")
	cos2, urls := fileCosines(t, file, 2)
	cos7, _ := fileCosines(t, file, 7)
	f, err := h5.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	d, err := f.OpenDataset("embeddings", 0)
	if err != nil {
		t.Fatal(err)
	}
	emb, err := d.ReadFloat32(0, int(d.Rows()))
	dim := d.Cols()
	d.Close()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	q := filepath.Join(t.TempDir(), "q.npy")
	writeVectors(t, q, append(append([]float32(nil), emb[2*dim:3*dim]...), emb[7*dim:8*dim]...), dim, "<f4")
	for _, k := range []int{1, 3, 50} {
		code, stdout, stderr := runClipd("search", out, "--vector", q, "-k", strconvItoa(k), "--json")
		if code != exitOK || stderr != "" {
			t.Fatalf("search --vector: exit %d, %s", code, stderr)
		}
		var rep searchReport
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatal(err)
		}
		if len(rep.Queries) != 2 || rep.Queries[0].Source != q+"[0]" || rep.Queries[1].Kind != "vector" || rep.Dtype != "float16" {
			t.Fatalf("report %+v", rep)
		}
		if rep.Queries[0].Hits[0].Row != 2 || rep.Queries[1].Hits[0].Row != 7 {
			t.Fatalf("k=%d: first hits %+v, %+v; want rows 2 and 7", k, rep.Queries[0].Hits[0], rep.Queries[1].Hits[0])
		}
		checkHits(t, "--vector query 0", rep.Queries[0].Hits, cos2, urls, k)
		checkHits(t, "--vector query 1", rep.Queries[1].Hits, cos7, urls, k)
	}
}

// TestSearchRefusals: each mistake is exit 2 (the command line) or 3 (a file) and one line
// saying what to do.
func TestSearchRefusals(t *testing.T) {
	photos := photoFolder(t)
	out := embedFolder(t, photos)
	tmp := t.TempDir()
	img := filepath.Join(photos, "img_03.jpg")
	notImage := filepath.Join(tmp, "notes.txt")
	os.WriteFile(notImage, []byte("remember the milk\n"), 0o644)
	noEmb := filepath.Join(tmp, "noemb.h5")
	if f, err := h5.Create(noEmb); err != nil {
		t.Fatal(err)
	} else {
		f.Close()
	}
	allFailed := writeOutput(t, filepath.Join(tmp, "allfailed"), []int64{4, 8}) // 4 dims, no rows: both failed
	four := filepath.Join(tmp, "four.npy")
	writeVectors(t, four, []float32{1, 2, 3, 4}, 4, "<f4")
	wrongDim := filepath.Join(tmp, "wrong.npy")
	writeVectors(t, wrongDim, make([]float32, 10), 10, "<f4")
	zero := filepath.Join(tmp, "zero.npy")
	writeVectors(t, zero, make([]float32, 16), 16, "<f2")
	// Weights of the same shapes but other values: another model.
	other := editWeights(t, func(name string, shape []int64, v []float32) {
		if name == "visual.proj" {
			for i := range v {
				v[i] = -v[i]
			}
		}
	})
	w := []string{"--weights", tinyWeights, "--backend", "cpu"}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"search", filepath.Join(tmp, "missing")}, exitUsage, "clipd: clipd search needs a query: a TEXT after OUTPUT, --image PATH or --vector FILE.npy; run \"clipd search --help\""},
		{[]string{"search", out, "--vector", zero, "-k", "0"}, exitUsage, "clipd: -k 0: want 1 or more"},
		{[]string{"search", out, "--vector", zero, "--block-rows", "0"}, exitUsage, "clipd: --block-rows 0: want 1 to 4194304"},
		{append([]string{"search", filepath.Join(tmp, "missing"), "--image", img}, w...), exitInput, "clipd: " + filepath.Join(tmp, "missing") + ": no such file or directory"},
		{[]string{"search", noEmb, "--vector", zero}, exitInput, "clipd: " + noEmb + " has no embeddings dataset: not a clipd output file; give the file (or folder) clipd embed wrote"},
		{[]string{"search", tmp, "--vector", zero}, exitInput, "clipd: " + tmp + ": no clipd output in this folder (no Images_Embedded.h5); give a clipd output file or folder"},
		{append([]string{"search", out, "--image", filepath.Join(tmp, "nope.jpg")}, w...), exitInput, "clipd: --image " + filepath.Join(tmp, "nope.jpg") + ": no such file or directory"},
		{append([]string{"search", out, "--image", notImage}, w...), exitInput, "clipd: --image " + notImage + ": not an image (starts with \"remember the mil\"): give a JPEG, PNG, GIF, WebP or BMP image"},
		{append([]string{"search", out, "--image", img, "--weights", other}, "--backend", "cpu"), exitInput, "...was embedded with weights of sha256 "},
		{[]string{"search", out, "--vector", wrongDim}, exitInput, "...holds vectors of 10 values, " + filepath.Join(out, "Images_Embedded.h5") + "'s embeddings have 16: give vectors of the file's model"},
		{[]string{"search", out, "--vector", zero}, exitInput, "clipd: vector " + zero + "[0]: the query vector is zero or not finite: it has no direction to search by"},
		{[]string{"search", allFailed, "--vector", four}, exitInput, "clipd: " + allFailed + " holds no embedded rows (every row failed, or none was given): nothing to search"},
		{[]string{"search", out, "--vector", notImage}, exitInput, "clipd: --vector " + notImage + ": not a .npy file; want a float16/32/64 array of shape (D,) or (N, D) from numpy.save"},
	} {
		code, _, stderr := runClipd(c.args...)
		checkOneErrorLine(t, strings.Join(c.args, " "), code, c.code, stderr, c.want)
	}
	// --force searches with the other model anyway (a warning in the log).
	code, stdout, stderr := runClipd("--log-level", "warn", "search", out, "--image", img, "--weights", other, "--backend", "cpu", "--force", "-k", "2")
	if code != exitOK || !strings.Contains(stderr, "(--force)") || strings.Count(stdout, "\n") != 3 {
		t.Errorf("--force: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestSearchText: `clipd search OUTPUT TEXT` on a folder embedded with a two-tower model:
// the hits are numpy's best rows by cosine with the reference's text embedding (tokenizer and
// text tower in Python), and the same as searching with the vector embed-text writes; a
// vision-only checkpoint cannot search by text (exit 4, one line).
func TestSearchText(t *testing.T) {
	model := textModel(t)
	photos := photoFolder(t)
	out := filepath.Join(t.TempDir(), "out")
	if code, _, stderr := runClipd("--quiet", "embed", "--input", photos, "--output", out, "--weights", model, "--backend", "cpu", "--threads", "1"); code != exitOK {
		t.Fatalf("clipd embed: exit %d: %s", code, stderr)
	}
	texts := []string{"a photo of a dog", "a red bus"}
	code, stdout, stderr := runClipd("search", out, texts[0], texts[1], "--weights", model, "--backend", "cpu", "-k", "4", "--json")
	if code != exitOK {
		t.Fatalf("search TEXT: exit %d: %s", code, stderr)
	}
	var rep searchReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Queries) != 2 || rep.Queries[0].Kind != "text" || rep.Queries[1].Source != texts[1] {
		t.Fatalf("report %+v", rep)
	}
	// numpy: every row's cosine with the reference embedding of each text.
	ref := referenceTexts(t, model, texts)
	const py = `
import sys, json, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
e = f["embeddings"][:].astype(np.float64)
e /= np.linalg.norm(e, axis=1, keepdims=True)
q = np.array(json.loads(sys.argv[2]), np.float64)
q /= np.linalg.norm(q, axis=1, keepdims=True)
json.dump({"cos": (q @ e.T).tolist(), "urls": [u.decode() for u in f["urls"][:]]}, sys.stdout)
`
	qs, _ := json.Marshal(ref.Embeddings)
	b, err := exec.Command("/usr/bin/python3", "-c", py, rep.File, string(qs)).Output()
	if err != nil {
		t.Fatalf("numpy: %v", err)
	}
	var np struct {
		Cos  [][]float64 `json:"cos"`
		URLs []string    `json:"urls"`
	}
	if err := json.Unmarshal(b, &np); err != nil {
		t.Fatal(err)
	}
	for i := range texts {
		checkHits(t, "text "+texts[i], rep.Queries[i].Hits, np.Cos[i], np.URLs, 4)
	}
	// The same hits from the vectors embed-text writes.
	vec := filepath.Join(t.TempDir(), "q.npy")
	if code, _, stderr := runClipd("embed-text", "--weights", model, "--backend", "cpu", "--output", vec, texts[0], texts[1]); code != exitOK {
		t.Fatalf("embed-text: exit %d: %s", code, stderr)
	}
	code, stdout, _ = runClipd("search", out, "--vector", vec, "-k", "4", "--json")
	var byVec searchReport
	if code != exitOK || json.Unmarshal([]byte(stdout), &byVec) != nil || len(byVec.Queries) != 2 {
		t.Fatalf("search --vector: exit %d: %s", code, stdout)
	}
	for i := range texts {
		for j, h := range byVec.Queries[i].Hits {
			if g := rep.Queries[i].Hits[j]; g.Row != h.Row || g.Score != h.Score {
				t.Fatalf("text %d hit %d: by text %+v, by embed-text's vector %+v", i, j, g, h)
			}
		}
	}
	// Text output, and the vision-only checkpoint.
	code, stdout, _ = runClipd("search", out, texts[0], "--weights", model, "--backend", "cpu", "-k", "2")
	if code != exitOK || !strings.HasPrefix(stdout, `text "a photo of a dog": 2 of 9 rows`+"\n   1  ") {
		t.Fatalf("search TEXT printed (exit %d):\n%s", code, stdout)
	}
	visionOnly := embedFolder(t, photos)
	code, _, stderr = runClipd("search", visionOnly, "a dog", "--weights", tinyWeights, "--backend", "cpu")
	checkOneErrorLine(t, "search by text with a vision-only checkpoint", code, exitBadWeights, stderr,
		"clipd: "+filepath.Join(tinyWeights, "model.safetensors")+" has no text tower (no token_embedding.weight beside visual.*): text embeddings need a whole CLIP checkpoint; search by --image or --vector instead")
}

// TestSearchHostileFiles: the crafted files of the hardening trial (craftFiles) given to
// search: each is exit 3 and one line naming the file, with no panic, no out-of-memory and no
// hang; the file declaring 2^52 failures is searched (search reads no failure), its one row
// found.
func TestSearchHostileFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	if b, err := exec.Command("/usr/bin/python3", "-c", craftFiles, dir).CombinedOutput(); err != nil {
		t.Fatalf("making the files: %v\n%s", err, b)
	}
	q := filepath.Join(dir, "q.npy")
	writeVectors(t, q, []float32{1, 1, 1, 1}, 4, "<f4")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, name := range []string{"no_urls.h5", "short_urls.h5", "huge_2p40.h5", "wide_2p40.h5", "huge_2p27.h5", "wide_2p27.h5", "failures_2p52.h5"} {
		p := filepath.Join(dir, name)
		cmd := exec.CommandContext(ctx, clipdBinary(t), "search", p, "--vector", q, "-k", "3")
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		peak := runPeakRSS(cmd)
		if took := time.Since(start); took > 20*time.Second {
			t.Errorf("search %s took %v", name, took)
		}
		if peak > 512<<20 {
			t.Errorf("search %s: peak RSS %d MB", name, peak>>20)
		}
		if name == "failures_2p52.h5" {
			if exitStatus(cmd) != exitOK || !strings.Contains(stdout.String(), "   1  1.0000  http://a/1\n") {
				t.Errorf("search %s: exit %d, stdout %q, stderr %q", name, exitStatus(cmd), stdout.String(), stderr.String())
			}
			continue
		}
		checkOneErrorLine(t, "search "+name, exitStatus(cmd), exitInput, stderr.String(), "...clipd: ")
		if e := stderr.String(); !strings.Contains(e, p) || !strings.Contains(e, "the file is damaged") && !strings.Contains(e, "not a clipd output file") {
			t.Errorf("search %s: stderr %q does not name the file and say it is damaged", name, e)
		}
	}
}
