// local_test.go: inputs users already have (issue "inputs users already have"): a folder of
// mixed, partly broken files, a list mixing local paths, file:// URLs and http(s) URLs, saved
// columns and image sizes, and kill -9 then resume on a folder, against the same bytes served
// on 127.0.0.1.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/embed"
)

// localResult is what a local-input test reads back with h5py.
type localResult struct {
	URLs       []string    `json:"urls"`
	Embeddings [][]float64 `json:"embeddings"`
	Widths     []int       `json:"widths"`
	Heights    []int       `json:"heights"`
	Failed     []string    `json:"failed_urls"`
	Reasons    []string    `json:"failed_reasons"`
	Stages     []string    `json:"failed_stages"`
	Captions   []string    `json:"caption"`
}

func readLocal(t *testing.T, path string) localResult {
	t.Helper()
	const py = `
import sys, json, h5py
f = h5py.File(sys.argv[1], "r")
s = lambda n: [x.decode() for x in f[n][:]] if n in f else None
i = lambda n: [int(x) for x in f[n][:]] if n in f else None
json.dump({"urls": s("urls"), "embeddings": f["embeddings"][:].astype("float64").tolist(),
  "widths": i("widths"), "heights": i("heights"), "failed_urls": s("failed_urls"),
  "failed_reasons": s("failed_reasons"), "failed_stages": s("failed_stages"), "caption": s("caption")}, sys.stdout)
`
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/python3", "-c", py, path).Output()
	if err != nil {
		t.Fatalf("h5py cannot read %s: %v", path, err)
	}
	var r localResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// mixedFolder fills dir with n files cycling over the good fixture images (JPEG and PNG, in
// subfolders), plus the bad ones: corrupt, truncated, a decompression bomb, an HTML page
// named .jpg and a dangling link (a file this root-run test cannot make unreadable: root reads
// through any permission). A folder named like an image is walked into, not read. It returns the good names and
// the bad ones with a word their reason must contain.
func mixedFolder(t *testing.T, dir string, n int) (good []string, bad map[string]string) {
	t.Helper()
	files := goodFiles(t)
	for i := range n {
		name := filepath.Join(fmt.Sprintf("part%d", i%3), fmt.Sprintf("%03d_%s", i, files[i%len(files)]))
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), readFile(t, filepath.Join(e2eDir, files[i%len(files)])), 0o644); err != nil {
			t.Fatal(err)
		}
		good = append(good, name)
	}
	bad = map[string]string{"corrupt.jpg": "jpeg", "truncated.jpg": "truncated", "bomb.png": "too many pixels", "page.jpg": "not an image",
		"dangling.jpg": "file not found"}
	for name := range bad {
		p := filepath.Join(dir, name)
		switch name {
		case "page.jpg":
			os.WriteFile(p, readFile(t, filepath.Join(e2eDir, "page.html")), 0o644)
		case "dangling.jpg":
			os.Symlink(filepath.Join(dir, "nowhere.jpg"), p)
		default:
			os.WriteFile(p, readFile(t, filepath.Join(e2eDir, name)), 0o644)
		}
	}
	os.Mkdir(filepath.Join(dir, "folder.jpg"), 0o755)
	return good, bad
}

// A folder of 200 images and 6 bad entries: every file accounted once, the bad ones with
// their stage and reason, the embeddings equal to the engine's for the same bytes, the
// images' sizes kept.
func TestFolderInputEndToEnd(t *testing.T) {
	dir := t.TempDir()
	good, bad := mixedFolder(t, dir, 200)
	out := t.TempDir()
	o := testEmbedOptions(dir, out)
	if err := runEmbed(testCtx(t), o); err != nil {
		t.Fatal(err)
	}
	r := readLocal(t, filepath.Join(out, embed.FinalName))
	if len(r.URLs) != len(good) || len(r.Failed) != len(bad) {
		t.Fatalf("%d rows and %d failures, want %d and %d: %v %v", len(r.URLs), len(r.Failed), len(good), len(bad), r.Failed, r.Reasons)
	}
	for i, p := range r.Failed {
		want := bad[filepath.Base(p)]
		if want == "" || !strings.Contains(r.Reasons[i], want) {
			t.Errorf("%s failed with %q (stage %s), want a reason containing %q", p, r.Reasons[i], r.Stages[i], want)
		}
	}
	// The same embeddings as the engine gives the same bytes (what TestEmbedEndToEnd checks
	// of the http path).
	want := expectedEmbeddings(t, goodFiles(t))
	for i, p := range r.URLs {
		name := filepath.Base(p)[4:] // drop the "NNN_" prefix
		if !closeEnough(r.Embeddings[i], want[name]) {
			t.Fatalf("%s: the embedding differs from the engine's for the same bytes", p)
		}
		if r.Widths[i] <= 0 || r.Heights[i] <= 0 {
			t.Fatalf("%s: size %dx%d", p, r.Widths[i], r.Heights[i])
		}
	}
}

// A list mixing local paths, file:// URLs and http URLs (and a relative image path): every
// row once, local and fetched bytes giving the same embedding; a CSV's caption column saved.
func TestMixedListAndSavedColumns(t *testing.T) {
	srv := newImageServer(t)
	dir := t.TempDir()
	files := goodFiles(t)[:6]
	var rows []string
	for i, f := range files {
		p := filepath.Join(dir, f)
		os.WriteFile(p, readFile(t, filepath.Join(e2eDir, f)), 0o644)
		var u string
		switch i % 3 {
		case 0:
			u = p
		case 1:
			u = (&url.URL{Scheme: "file", Path: p}).String()
		default:
			u = f // relative to the list's folder
		}
		rows = append(rows, fmt.Sprintf("%s,caption of %s", u, f), fmt.Sprintf("%s/img/%s,caption of %s over http", srv.URL, f, f))
	}
	list := filepath.Join(dir, "list.csv")
	os.WriteFile(list, []byte("url,caption\n"+strings.Join(rows, "\n")+"\n"), 0o644)
	out := t.TempDir()
	o := testEmbedOptions(list, out)
	o.SaveColumns = []string{"caption"}
	if err := runEmbed(testCtx(t), o); err != nil {
		t.Fatal(err)
	}
	r := readLocal(t, filepath.Join(out, embed.FinalName))
	if len(r.URLs) != 2*len(files) || len(r.Failed) != 0 || len(r.Captions) != len(r.URLs) {
		t.Fatalf("%d rows, %d failures, %d captions: %v", len(r.URLs), len(r.Failed), len(r.Captions), r.Failed)
	}
	byName := map[string][]float64{}
	for i, u := range r.URLs {
		name := filepath.Base(u)
		if !strings.HasPrefix(r.Captions[i], "caption of "+name) {
			t.Errorf("row %s has caption %q", u, r.Captions[i])
		}
		if e, ok := byName[name]; ok {
			for k := range e {
				if math.Abs(e[k]-r.Embeddings[i][k]) > 1e-5*(1+math.Abs(e[k])) {
					t.Fatalf("%s: local and fetched bytes embed differently", name)
				}
			}
		}
		byName[name] = r.Embeddings[i]
	}
	// inspect lists the sizes and the saved column among the datasets.
	code, so, se := clipdRun(t, "inspect", out)
	if code != 0 || !strings.Contains(so, "widths, heights") || !strings.Contains(so, "caption") {
		t.Errorf("clipd inspect: exit %d\n%s%s", code, so, se)
	}
}

// kill -9 in the middle of a folder run, then the same command: equal to a clean run.
func TestFolderCrashResume(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	mixedFolder(t, dir, 120)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ref := t.TempDir()
	cmd, out := startClipd(t, ctx, nil, embedArgs(dir, ref, "--chunk-size", "10")...)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("clean run: %v\n%s", err, out)
	}
	want := readH5(t, filepath.Join(ref, embed.FinalName))

	run := t.TempDir()
	if killed, killedOut, _ := runKilledWhen(t, ctx, func() bool { return countChunks(run) >= 3 },
		embedArgs(dir, run, "--chunk-size", "10", "--batch-size", "1")...); !killed {
		t.Logf("the run ended before the kill:\n%s", killedOut)
	}
	cmd, out = startClipd(t, ctx, nil, embedArgs(dir, run, "--chunk-size", "10")...)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("rerun: %v\n%s", err, out)
	}
	sameResult(t, "folder after kill -9", want, readH5(t, filepath.Join(run, embed.FinalName)))
}
