// embed_e2e_test.go: `clipd embed` end to end against a server on 127.0.0.1 that serves the
// images of testdata/e2e (made by tests/reference/make_images.py e2e) and the usual ways URLs fail,
// with the tiny golden model on the CPU: rows, order, embeddings, failures, the file as
// h5py reads it, resume after an interruption and after kill -9, shards and merge, and
// peak memory as the input grows.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/embed"
	"github.com/clipd/clipd/internal/pipeline/decode"
)

const (
	e2eDir      = "testdata/e2e"
	tinyWeights = "../../testdata/golden/tiny_openai_quick_f32"
	fetchLimit  = 2 * time.Second // the hanging route is bounded by this
)

// imageServer serves testdata/e2e under /img/NAME (any query string), plus /missing (404),
// /hang (never answers until the client gives up), /html (an HTML page as text/html) and
// /huge (declares 1 GiB). delay, when set, is waited before each image.
type imageServer struct {
	*httptest.Server
	files    map[string][]byte
	delay    atomic.Int64 // nanoseconds
	requests atomic.Int64
}

func newImageServer(t *testing.T) *imageServer {
	t.Helper()
	s := &imageServer{files: map[string][]byte{}}
	ents, err := os.ReadDir(e2eDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		s.files[e.Name()] = readFile(t, filepath.Join(e2eDir, e.Name()))
	}
	stop := make(chan struct{})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		switch {
		case r.URL.Path == "/missing":
			http.NotFound(w, r)
		case r.URL.Path == "/hang":
			select {
			case <-r.Context().Done():
			case <-stop:
			case <-time.After(30 * time.Second):
			}
		case r.URL.Path == "/html":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write(s.files["page.html"])
		case r.URL.Path == "/huge":
			w.Header().Set("Content-Type", "image/jpeg")
			w.Header().Set("Content-Length", strconv.Itoa(1<<30))
			w.Write(s.files["img_00.jpg"])
		case strings.HasPrefix(r.URL.Path, "/img/"):
			b, ok := s.files[strings.TrimPrefix(r.URL.Path, "/img/")]
			if !ok {
				http.NotFound(w, r)
				return
			}
			if d := s.delay.Load(); d > 0 {
				time.Sleep(time.Duration(d))
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(b)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(func() { close(stop); s.Close() })
	return s
}

// goodFiles are the fixture images that must embed.
func goodFiles(t *testing.T) []string {
	var names []string
	for _, l := range strings.Fields(string(readFile(t, filepath.Join(e2eDir, "GOOD")))) {
		names = append(names, l)
	}
	if len(names) < 20 {
		t.Fatalf("testdata/e2e/GOOD lists %d images; run /usr/bin/python3 tests/reference/make_images.py e2e", len(names))
	}
	return names
}

// badRoutes are the URLs that must fail, with a word their reason must contain.
func badRoutes(base string) map[string]string {
	return map[string]string{
		base + "/missing":                "http 404",
		base + "/hang":                   "timeout",
		base + "/html":                   "not an image",
		base + "/huge":                   "too large",
		base + "/img/corrupt.jpg":        "jpeg",
		base + "/img/truncated.jpg":      "truncated",
		base + "/img/page.html":          "not an image",
		base + "/img/bomb.png":           "too many pixels",
		base + "/img/does-not-exist.jpg": "http 404",
	}
}

// writeList writes urls, one a line, and returns the file.
func writeList(t *testing.T, urls []string) string {
	p := filepath.Join(t.TempDir(), "urls.txt")
	if err := os.WriteFile(p, []byte(strings.Join(urls, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// testEmbedOptions are small and quick: tiny model, one CPU thread, small chunks and batches.
func testEmbedOptions(input, out string) embedOptions {
	return embedOptions{
		Input: input, Weights: tinyWeights, Output: out,
		Backend: engine.BackendCPU, Threads: 1,
		BatchSize: 4, ChunkSize: 7, Conns: 8,
		Timeout: fetchLimit, Retries: -1,
		Dtype: "float32", Memory: 1 << 30,
		AllowPrivate: true, // the test servers are on 127.0.0.1
		Quiet:        true, Logger: quietLogger,
	}
}

// h5Result is the final file as h5py reads it.
type h5Result struct {
	URLs       []string          `json:"urls"`
	Embeddings [][]float64       `json:"embeddings"`
	Shape      []int             `json:"shape"`
	Dtype      string            `json:"dtype"`
	ImageIDs   []string          `json:"image_ids"`
	FailedURLs []string          `json:"failed_urls"`
	Reasons    []string          `json:"failed_reasons"`
	Attrs      map[string]string `json:"attrs"`
}

const readH5Py = `
import sys, json, h5py
f = h5py.File(sys.argv[1], "r")
s = lambda ds: [x.decode() if isinstance(x, bytes) else str(x) for x in ds[:]]
e = f["embeddings"]
out = {"urls": s(f["urls"]), "embeddings": e[:].astype("float64").tolist(), "shape": list(e.shape),
       "dtype": str(e.dtype), "failed_urls": s(f["failed_urls"]), "failed_reasons": s(f["failed_reasons"]),
       "image_ids": s(f["image_ids"]) if "image_ids" in f else None,
       "attrs": {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in f.attrs.items()}}
json.dump(out, sys.stdout)
`

func readH5(t *testing.T, path string) h5Result {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("needs Debian's /usr/bin/python3 with h5py")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/python3", "-c", readH5Py, path).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("h5py cannot read %s: %v\n%s", path, err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var r h5Result
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// expectedEmbeddings decodes each good file as the pipeline does and embeds it alone.
func expectedEmbeddings(t *testing.T, names []string) map[string][]float32 {
	t.Helper()
	e, err := engine.Open(engine.Options{WeightsPath: tinyWeights, Backend: engine.BackendCPU, Threads: 1, MaxBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	want := map[string][]float32{}
	for _, n := range names {
		im, err := decode.Decode(readFile(t, filepath.Join(e2eDir, n)), decode.Options{})
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		out := make([]float32, e.Info().EmbedDim)
		if err := e.EmbedImages([]engine.Image{{RGB: im.RGB, Width: im.Width, Height: im.Height}}, out); err != nil {
			t.Fatal(err)
		}
		im.Release()
		want[n] = out
	}
	return want
}

func closeEnough(a []float64, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-float64(b[i])) > 1e-4*(1+math.Abs(float64(b[i]))) {
			return false
		}
	}
	return true
}

func TestEmbedEndToEnd(t *testing.T) {
	srv := newImageServer(t)
	good := goodFiles(t)
	bad := badRoutes(srv.URL)
	// Interleave good and bad URLs so failures land in several chunks.
	var urls []string
	var badURLs []string
	for u := range bad {
		badURLs = append(badURLs, u)
	}
	sort.Strings(badURLs)
	for i, n := range good {
		urls = append(urls, srv.URL+"/img/"+n)
		if i%3 == 1 && len(badURLs) > 0 {
			urls = append(urls, badURLs[0])
			badURLs = badURLs[1:]
		}
	}
	urls = append(urls, badURLs...)
	out := t.TempDir()
	o := testEmbedOptions(writeList(t, urls), out)
	o.JSON = true
	var stdout bytes.Buffer
	o.Stdout = &stdout
	o.Quiet = false
	o.Stderr = &bytes.Buffer{}
	if err := runEmbed(testCtx(t), o); err != nil {
		t.Fatal(err)
	}
	final := filepath.Join(out, embed.FinalName)
	if !strings.Contains(stdout.String(), final+": 30 rows, 9 failures") {
		t.Errorf("summary does not give the rows and failures:\n%s", stdout.String())
	}
	if left, _ := filepath.Glob(filepath.Join(out, "Images_Embedded_*.h5")); len(left) > 0 {
		t.Errorf("chunk files left after the merge: %v", left)
	}
	r := readH5(t, final)

	// One row per good URL, in input order.
	var wantURLs []string
	for _, u := range urls {
		if _, isBad := bad[u]; !isBad {
			wantURLs = append(wantURLs, u)
		}
	}
	if strings.Join(r.URLs, "\n") != strings.Join(wantURLs, "\n") {
		t.Fatalf("urls:\n%v\nwant (input order):\n%v", r.URLs, wantURLs)
	}
	if len(r.Shape) != 2 || r.Shape[0] != len(good) || r.Shape[1] != 16 || r.Dtype != "float32" {
		t.Fatalf("embeddings shape %v dtype %s, want [%d 16] float32", r.Shape, r.Dtype, len(good))
	}
	want := expectedEmbeddings(t, good)
	for i, u := range r.URLs {
		name := strings.TrimPrefix(u, srv.URL+"/img/")
		if !closeEnough(r.Embeddings[i], want[name]) {
			t.Errorf("%s: embedding %v\nwant the engine's %v", name, r.Embeddings[i], want[name])
		}
	}
	// Every bad URL failed, with its reason.
	if len(r.FailedURLs) != len(bad) || len(r.Reasons) != len(bad) {
		t.Fatalf("%d failed urls (%v), want %d", len(r.FailedURLs), r.FailedURLs, len(bad))
	}
	for i, u := range r.FailedURLs {
		if !strings.Contains(r.Reasons[i], bad[u]) {
			t.Errorf("%s failed with %q, want a reason containing %q", u, r.Reasons[i], bad[u])
		}
	}
	for _, k := range []string{"model", "embed_dim", "normalized", "dtype"} {
		if _, ok := r.Attrs[k]; !ok {
			t.Errorf("attribute %q missing: %v", k, r.Attrs)
		}
	}
	// --json: the statistics file.
	var st embed.Summary
	if err := json.Unmarshal(readFile(t, statsFile(out)), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Completed || st.Rows != int64(len(good)) || st.Failures != int64(len(bad)) || st.Stages.EngineBatches == 0 {
		t.Errorf("stats file: %+v", st)
	}
	// The same command again: already complete, nothing fetched.
	before := srv.requests.Load()
	if err := runEmbed(testCtx(t), o); err != nil {
		t.Fatalf("rerun of a complete run: %v", err)
	}
	if n := srv.requests.Load() - before; n != 0 {
		t.Errorf("rerun of a complete run made %d requests", n)
	}
}

// manyURLs is n distinct URLs over the fixture images (the query makes each unique).
func manyURLs(base string, good []string, n int) []string {
	urls := make([]string, n)
	for i := range urls {
		urls[i] = fmt.Sprintf("%s/img/%s?n=%d", base, good[i%len(good)], i)
	}
	return urls
}

// sameResult checks b against the reference a: same URLs (no duplicates), same embeddings.
func sameResult(t *testing.T, what string, a, b h5Result) {
	t.Helper()
	seen := map[string]bool{}
	for _, u := range b.URLs {
		if seen[u] {
			t.Fatalf("%s: %s twice", what, u)
		}
		seen[u] = true
	}
	if strings.Join(a.URLs, "\n") != strings.Join(b.URLs, "\n") {
		t.Fatalf("%s: %d urls, reference %d; or not in the same order", what, len(b.URLs), len(a.URLs))
	}
	for i := range a.URLs {
		for k := range a.Embeddings[i] {
			if math.Abs(a.Embeddings[i][k]-b.Embeddings[i][k]) > 1e-4*(1+math.Abs(a.Embeddings[i][k])) {
				t.Fatalf("%s: %s: embedding differs from the reference", what, a.URLs[i])
			}
		}
	}
	if strings.Join(a.FailedURLs, "\n") != strings.Join(b.FailedURLs, "\n") {
		t.Fatalf("%s: failed urls %v, reference %v", what, b.FailedURLs, a.FailedURLs)
	}
}

func TestEmbedResumeAfterInterrupt(t *testing.T) {
	srv := newImageServer(t)
	urls := append(manyURLs(srv.URL, goodFiles(t), 90), srv.URL+"/missing", srv.URL+"/img/corrupt.jpg")
	list := writeList(t, urls)

	refDir := t.TempDir()
	if err := runEmbed(testCtx(t), testEmbedOptions(list, refDir)); err != nil {
		t.Fatal(err)
	}
	ref := readH5(t, filepath.Join(refDir, embed.FinalName))

	dir := t.TempDir()
	ctx, cancel := context.WithCancel(testCtx(t))
	o := testEmbedOptions(list, dir)
	o.afterBatch = func(rowsAdded int64) {
		if rowsAdded >= 30 {
			cancel()
		}
	}
	err := runEmbed(ctx, o)
	if exitCode(err) != exitInterrupted || !strings.Contains(errorLine(err), "rerun the same command to resume") {
		t.Fatalf("interrupted run returned %v (exit %d), want exit %d and how to resume", err, exitCode(err), exitInterrupted)
	}
	chunks, _ := filepath.Glob(filepath.Join(dir, "Images_Embedded_*.h5"))
	if len(chunks) < 3 {
		t.Fatalf("%d chunk files after the interruption, want >= 3", len(chunks))
	}
	if _, err := os.Stat(filepath.Join(dir, embed.FinalName)); err == nil {
		t.Fatal("an interrupted run wrote the final file")
	}
	before := srv.requests.Load()
	o.afterBatch = nil
	if err := runEmbed(testCtx(t), o); err != nil {
		t.Fatal(err)
	}
	if n := srv.requests.Load() - before; n >= int64(len(urls)) {
		t.Errorf("the resumed run fetched %d URLs of %d: it did not skip the done ones", n, len(urls))
	}
	sameResult(t, "resumed", ref, readH5(t, filepath.Join(dir, embed.FinalName)))
}

func TestEmbedShardsAndMerge(t *testing.T) {
	srv := newImageServer(t)
	urls := append(manyURLs(srv.URL, goodFiles(t), 60), srv.URL+"/missing")
	list := writeList(t, urls)

	whole := t.TempDir()
	if err := runEmbed(testCtx(t), testEmbedOptions(list, whole)); err != nil {
		t.Fatal(err)
	}
	ref := readH5(t, filepath.Join(whole, embed.FinalName))

	// Both shards at once into one --output, as an array job's tasks do: each gets its own
	// shard folder, so neither can pass the other's file off as complete.
	shared := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	files := make([]string, 2)
	for i := range files {
		files[i] = filepath.Join(shared, fmt.Sprintf("shard-%05d-of-00002", i), embed.FinalName)
		wg.Go(func() {
			o := testEmbedOptions(list, shared)
			o.Shard = embed.Shard{Index: i, Count: 2}
			errs[i] = runEmbed(testCtx(t), o)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	parts := []h5Result{readH5(t, files[0]), readH5(t, files[1])}
	union := map[string]bool{}
	for _, p := range parts {
		if len(p.URLs) == 0 {
			t.Fatal("a shard is empty: 60 URLs should split")
		}
		for _, u := range append(append([]string{}, p.URLs...), p.FailedURLs...) {
			if union[u] {
				t.Fatalf("%s in both shards", u)
			}
			union[u] = true
		}
	}
	if len(union) != len(urls) {
		t.Fatalf("the shards cover %d URLs, want %d", len(union), len(urls))
	}

	merged := filepath.Join(t.TempDir(), "merged.h5")
	var so, se bytes.Buffer
	args := []string{"clipd", "--quiet", "merge", "-o", merged, files[0], files[1]}
	if code := run(testCtx(t), args, &so, &se); code != 0 {
		t.Fatalf("%v: exit %d\n%s%s", args, code, so.String(), se.String())
	}
	m := readH5(t, merged)
	byURL := map[string][]float64{}
	for i, u := range m.URLs {
		if _, dup := byURL[u]; dup {
			t.Fatalf("merge: %s twice", u)
		}
		byURL[u] = m.Embeddings[i]
	}
	if len(byURL) != len(ref.URLs) || len(m.FailedURLs) != len(ref.FailedURLs) {
		t.Fatalf("merge: %d rows and %d failures, the single run %d and %d", len(byURL), len(m.FailedURLs), len(ref.URLs), len(ref.FailedURLs))
	}
	for i, u := range ref.URLs {
		e, ok := byURL[u]
		if !ok {
			t.Fatalf("merge lacks %s", u)
		}
		for k := range e {
			if math.Abs(e[k]-ref.Embeddings[i][k]) > 1e-4*(1+math.Abs(e[k])) {
				t.Fatalf("merge: %s: embedding differs from the single run", u)
			}
		}
	}
}

// buildClipd builds the binary once per test binary run.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func clipdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "clipd-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "clipd")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// embedArgs is the command line of a test run of the binary.
func embedArgs(list, out string, extra ...string) []string {
	return append([]string{"--quiet", "embed", "--input", list, "--weights", tinyWeights, "--output", out,
		"--backend", "cpu", "--threads", "1", "--batch-size", "4", "--connections", "8",
		"--timeout", fetchLimit.String(), "--retries", "0", "--allow-private-networks"}, extra...)
}

// startClipd starts the binary; the returned wait reports its exit code.
func startClipd(t *testing.T, ctx context.Context, env []string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.CommandContext(ctx, clipdBinary(t), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}

// waitFor polls cond every millisecond until it holds or the process exits; false if it exited.
func waitFor(ctx context.Context, exited <-chan struct{}, cond func() bool) bool {
	for {
		if cond() {
			return true
		}
		select {
		case <-exited:
			return cond()
		case <-ctx.Done():
			return false
		case <-time.After(time.Millisecond):
		}
	}
}

// runKilledWhen starts the binary with args and kills it with SIGKILL as soon as when holds;
// it returns once the process is gone, saying whether the kill ended it (false: it exited on
// its own first), its output and what Wait returned.
func runKilledWhen(t *testing.T, ctx context.Context, when func() bool, args ...string) (killed bool, out *bytes.Buffer, waitErr error) {
	t.Helper()
	cmd, out := startClipd(t, ctx, nil, args...)
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	if waitFor(ctx, exited, when) {
		cmd.Process.Signal(syscall.SIGKILL)
	}
	<-exited
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled(), out, waitErr
}

func countChunks(dir string) int {
	m, _ := filepath.Glob(filepath.Join(dir, "Images_Embedded_*.h5"))
	return len(m)
}

// kill -9 at several points (first chunk, mid-run, while merging), rerun each time, and the
// final file equals an uninterrupted run's.
func TestEmbedCrashResume(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	srv := newImageServer(t)
	srv.delay.Store(int64(2 * time.Millisecond))
	urls := append(manyURLs(srv.URL, goodFiles(t), 200), srv.URL+"/missing", srv.URL+"/img/truncated.jpg")
	list := writeList(t, urls)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	refDir := t.TempDir()
	cmd, out := startClipd(t, ctx, nil, embedArgs(list, refDir, "--chunk-size", "10")...)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("uninterrupted run: %v\n%s", err, out)
	}
	ref := readH5(t, filepath.Join(refDir, embed.FinalName))

	dir := t.TempDir()
	final := filepath.Join(dir, embed.FinalName)
	points := []struct {
		name  string
		extra []string // more flags
		when  func() bool
	}{
		{"after the first chunk", nil, func() bool { return countChunks(dir) >= 1 }},
		{"mid-run", nil, func() bool { return countChunks(dir) >= 10 }},
		// the hidden test flag holds the process just before the merge; the kill lands there
		{"before the merge", []string{"--test-pause-before-merge", "30s"}, func() bool { return countChunks(dir) >= 21 }},
		{"during the merge", nil, func() bool { _, err := os.Stat(final + ".tmp"); return err == nil }},
	}
	hit := 0
	for _, p := range points {
		killed, out, waitErr := runKilledWhen(t, ctx, p.when, embedArgs(list, dir, append([]string{"--chunk-size", "10"}, p.extra...)...)...)
		if killed {
			hit++
			t.Logf("killed %s (%d chunk files on disk)", p.name, countChunks(dir))
		} else {
			t.Logf("%s: the run ended before the kill (%v)\n%s", p.name, waitErr, out)
		}
	}
	if hit < 3 {
		t.Errorf("only %d of %d kill points were hit", hit, len(points))
	}
	cmd, out = startClipd(t, ctx, nil, embedArgs(list, dir, "--chunk-size", "10")...)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("final rerun: %v\n%s", err, out)
	}
	sameResult(t, "after kill -9", ref, readH5(t, final))
	if n := countChunks(dir); n != 0 {
		t.Errorf("%d chunk files left", n)
	}
}

// peakRSS runs the binary over n URLs of one small image and returns its peak RSS in bytes.
func peakRSS(t *testing.T, ctx context.Context, srv *imageServer, n int) int64 {
	t.Helper()
	urls := make([]string, n)
	for i := range urls {
		urls[i] = fmt.Sprintf("%s/img/img_09.jpg?n=%d", srv.URL, i)
	}
	list := writeList(t, urls)
	cmd, out := startClipd(t, ctx, nil, embedArgs(list, t.TempDir(), "--memory", "1GiB", "--chunk-size", "1000", "--batch-size", "32", "--connections", "32")...)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%d URLs: %v\n%s", n, err, out)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Skip("no rusage on this platform")
	}
	return ru.Maxrss * 1024 // Linux: kilobytes
}

func TestEmbedPeakRSSFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and embeds 21k URLs")
	}
	srv := newImageServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	small := peakRSS(t, ctx, srv, 1000)
	large := peakRSS(t, ctx, srv, 20000)
	t.Logf("peak RSS: 1k URLs %.1f MB, 20k URLs %.1f MB", float64(small)/1e6, float64(large)/1e6)
	if float64(large) > 1.3*float64(small)+30e6 {
		t.Errorf("peak RSS grew from %.1f MB (1k URLs) to %.1f MB (20k URLs)", float64(small)/1e6, float64(large)/1e6)
	}
}

func TestResolveShard(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, c := range []struct {
		flag  string
		count int
		env   map[string]string
		want  string
		from  string
		fails bool
	}{
		{"", 0, nil, "0/1", "", false},
		{"2/5", 0, map[string]string{"JOB_COMPLETION_INDEX": "1"}, "2/5", "--shard", false},
		{"", 4, map[string]string{"JOB_COMPLETION_INDEX": "3"}, "3/4", "JOB_COMPLETION_INDEX", false},
		{"", 0, map[string]string{"JOB_COMPLETION_INDEX": "3"}, "", "", true},
		{"", 0, map[string]string{"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3"}, "2/3", "SLURM_ARRAY_TASK_ID", false},
		{"", 0, map[string]string{"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "2", "SLURM_ARRAY_TASK_COUNT": "3"}, "2/3", "SLURM_ARRAY_TASK_ID", false},
		// An array that is not 0..COUNT-1 cannot say the shard: a resubmitted --array=1 of a
		// 4-task run would otherwise be "shard 0 of 1", the whole input.
		{"", 0, map[string]string{"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "1", "SLURM_ARRAY_TASK_COUNT": "1"}, "", "", true},
		{"", 0, map[string]string{"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "4", "SLURM_ARRAY_TASK_COUNT": "3"}, "", "", true},
		{"", 0, map[string]string{"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "3", "SLURM_ARRAY_TASK_COUNT": "2"}, "", "", true}, // --array=0,3
		// With the whole array's size given (--shard-count / CLIPD_SHARD_COUNT), the task id is the shard.
		{"", 4, map[string]string{"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "1", "SLURM_ARRAY_TASK_COUNT": "1"}, "1/4", "SLURM_ARRAY_TASK_ID", false},
		{"", 4, map[string]string{"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "1"}, "", "", true},
		{"", 0, map[string]string{"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "3"}, "", "", true},
		{"3/3", 0, nil, "", "", true},
	} {
		s, from, err := resolveShard(c.flag, c.count, env(c.env))
		if c.fails {
			if exitCode(err) != exitUsage {
				t.Errorf("%q %d %v: got %v, want a usage error", c.flag, c.count, c.env, err)
			}
			continue
		}
		if err != nil || s.String() != c.want || from != c.from {
			t.Errorf("%q %d %v: got %s from %q (%v), want %s from %q", c.flag, c.count, c.env, s, from, err, c.want, c.from)
		}
	}
}

// Bad flags, input, weights and output end with one line and their exit code.
func TestEmbedErrors(t *testing.T) {
	srv := newImageServer(t)
	list := writeList(t, []string{srv.URL + "/img/img_00.jpg"})
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, []byte("x"), 0o644)
	badWeights := filepath.Join(t.TempDir(), "bad.safetensors")
	os.WriteFile(badWeights, []byte("not safetensors at all"), 0o644)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--dtype", "int8"}, exitUsage, "--dtype"},
		{[]string{"--preprocess", "magic"}, exitUsage, "--preprocess"},
		{[]string{"--shard", "2/2"}, exitUsage, "--shard"},
		{[]string{"--input", filepath.Join(t.TempDir(), "nope.txt")}, exitInput, "nope.txt"},
		{[]string{"--weights", badWeights}, exitBadWeights, "bad.safetensors"},
		{[]string{"--weights", filepath.Join(t.TempDir(), "missing.safetensors")}, exitInput, "missing.safetensors"},
		{[]string{"--output", filepath.Join(notDir, "out")}, exitOutput, "file"},
	} {
		args := []string{"clipd", "--quiet", "embed", "--input", list, "--weights", tinyWeights, "--output", t.TempDir(), "--backend", "cpu", "--allow-private-networks"}
		args = append(args, c.args...)
		var so, se bytes.Buffer
		code := run(testCtx(t), args, &so, &se)
		lines := strings.Split(strings.TrimSpace(se.String()), "\n")
		if code != c.code || !strings.Contains(se.String(), c.want) || len(lines) != 1 {
			t.Errorf("%v: exit %d, want %d with one line containing %q; stderr:\n%s", c.args, code, c.code, c.want, se.String())
		}
	}
}
