// embed_test.go: Run end to end on the tiny test model: a URL list served on 127.0.0.1 and
// the same images as a folder give the same embeddings; events; classified errors.
package embed_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/embed"
)

const (
	tinyWeights = "../testdata/golden/tiny_openai_quick_f32"
	imagesDir   = "../cmd/clipd/testdata/e2e" // made by the repository's image-fixture script
)

// imageHandler serves imagesDir under /img/NAME; anything else is a 404.
func imageHandler() http.Handler {
	return http.StripPrefix("/img/", http.FileServer(http.Dir(imagesDir)))
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func config(input, out string) embed.Config {
	return embed.Config{Input: input, Weights: tinyWeights, Output: out, Backend: engine.BackendCPU,
		Threads: 1, BatchSize: 4, ChunkSize: 5, Connections: 4, Memory: 1 << 30, Timeout: 5 * time.Second, Retries: -1,
		AllowPrivateNetworks: true} // the test servers are on 127.0.0.1
}

// table is a final file's urls and embeddings as h5py reads them.
type table struct {
	URLs       []string    `json:"urls"`
	Embeddings [][]float64 `json:"embeddings"`
	Failed     []string    `json:"failed_urls"`
	Reasons    []string    `json:"failed_reasons"`
	Stages     []string    `json:"failed_stages"`
}

func readFinal(t *testing.T, path string) table {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("needs Debian's /usr/bin/python3 with h5py")
	}
	const py = `
import sys, json, h5py
f = h5py.File(sys.argv[1], "r")
s = lambda n: [x.decode() for x in f[n][:]]
json.dump({"urls": s("urls"), "embeddings": f["embeddings"][:].astype("float64").tolist(),
           "failed_urls": s("failed_urls"), "failed_reasons": s("failed_reasons"),
           "failed_stages": s("failed_stages")}, sys.stdout)
`
	out, err := exec.CommandContext(testCtx(t), "/usr/bin/python3", "-c", py, path).Output()
	if err != nil {
		t.Fatalf("h5py cannot read %s: %v", path, err)
	}
	var tb table
	if err := json.Unmarshal(out, &tb); err != nil {
		t.Fatal(err)
	}
	return tb
}

// The same images as URLs (fetch stage) and as a folder (read stage) embed identically; the
// folder's bad files fail in the decode stage with their reasons.
func TestFolderEqualsURLs(t *testing.T) {
	names := []string{"img_00.jpg", "img_05.jpg", "img_13.jpg", "img_24.png", "img_27.png", "corrupt.jpg", "truncated.jpg"}
	folder := t.TempDir()
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(imagesDir, n))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(folder, "sub"), 0o755)
		dst := filepath.Join(folder, n)
		if strings.HasSuffix(n, ".png") {
			dst = filepath.Join(folder, "sub", n)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(folder, "notes.txt"), []byte("not an image"), 0o644)

	srv := httptest.NewServer(imageHandler())
	defer srv.Close()
	var urls []string
	for _, n := range names {
		urls = append(urls, srv.URL+"/img/"+n)
	}
	list := filepath.Join(t.TempDir(), "urls.txt")
	os.WriteFile(list, []byte(strings.Join(urls, "\n")+"\n"), 0o644)

	byURL, err := embed.Run(testCtx(t), config(list, t.TempDir()), embed.Events{})
	if err != nil {
		t.Fatal(err)
	}
	byFolder, err := embed.Run(testCtx(t), config(folder, t.TempDir()), embed.Events{})
	if err != nil {
		t.Fatal(err)
	}
	if byURL.Rows != 5 || byURL.Failures != 2 || byFolder.Rows != 5 || byFolder.Failures != 2 {
		t.Fatalf("rows/failures: urls %d/%d, folder %d/%d; want 5/2 each", byURL.Rows, byURL.Failures, byFolder.Rows, byFolder.Failures)
	}
	if byFolder.Stages.ReadOK != 7 || byFolder.Stages.FetchOK != 0 || byURL.Stages.FetchOK != 7 || byURL.Stages.ReadOK != 0 {
		t.Errorf("stages: folder %+v, urls %+v", byFolder.Stages, byURL.Stages)
	}
	a, b := readFinal(t, byURL.Output), readFinal(t, byFolder.Output)
	emb := map[string][]float64{}
	for i, u := range a.URLs {
		emb[filepath.Base(u)] = a.Embeddings[i]
	}
	for i, p := range b.URLs {
		if !filepath.IsAbs(p) || !strings.HasPrefix(p, folder) {
			t.Errorf("folder row %q: want the file's absolute path", p)
		}
		want, ok := emb[filepath.Base(p)]
		if !ok {
			t.Fatalf("folder row %s has no URL twin", p)
		}
		for k := range want {
			if math.Abs(want[k]-b.Embeddings[i][k]) > 1e-5*(1+math.Abs(want[k])) { // batches differ: float sums may too
				t.Fatalf("%s: embedding differs between fetch and read", p)
			}
		}
	}
	for i, p := range b.Failed {
		if b.Stages[i] != "decode" || !(strings.Contains(p, "corrupt") || strings.Contains(p, "truncated")) {
			t.Errorf("folder failure %s: stage %s reason %s", p, b.Stages[i], b.Reasons[i])
		}
	}
}

// A file that vanishes between the listing and the read fails alone in the read stage.
func TestReadFailure(t *testing.T) {
	list := filepath.Join(t.TempDir(), "urls.txt")
	good, _ := filepath.Abs(filepath.Join(imagesDir, "img_01.jpg"))
	folder := t.TempDir()
	b, _ := os.ReadFile(good)
	os.WriteFile(filepath.Join(folder, "a.jpg"), b, 0o644)
	os.WriteFile(filepath.Join(folder, "b.jpg"), nil, 0o644) // empty
	_ = list
	sum, err := embed.Run(testCtx(t), config(folder, t.TempDir()), embed.Events{})
	if err != nil {
		t.Fatal(err)
	}
	tb := readFinal(t, sum.Output)
	if len(tb.URLs) != 1 || len(tb.Failed) != 1 || tb.Stages[0] != "read" || tb.Reasons[0] != "empty file" {
		t.Fatalf("rows %v, failures %v %v %v", tb.URLs, tb.Failed, tb.Stages, tb.Reasons)
	}
}

// Events: Started once before any progress, Progress while running, log lines through Log;
// the rerun of a finished Config reports AlreadyComplete and does nothing.
func TestEvents(t *testing.T) {
	srv := httptest.NewServer(imageHandler())
	defer srv.Close()
	var urls []string
	for i := range 12 {
		urls = append(urls, srv.URL+"/img/img_0"+string(rune('0'+i%10))+".jpg?n="+string(rune('a'+i)))
	}
	list := filepath.Join(t.TempDir(), "urls.txt")
	os.WriteFile(list, []byte(strings.Join(urls, "\n")+"\n"), 0o644)
	out := t.TempDir()
	cfg := config(list, out)
	cfg.ProgressEvery = time.Millisecond
	var mu sync.Mutex
	var started int
	var progress []embed.Progress
	var logs []string
	ev := embed.Events{
		Started: func(s embed.Started) {
			mu.Lock()
			defer mu.Unlock()
			started++
			if len(progress) > 0 || s.EmbedDim != 16 || !strings.Contains(s.Plan, "batch") || !strings.HasPrefix(s.Backend, "cpu") {
				t.Errorf("Started %+v after %d progress events", s, len(progress))
			}
		},
		Progress: func(p embed.Progress) { mu.Lock(); progress = append(progress, p); mu.Unlock() },
		Log:      func(l slog.Level, msg string, args ...any) { mu.Lock(); logs = append(logs, msg); mu.Unlock() },
	}
	sum, err := embed.Run(testCtx(t), cfg, ev)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if started != 1 || len(progress) == 0 || len(logs) == 0 {
		t.Errorf("started %d times, %d progress events, %d log lines", started, len(progress), len(logs))
	}
	for i := 1; i < len(progress); i++ {
		if progress[i].Done() < progress[i-1].Done() {
			t.Errorf("progress went back: %d then %d", progress[i-1].Done(), progress[i].Done())
		}
	}
	// No limit, yet the total is known: the list is a local file, read to its end early.
	if last := progress[len(progress)-1]; last.Total != 12 || !last.TotalExact {
		t.Errorf("last progress: total %d exact %v, want 12 exact", last.Total, last.TotalExact)
	}
	mu.Unlock()
	if !sum.Completed || sum.Rows != 12 || sum.Output != filepath.Join(out, embed.FinalName) {
		t.Fatalf("summary %+v", sum)
	}
	again, err := embed.Run(testCtx(t), cfg, embed.Events{})
	if err != nil || !again.AlreadyComplete || again.Rows != 0 {
		t.Fatalf("rerun: %+v, %v", again, err)
	}
}

// Errors are classified: configuration, input, output, interruption.
func TestErrors(t *testing.T) {
	ctx := testCtx(t)
	list := filepath.Join(t.TempDir(), "urls.txt")
	os.WriteFile(list, []byte("http://127.0.0.1:1/x.jpg\n"), 0o644)
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, []byte("x"), 0o644)
	for _, c := range []struct {
		name string
		cfg  func(*embed.Config)
		want error
	}{
		{"dtype", func(c *embed.Config) { c.Dtype = "int8" }, embed.ErrConfig},
		{"shard", func(c *embed.Config) { c.Shard = embed.Shard{Index: 2, Count: 2} }, embed.ErrConfig},
		{"no input", func(c *embed.Config) { c.Input = "" }, embed.ErrConfig},
		{"missing input", func(c *embed.Config) { c.Input = filepath.Join(t.TempDir(), "nope.txt") }, embed.ErrInput},
		{"output under a file", func(c *embed.Config) { c.Output = filepath.Join(notDir, "out") }, embed.ErrOutput},
	} {
		cfg := config(list, t.TempDir())
		c.cfg(&cfg)
		if _, err := embed.Run(ctx, cfg, embed.Events{}); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// An interrupted run: ErrInterrupted, its rows saved; the rerun finishes it.
	srv := httptest.NewServer(imageHandler())
	defer srv.Close()
	var urls []string
	for i := range 40 {
		urls = append(urls, srv.URL+"/img/img_03.jpg?n="+strings.Repeat("x", i+1))
	}
	os.WriteFile(list, []byte(strings.Join(urls, "\n")+"\n"), 0o644)
	cfg := config(list, t.TempDir())
	stopCtx, stop := context.WithCancel(ctx)
	cfg.Hooks.AfterBatch = func(rows int64) {
		if rows >= 8 {
			stop()
		}
	}
	sum, err := embed.Run(stopCtx, cfg, embed.Events{})
	if !errors.Is(err, embed.ErrInterrupted) || sum.Completed || sum.Rows < 8 {
		t.Fatalf("interrupted run: %+v, %v", sum, err)
	}
	cfg.Hooks.AfterBatch = nil
	sum2, err := embed.Run(ctx, cfg, embed.Events{})
	if err != nil || sum2.ResumedRows < 8 || sum2.ResumedRows+sum2.Rows != 40 {
		t.Fatalf("resumed run: %+v, %v", sum2, err)
	}
}
