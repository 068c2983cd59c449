// cmd_embedtext_test.go: `clipd embed-text` on a tiny two-tower model (testdata/text_model.py:
// random weights, the tokenizer reference's seeded vocabulary) against the Python reference
// (tokenizer_ref.py ids, clip_ref.TextRef in float64): printed, as JSON, and written to .npy
// and .h5 files that numpy and h5py read back; and its refusals.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	textModelOnce sync.Once
	textModelDir  string
	textModelErr  error
)

// textModel is the folder of the two-tower test model (made once per test binary).
func textModel(t *testing.T) string {
	t.Helper()
	textModelOnce.Do(func() {
		dir, err := os.MkdirTemp("", "clipd-text-model")
		if err != nil {
			textModelErr = err
			return
		}
		textModelDir = dir
		if b, err := exec.Command("/usr/bin/python3", "testdata/text_model.py", "make", dir).CombinedOutput(); err != nil {
			textModelErr = err
			t.Logf("%s", b)
		}
	})
	if textModelErr != nil {
		t.Fatalf("testdata/text_model.py make: %v", textModelErr)
	}
	return textModelDir
}

// textReference is the Python reference for texts: ids, BPE counts and embeddings.
type textReference struct {
	Tokens     [][]int32   `json:"tokens"`
	N          []int       `json:"n"`
	Embeddings [][]float64 `json:"embeddings"`
}

func referenceTexts(t *testing.T, model string, texts []string) textReference {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := exec.CommandContext(ctx, "/usr/bin/python3", append([]string{"testdata/text_model.py", "embed", model}, texts...)...).Output()
	if err != nil {
		t.Fatalf("text_model.py embed: %v", err)
	}
	var r textReference
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// closeTo checks got against the reference want: cosine and largest difference.
func closeTo(t *testing.T, what string, got []float32, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	var dot, ng, nw, maxd float64
	for i := range got {
		g := float64(got[i])
		dot, ng, nw = dot+g*want[i], ng+g*g, nw+want[i]*want[i]
		maxd = max(maxd, math.Abs(g-want[i]))
	}
	if cos := dot / math.Sqrt(ng*nw); cos < 1-1e-6 || maxd > 1e-4 {
		t.Errorf("%s: cosine %v, max |diff| %v against the reference", what, cos, maxd)
	}
}

var embedTextSamples = []string{
	"a photo of a dog",
	"A Red  Double-Decker BUS!",
	"a red double-decker bus on a street in the city at night with people", // more than the 14 ids the context keeps
	"東京 の 写真 😀",
	"",
}

// TestEmbedTextMatchesReference: --json gives every text's embedding as the reference computes
// it from the reference's ids, its BPE count and whether it was cut; the printed lines show the
// same norms; --normalize gives unit vectors in the same directions.
func TestEmbedTextMatchesReference(t *testing.T) {
	model := textModel(t)
	ref := referenceTexts(t, model, embedTextSamples)
	args := append([]string{"embed-text", "--weights", model, "--backend", "cpu", "--json"}, embedTextSamples...)
	code, stdout, stderr := runClipd(args...)
	if code != exitOK {
		t.Fatalf("embed-text --json: exit %d: %s", code, stderr)
	}
	var lines []textLine
	if err := json.Unmarshal([]byte(stdout), &lines); err != nil {
		t.Fatal(err)
	}
	if len(lines) != len(embedTextSamples) {
		t.Fatalf("%d texts, want %d", len(lines), len(embedTextSamples))
	}
	for i, l := range lines {
		if l.Index != i || l.Text != embedTextSamples[i] || l.Tokens != ref.N[i] || l.Cut != (ref.N[i] > 14) {
			t.Errorf("text %d: %+v; reference: %d BPE ids", i, l, ref.N[i])
		}
		closeTo(t, "text "+l.Text, l.Embedding, ref.Embeddings[i])
	}
	if !lines[2].Cut || !strings.Contains(stderr, "cut") {
		t.Errorf("the long text was not cut with a warning: %+v, stderr %q", lines[2], stderr)
	}

	code, stdout, _ = runClipd("--quiet", "embed-text", "--weights", model, "--backend", "cpu", embedTextSamples[0], embedTextSamples[2])
	printed := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if code != exitOK || len(printed) != 2 || !strings.HasPrefix(printed[0], "0  norm ") || !strings.HasSuffix(printed[0], `  "a photo of a dog"`) ||
		!strings.Contains(printed[1], "(cut: ") {
		t.Fatalf("embed-text printed (exit %d):\n%s", code, stdout)
	}
	var norm float64
	if _, err := fmt.Sscanf(printed[0], "0  norm %f", &norm); err != nil || math.Abs(norm-lines[0].Norm) > 1e-4 {
		t.Errorf("printed norm %v, JSON's %v (%v)", norm, lines[0].Norm, err)
	}

	code, stdout, _ = runClipd("embed-text", "--weights", model, "--backend", "cpu", "--json", "--normalize", embedTextSamples[0])
	var normed []textLine
	if code != exitOK || json.Unmarshal([]byte(stdout), &normed) != nil || len(normed) != 1 {
		t.Fatalf("--normalize: exit %d, %s", code, stdout)
	}
	if n := l2(normed[0].Embedding); math.Abs(n-1) > 1e-6 {
		t.Errorf("--normalize: norm %v", n)
	}
	unit := append([]float64(nil), ref.Embeddings[0]...)
	var n2 float64
	for _, v := range unit {
		n2 += v * v
	}
	for i := range unit {
		unit[i] /= math.Sqrt(n2)
	}
	closeTo(t, "--normalize", normed[0].Embedding, unit)
}

// TestEmbedTextOutputFiles: --file (an empty line and a CRLF line included: every line is a
// text) to .npy and .h5: numpy and h5py read back the --json vectors bit for bit, and the .h5
// holds the texts and the weights' sha256.
func TestEmbedTextOutputFiles(t *testing.T) {
	model := textModel(t)
	dir := t.TempDir()
	list := filepath.Join(dir, "texts.txt")
	texts := []string{"a dog", "", "a cat on a bed", "two buses"}
	os.WriteFile(list, []byte("a dog\n\na cat on a bed\r\ntwo buses"), 0o644)
	code, stdout, stderr := runClipd("embed-text", "--weights", model, "--backend", "cpu", "--json", "--file", list)
	var lines []textLine
	if code != exitOK || json.Unmarshal([]byte(stdout), &lines) != nil || len(lines) != len(texts) {
		t.Fatalf("--file --json: exit %d, %s %s", code, stdout, stderr)
	}
	for i, l := range lines {
		if l.Text != texts[i] {
			t.Fatalf("line %d read as %q, want %q", i+1, l.Text, texts[i])
		}
	}
	npy, h5 := filepath.Join(dir, "t.npy"), filepath.Join(dir, "t.h5")
	for _, out := range []string{npy, h5} {
		code, stdout, stderr := runClipd("embed-text", "--weights", model, "--backend", "cpu", "--file", list, "--output", out)
		if code != exitOK || stdout != out+": 4 texts x 16 float32\n" {
			t.Fatalf("--output %s: exit %d, stdout %q, stderr %q", out, code, stdout, stderr)
		}
		if _, err := os.Stat(out + ".tmp"); err == nil {
			t.Errorf("%s.tmp left behind", out)
		}
	}
	const py = `
import sys, json, hashlib, numpy as np, h5py
a = np.load(sys.argv[1])
f = h5py.File(sys.argv[2], "r")
json.dump({"npy": a.tolist(), "npy_dtype": str(a.dtype), "h5": f["text_embeddings"][:].tolist(),
  "texts": [t.decode() for t in f["texts"][:]], "sha": f.attrs["weights_sha256"],
  "file_sha": hashlib.sha256(open(sys.argv[3], "rb").read()).hexdigest(), "dim": int(f.attrs["embed_dim"])}, sys.stdout)
`
	b, err := exec.Command("/usr/bin/python3", "-c", py, npy, h5, filepath.Join(model, "model.safetensors")).Output()
	if err != nil {
		t.Fatalf("numpy/h5py: %v", err)
	}
	var got struct {
		NPY      [][]float32 `json:"npy"`
		NPYDtype string      `json:"npy_dtype"`
		H5       [][]float32 `json:"h5"`
		Texts    []string    `json:"texts"`
		SHA      string      `json:"sha"`
		FileSHA  string      `json:"file_sha"`
		Dim      int         `json:"dim"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.NPYDtype != "float32" || len(got.NPY) != 4 || len(got.H5) != 4 || got.SHA != got.FileSHA || got.Dim != 16 || strings.Join(got.Texts, "|") != strings.Join(texts, "|") {
		t.Fatalf("files read back: dtype %s, %d and %d rows, texts %q, sha %s (file %s), dim %d", got.NPYDtype, len(got.NPY), len(got.H5), got.Texts, got.SHA, got.FileSHA, got.Dim)
	}
	for i, l := range lines {
		for j, v := range l.Embedding {
			if got.NPY[i][j] != v || got.H5[i][j] != v {
				t.Fatalf("text %d value %d: npy %v, h5 %v, --json %v", i, j, got.NPY[i][j], got.H5[i][j], v)
			}
		}
	}
	// Standard input.
	var out strings.Builder
	if err := runEmbedText(context.Background(), embedTextOptions{File: "-", Stdin: strings.NewReader("a dog\n"), JSON: true, Stdout: &out,
		Model: modelOptions{Weights: model, Backend: 1}}); err != nil {
		t.Fatal(err)
	}
	var one []textLine
	if json.Unmarshal([]byte(out.String()), &one) != nil || len(one) != 1 || one[0].Text != "a dog" {
		t.Fatalf("--file -: %s", out.String())
	}
}

// TestEmbedTextRefusals: each mistake is one line and its exit code, and no output file.
func TestEmbedTextRefusals(t *testing.T) {
	model := textModel(t)
	dir := t.TempDir()
	noVocab := filepath.Join(dir, "novocab")
	os.MkdirAll(noVocab, 0o755)
	for _, n := range []string{"model.safetensors", "open_clip_config.json"} {
		os.WriteFile(filepath.Join(noVocab, n), readFile(t, filepath.Join(model, n)), 0o644)
	}
	list := filepath.Join(dir, "t.txt")
	os.WriteFile(list, []byte("a dog\n"), 0o644)
	w := []string{"--weights", model, "--backend", "cpu"}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"embed-text"}, exitUsage, "clipd: clipd embed-text needs texts: clipd embed-text \"a photo of a dog\" ..., or --file FILE (one text a line)"},
		{[]string{"embed-text", "a dog", "--file", list}, exitUsage, "clipd: give the texts as arguments or with --file, not both"},
		{[]string{"embed-text", "a dog", "--output", filepath.Join(dir, "x.txt")}, exitUsage, "clipd: --output " + filepath.Join(dir, "x.txt") + ": want a .npy or .h5 file"},
		{append([]string{"embed-text", "--file", filepath.Join(dir, "missing.txt")}, w...), exitInput, "clipd: --file " + filepath.Join(dir, "missing.txt") + ": no such file or directory"},
		{[]string{"embed-text", "a dog", "--weights", tinyWeights}, exitBadWeights, "clipd: " + filepath.Join(tinyWeights, "model.safetensors") + " has no text tower (no token_embedding.weight beside visual.*): text embeddings need a whole CLIP checkpoint"},
		{[]string{"embed-text", "a dog", "--weights", noVocab}, exitInput, "...no vocab.json beside the weights in " + noVocab},
		{append([]string{"embed-text", "a dog", "--output", filepath.Join(dir, "nodir", "x.npy")}, w...), exitOutput, "...nodir/x.npy.tmp"},
	} {
		code, _, stderr := runClipd(c.args...)
		checkOneErrorLine(t, strings.Join(c.args, " "), code, c.code, stderr, c.want)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 { // novocab/ and t.txt
		t.Errorf("the refusals left files: %v", ents)
	}
}
