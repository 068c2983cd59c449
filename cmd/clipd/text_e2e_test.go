// text_e2e_test.go: `clipd embed --text-column` end to end with a tiny whole CLIP model (made
// by testdata/text_model.py) on the CPU: a CSV of URLs and captions served from
// 127.0.0.1, interrupted and resumed, and a tar shard with .txt captions; h5py reads
// text_embeddings and each row equals the engine's embedding of that row's caption (through
// the Go binding) and the Python reference's (text_model.py embed: tokenizer_ref + clip_ref); the errors at the
// start (no text tower, no vocabulary, no such column, another text column on resume).
package main

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/embed"
	"github.com/clipd/clipd/internal/objstore/s3test"
	"github.com/clipd/clipd/internal/pipeline/batch"
)

// textColumnModel is a copy of the two-tower test model (textModel, testdata/text_model.py)
// of the test's own, which it may change.
func textColumnModel(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("needs Debian's /usr/bin/python3 with torch and python3-regex (make deps)")
	}
	src := textModel(t)
	dir := filepath.Join(t.TempDir(), "model")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"model.safetensors", "open_clip_config.json", "vocab.json", "merges.txt"} {
		if err := os.WriteFile(filepath.Join(dir, n), readFile(t, filepath.Join(src, n)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// goTextEmbeddings embeds each text alone through the Go binding (tokenizer + engine), and
// counts the texts longer than the context.
func goTextEmbeddings(t *testing.T, model string, texts []string, normalize bool) (emb [][]float32, truncated int) {
	t.Helper()
	e, err := engine.Open(engine.Options{WeightsPath: model, Backend: engine.BackendCPU, Threads: 1, MaxBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ti, err := e.TextInfo()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := engine.OpenTokenizer(model)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	var out [][]float32
	for _, s := range texts {
		ids, n, err := tok.Tokenize(s, ti.ContextLength)
		if err != nil {
			t.Fatal(err)
		}
		if n > ti.ContextLength-2 {
			truncated++
		}
		v := make([]float32, ti.EmbedDim)
		if err := e.EmbedTokens(ids, 1, v); err != nil {
			t.Fatal(err)
		}
		if normalize {
			batch.Normalize(v)
		}
		out = append(out, v)
	}
	return out, truncated
}

// textH5 is what h5py reads of a file with text embeddings.
type textH5 struct {
	URLs       []string    `json:"urls"`
	Emb        [][]float64 `json:"embeddings"`
	Text       [][]float64 `json:"text_embeddings"`
	TextDtype  string      `json:"text_dtype"`
	Dtype      string      `json:"dtype"`
	TextColumn string      `json:"text_column"`
	Tokenizer  string      `json:"tokenizer_sha256"`
	Captions   []string    `json:"caption"`
	Failed     []string    `json:"failed_urls"`
}

func readTextH5(t *testing.T, path string) textH5 {
	t.Helper()
	const script = `
import sys, json, h5py
f = h5py.File(sys.argv[1], "r")
t, e = f["text_embeddings"], f["embeddings"]
assert t.shape == e.shape, (t.shape, e.shape)
out = {"urls": list(f["urls"].asstr()[:]), "embeddings": e[:].astype("float64").tolist(),
       "text_embeddings": t[:].astype("float64").tolist(), "text_dtype": str(t.dtype), "dtype": str(e.dtype),
       "text_column": f.attrs["text_column"], "tokenizer_sha256": f.attrs["tokenizer_sha256"], "failed_urls": list(f["failed_urls"].asstr()[:]),
       "caption": list(f["caption"].asstr()[:]) if "caption" in f else None}
json.dump(out, sys.stdout)
`
	b, err := exec.Command("/usr/bin/python3", "-W", "ignore", "-c", script, path).Output()
	if err != nil {
		var msg []byte
		if ee, ok := err.(*exec.ExitError); ok {
			msg = ee.Stderr
		}
		t.Fatalf("h5py cannot read %s: %v\n%s", path, err, msg)
	}
	var r textH5
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// close64 compares a row read back with an expected one within tol (relative to 1 + |want|).
func close64(got []float64, want []float32, tol float64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if math.Abs(got[i]-float64(want[i])) > tol*(1+math.Abs(float64(want[i]))) {
			return false
		}
	}
	return true
}

// cosine of two rows.
func cosine(a []float64, b []float64) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab, aa, bb = ab+a[i]*b[i], aa+a[i]*a[i], bb+b[i]*b[i]
	}
	return ab / math.Sqrt(aa*bb)
}

// longCaption has more BPE tokens than the test model's context (16) holds.
var longCaption = strings.Repeat("a photo of the dog on the street with two people ", 3)

func TestEmbedTextColumnCSV(t *testing.T) {
	model := textColumnModel(t)
	srv := newImageServer(t)
	good := goodFiles(t)[:14]
	captions := []string{"a photo of a cat", "", "quoted, with a comma", longCaption, "東京 写真 猫 😀", "café naïve déjà vu",
		"  two   spaces  ", "&amp; html &lt;3", "A RED BUS", "1 2 3 10 100 2024", "don't can't we're", "kyoto",
		"x", "the end"}
	var b strings.Builder
	b.WriteString("url,caption,other\n")
	capOf := map[string]string{}
	for i := range 3 * len(good) { // three rounds, so that the interruption leaves rows to resume
		u := fmt.Sprintf("%s/img/%s?round=%d", srv.URL, good[i%len(good)], i/len(good))
		c := captions[i%len(good)]
		if i >= len(good) {
			c += fmt.Sprintf(" (round %d)", i/len(good))
		}
		capOf[u] = strings.TrimSpace(c) // CSV fields are read without the spaces around them
		fmt.Fprintf(&b, "%s,%q,o%d\n", u, c, i)
		if i == 5 {
			fmt.Fprintf(&b, "%s,a caption of a missing image,o\n", srv.URL+"/missing")
		}
	}
	fmt.Fprintf(&b, "%s\n", srv.URL+"/img/"+goodFiles(t)[14]) // a row too short to have the column: ""
	capOf[srv.URL+"/img/"+goodFiles(t)[14]] = ""
	csv := filepath.Join(t.TempDir(), "list.csv")
	if err := os.WriteFile(csv, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "OUT")
	base := []string{"embed", "-i", csv, "-w", model, "-o", out, "--save-columns", "caption",
		"--backend", "cpu", "--threads", "1", "--batch-size", "4", "--chunk-size", "5", "--memory", "1GiB",
		"--allow-private-networks", "--retries", "0", "--timeout", "10s", "--json", "-q"}
	args := append(append([]string{}, base...), "--text-column", "caption")

	// Interrupted after the first batches, then resumed by the same command.
	o, err := embedOptionsFromArgs(t, args)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	o.afterBatch = func(rows int64) {
		if rows >= 4 {
			cancel()
		}
	}
	if err := runEmbed(ctx, o); exitCode(err) != exitInterrupted {
		t.Fatalf("interrupted run: %v", err)
	}
	if code, stdout, stderr := runClipd(args...); code != 0 {
		t.Fatalf("resumed run: exit %d\n%s%s", code, stdout, stderr)
	}
	final := filepath.Join(out, embed.FinalName)
	h := readTextH5(t, final)
	if len(h.URLs) != 3*len(good)+1 || len(h.Failed) != 1 || h.TextColumn != "caption" || h.TextDtype != "float32" || h.Dtype != "float32" {
		t.Fatalf("%d rows, failed %v, text column %q, dtypes %s %s", len(h.URLs), h.Failed, h.TextColumn, h.TextDtype, h.Dtype)
	}
	sum := sha256.Sum256(append(append(readFile(t, filepath.Join(model, "vocab.json")), 0), readFile(t, filepath.Join(model, "merges.txt"))...))
	if h.Tokenizer != hex.EncodeToString(sum[:]) {
		t.Errorf("tokenizer_sha256 %q, want %x", h.Tokenizer, sum)
	}
	var texts []string
	for i, u := range h.URLs {
		c, ok := capOf[u]
		if !ok {
			t.Fatalf("row %d: unexpected url %s", i, u)
		}
		if h.Captions[i] != c {
			t.Errorf("row %d: saved caption %q, want %q", i, h.Captions[i], c)
		}
		texts = append(texts, c)
	}
	want, truncated := goTextEmbeddings(t, model, texts, false)
	ref := referenceTexts(t, model, texts).Embeddings
	for i := range texts {
		if !close64(h.Text[i], want[i], 1e-5) {
			t.Errorf("row %d (%q): text embedding %v, want the engine's %v", i, texts[i], h.Text[i][:4], want[i][:4])
		}
		if c := cosine(h.Text[i], ref[i]); c < 0.99999 {
			t.Errorf("row %d (%q): cosine with the Python reference %v", i, texts[i], c)
		}
		if cosine(h.Text[i], h.Emb[i]) > 0.9999 {
			t.Errorf("row %d: the text embedding is the image's", i)
		}
	}
	// The rows' texts differ, and so do their embeddings: no row got another row's.
	for i := 1; i < len(texts); i++ {
		if texts[i] != texts[i-1] && close64(h.Text[i], want[i-1], 1e-5) {
			t.Errorf("rows %d and %d have one text embedding", i-1, i)
		}
	}

	var stats embed.Summary
	if err := json.Unmarshal(readFile(t, filepath.Join(out, "Images_Embedded.stats.json")), &stats); err != nil {
		t.Fatal(err)
	}
	// The resumed run's own texts: those of the rows it embedded.
	if stats.ResumedRows == 0 || stats.Rows == 0 {
		t.Errorf("resumed %d rows, embedded %d: the run was not resumed", stats.ResumedRows, stats.Rows)
	}
	if s := stats.Text; s == nil || s.Column != "caption" || s.Texts != stats.Rows || s.Truncated > int64(truncated) || truncated == 0 || s.Empty > 2 { // at most: the long captions, 2 empty ones
		t.Errorf("stats text %+v (rows %d)", stats.Text, stats.Rows)
	}

	// Another text column (or none) on the same output: refused, one line, exit 2.
	for _, other := range [][]string{{"--text-column", "other"}, nil} {
		code, _, stderr := runClipd(append(append([]string{}, base...), other...)...)
		want := "text column caption, now other"
		if other == nil {
			want = "text column caption, now none"
		}
		checkOneErrorLine(t, "another text column", code, exitUsage, stderr, "..."+want)
	}
	// The same text column with other tokenizer files (one more line in merges.txt, which
	// tokenizes the same: a file that changed is another tokenizer all the same): refused.
	merges := filepath.Join(model, "merges.txt")
	if err := os.WriteFile(merges, append(readFile(t, merges), '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runClipd(args...)
	checkOneErrorLine(t, "other tokenizer files", code, exitUsage, stderr, "...the tokenizer's vocab.json or merges.txt changed")
}

// A whole run without interruption counts what it embedded: one text cut, two empty.
func TestEmbedTextColumnSummary(t *testing.T) {
	model := textColumnModel(t)
	srv := newImageServer(t)
	good := goodFiles(t)[:5]
	var b strings.Builder
	b.WriteString("URL\tText\n")
	for i, n := range good {
		c := []string{"a cat", "", longCaption, "", "two dogs"}[i]
		fmt.Fprintf(&b, "%s/img/%s\t%s\n", srv.URL, n, c)
	}
	tsv := filepath.Join(t.TempDir(), "list.tsv")
	os.WriteFile(tsv, []byte(b.String()), 0o644)
	out := filepath.Join(t.TempDir(), "OUT")
	code, stdout, stderr := runClipd("embed", "-i", tsv, "-w", model, "-o", out, "--text-column", "text", "--backend", "cpu",
		"--threads", "1", "--batch-size", "2", "--memory", "1GiB", "--allow-private-networks", "--retries", "0", "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "texts (text): 5 embedded, 1 cut to the model's context, 2 empty or missing") {
		t.Errorf("summary:\n%s", stdout)
	}
	var stats embed.Summary
	if err := json.Unmarshal(readFile(t, filepath.Join(out, "Images_Embedded.stats.json")), &stats); err != nil {
		t.Fatal(err)
	}
	if s := stats.Text; s == nil || *s != (embed.TextSummary{Column: "text", Texts: 5, Truncated: 1, Empty: 2, Busy: s.Busy}) {
		t.Errorf("stats text %+v", stats.Text)
	}
}

// A tar shard whose samples carry .txt captions (no json): --normalize --dtype float16.
func TestEmbedTextColumnTar(t *testing.T) {
	model := textColumnModel(t)
	imgs := goodFiles(t)[:7]
	shard := filepath.Join(t.TempDir(), "00000.tar")
	f, err := os.Create(shard)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	put := func(name string, b []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b))})
		tw.Write(b)
	}
	capOf := map[string]string{}
	for i, n := range imgs {
		key := fmt.Sprintf("%09d", i)
		put(key+filepath.Ext(n), readFile(t, filepath.Join(e2eDir, n)))
		c := fmt.Sprintf("caption number %d of the shard", i)
		if i == 4 {
			c = "" // no .txt member
		} else {
			put(key+".txt", []byte(c+"\n"))
		}
		capOf["00000.tar/"+key] = c
	}
	tw.Close()
	f.Close()
	out := filepath.Join(t.TempDir(), "OUT")
	code, stdout, stderr := runClipd("embed", "-i", shard, "-w", model, "-o", out, "--text-column", "caption", "--normalize",
		"--dtype", "float16", "--backend", "cpu", "--threads", "1", "--batch-size", "3", "--chunk-size", "4", "--memory", "1GiB", "-q")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	h := readTextH5(t, filepath.Join(out, embed.FinalName))
	if len(h.URLs) != len(imgs) || h.TextDtype != "float16" {
		t.Fatalf("%d rows, text dtype %s", len(h.URLs), h.TextDtype)
	}
	var texts []string
	for _, u := range h.URLs {
		c, ok := capOf[u]
		if !ok {
			t.Fatalf("unexpected url %s", u)
		}
		texts = append(texts, c)
	}
	want, _ := goTextEmbeddings(t, model, texts, true)
	for i := range texts {
		var ss float64
		for _, x := range h.Text[i] {
			ss += x * x
		}
		if !close64(h.Text[i], want[i], 2e-3) || math.Abs(ss-1) > 4e-3 {
			t.Errorf("row %d (%q): text embedding %v (norm^2 %v), want %v", i, texts[i], h.Text[i][:4], ss, want[i][:4])
		}
	}

	// A json field no sample has (a misspelt name cannot be refused at the start): the run
	// finishes, every text embedding that of "", and says so in a warning.
	out2 := filepath.Join(t.TempDir(), "OUT")
	code, stdout, stderr = runClipd("embed", "-i", shard, "-w", model, "-o", out2, "--text-column", "captoin",
		"--backend", "cpu", "--threads", "1", "--memory", "1GiB", "-q")
	if code != 0 || !strings.Contains(stderr, `clipd: warning: no row of this run had a text in column "captoin": every text embedding is the embedding of ""; check --text-column`) {
		t.Errorf("a missing json field: exit %d\n%s%s", code, stdout, stderr)
	}
}

// The errors at the start, before anything is fetched or written: weights without a text
// tower, a model without its vocabulary (exit 4), an input without the column (exit 3).
func TestEmbedTextColumnErrors(t *testing.T) {
	model := textColumnModel(t)
	srv := newImageServer(t)
	dir := t.TempDir()
	csv := filepath.Join(dir, "list.csv")
	os.WriteFile(csv, []byte("url,caption\n"+srv.URL+"/img/"+goodFiles(t)[0]+",a cat\n"), 0o644)
	txt := filepath.Join(dir, "list.txt")
	os.WriteFile(txt, []byte(srv.URL+"/img/"+goodFiles(t)[0]+"\n"), 0o644)
	noVocab := filepath.Join(dir, "novocab")
	os.MkdirAll(noVocab, 0o755)
	for _, n := range []string{"model.safetensors", "open_clip_config.json"} {
		os.WriteFile(filepath.Join(noVocab, n), readFile(t, filepath.Join(model, n)), 0o644)
	}
	for _, c := range []struct {
		name, input, weights, column string
		code                         int
		says                         string
	}{
		{"vision-only weights", csv, tinyWeights, "caption", exitBadWeights, "have no usable text tower"},
		{"no vocabulary", csv, noVocab, "caption", exitBadWeights, "vocab.json"},
		{"no such column", csv, model, "title", exitInput, `no text column "title" in the header; the columns are "url", "caption"`},
		{"a plain list", txt, model, "caption", exitInput, `no text column "caption"`},
	} {
		out := filepath.Join(dir, "out-"+strings.ReplaceAll(c.name, " ", "-"))
		before := srv.requests.Load()
		code, _, stderr := runClipd("embed", "-i", c.input, "-w", c.weights, "-o", out, "--text-column", c.column,
			"--backend", "cpu", "--threads", "1", "--memory", "1GiB", "--allow-private-networks", "-q")
		checkOneErrorLine(t, c.name, code, c.code, stderr, "..."+c.says)
		if n := srv.requests.Load() - before; n != 0 {
			t.Errorf("%s: %d requests before the error", c.name, n)
		}
		if c.code == exitBadWeights {
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%s: the output folder was created", c.name)
			}
		}
	}
}

// embedOptionsFromArgs parses a `clipd embed` command line into its options as the CLI does.
func embedOptionsFromArgs(t *testing.T, args []string) (embedOptions, error) {
	t.Helper()
	var o embedOptions
	var perr error
	app := newApp(io.Discard, io.Discard)
	for _, c := range app.Commands {
		if c.Name == "embed" {
			c.Action = func(cCtx *cli.Context) error {
				o, perr = embedOptionsFrom(cCtx, globalsFrom(cCtx), func(string) string { return "" })
				return nil
			}
		}
	}
	if err := app.Run(normalizeArgs(app, append([]string{"clipd"}, args...))); err != nil {
		return o, err
	}
	return o, perr
}

// --text-column with an s3:// output: the final object holds the local run's rows and text
// embeddings, and the text column is part of the run the bucket's final object answers for:
// another one is refused (exit 2) there as locally.
func TestS3OutputTextColumn(t *testing.T) {
	model := textColumnModel(t)
	srv := s3test.Shared(t)
	srv.SetEnv(t)
	bucket := srv.Bucket(t)
	img := newImageServer(t)
	var b strings.Builder
	b.WriteString("url,caption,other\n")
	for i, n := range goodFiles(t)[:9] {
		fmt.Fprintf(&b, "%s/img/%s,caption %d of a cat,a dog %d\n", img.URL, n, i, i)
	}
	csv := filepath.Join(t.TempDir(), "list.csv")
	os.WriteFile(csv, []byte(b.String()), 0o644)
	flags := func(out string, extra ...string) []string {
		return append([]string{"-q", "embed", "-i", csv, "-o", out, "-w", model, "--backend", "cpu", "--threads", "1",
			"--batch-size", "4", "--chunk-size", "5", "--memory", "1GiB", "--retries", "0", "--allow-private-networks"}, extra...)
	}
	local := t.TempDir()
	if code, _, se := clipdRun(t, flags(local, "--text-column", "caption")...); code != 0 {
		t.Fatalf("local run: exit %d: %s", code, se)
	}
	out := "s3://" + bucket + "/runs/text"
	if code, _, se := clipdRun(t, flags(out, "--text-column", "caption", "--staging", t.TempDir())...); code != 0 {
		t.Fatalf("s3 run: exit %d: %s", code, se)
	}
	want := readTextH5(t, embedFinal(local))
	got := readTextH5(t, s3Download(t, srv.Client(t), bucket, "runs/text/"+embed.FinalName))
	if !slices.Equal(got.URLs, want.URLs) || len(got.Text) != 9 || got.TextColumn != "caption" || got.Tokenizer != want.Tokenizer {
		t.Fatalf("s3 output: urls %v (want %v), %d text rows, column %q", got.URLs, want.URLs, len(got.Text), got.TextColumn)
	}
	for i := range want.Text {
		w := make([]float32, len(want.Text[i]))
		for j, x := range want.Text[i] {
			w[j] = float32(x)
		}
		if !close64(got.Text[i], w, 1e-5) {
			t.Errorf("row %d: text embedding %v, want %v", i, got.Text[i][:4], w[:4])
		}
	}
	code, _, se := clipdRun(t, flags(out, "--text-column", "other", "--staging", t.TempDir())...)
	if code != exitUsage {
		t.Errorf("another text column on the s3 output: exit %d, want %d", code, exitUsage)
	}
	oneLine(t, "another text column on the s3 output", se, "text column caption, now other")
}
