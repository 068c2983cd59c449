// fetch_test.go: downloads from a fake hub on 127.0.0.1: a full fetch, the cache reused,
// sha256 checks, resume with Range, a server that ignores Range or answers with a wrong
// Content-Range, 404s, 5xx retries, a stalled connection, and the lock.
package weights

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clipd/clipd/weights/weightstest"
)

const testRepo = "acme/tiny-clip"

func TestMain(m *testing.M) {
	// The fetches log what they do; -v shows nothing useful from it.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

func tinyModel(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("../testdata/golden/tiny_openai_quick_f32/model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var tinyConfig = []byte(`{"model_cfg": {"embed_dim": 16, "quick_gelu": true, "vision_cfg": {"width": 32, "layers": 2, "patch_size": 8, "image_size": 32, "head_width": 16}}}`)

// newTestHub serves testRepo at revision "v1" with model.safetensors and
// open_clip_config.json (no config.json: its 404 must be skipped).
func newTestHub(t *testing.T) (*weightstest.Hub, []byte) {
	model := tinyModel(t)
	hub := weightstest.NewHub(t, map[string]*weightstest.Repo{
		testRepo: {Revision: "v1", Files: map[string][]byte{
			"model.safetensors":     model,
			"open_clip_config.json": tinyConfig,
		}},
	})
	return hub, model
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func hubOptions(hub *weightstest.Hub, cache string) FetchOptions {
	return FetchOptions{
		Name: testRepo, Revision: "v1", CacheDir: cache, Endpoint: hub.URL,
		RetryBackoff: time.Millisecond, StallTimeout: 10 * time.Second,
	}
}

const cdnPath = "/cdn/" + testRepo + "/model.safetensors"

type recordedProgress struct {
	mu       sync.Mutex
	starts   [][2]int64
	added    int64
	finished int
}

func (p *recordedProgress) Start(_ string, total, done int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starts = append(p.starts, [2]int64{total, done})
}
func (p *recordedProgress) Add(n int) { p.mu.Lock(); p.added += int64(n); p.mu.Unlock() }
func (p *recordedProgress) Finish()   { p.mu.Lock(); p.finished++; p.mu.Unlock() }

func mustFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes, sha256 %s; want %d bytes, sha256 %s", path, len(got), weightstest.SHA256(got), len(want), weightstest.SHA256(want))
	}
}

func mustNotExist(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s exists (err %v), want it absent", path, err)
	}
}

func TestFetchFromHub(t *testing.T) {
	hub, model := newTestHub(t)
	cache := t.TempDir()
	o := hubOptions(hub, cache)
	prog := &recordedProgress{}
	o.Progress = prog
	o.Token = "secret"
	res, err := Fetch(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	wantDir := filepath.Join(cache, "weights", "acme", "tiny-clip")
	if res.Dir != wantDir || res.Path != filepath.Join(wantDir, "model.safetensors") || res.Cached {
		t.Fatalf("result %+v, want dir %s, not cached", res, wantDir)
	}
	sha := weightstest.SHA256(model)
	mustFile(t, res.Path, model)
	mustFile(t, filepath.Join(wantDir, "open_clip_config.json"), tinyConfig)
	mustFile(t, res.Path+".sha256", []byte(sha+"  model.safetensors\n"))
	mustNotExist(t, filepath.Join(wantDir, "config.json"))
	mustNotExist(t, res.Path+".part")
	mustNotExist(t, res.Path+".part.meta")

	m, err := ReadManifest(wantDir)
	if err != nil {
		t.Fatal(err)
	}
	if m.SHA256 != sha || m.Size != int64(len(model)) || m.Verified != "hub" || m.Commit != weightstest.Commit ||
		m.Revision != "v1" || m.URL != hub.URL+"/acme/tiny-clip/resolve/v1/model.safetensors" || m.File != "model.safetensors" ||
		m.Fetched.IsZero() || len(m.Extras) != 1 || m.Extras[0].File != "open_clip_config.json" {
		t.Fatalf("manifest %+v", m)
	}
	if RecordedSHA256(res.Path) != sha {
		t.Fatalf("RecordedSHA256 = %q, want %s", RecordedSHA256(res.Path), sha)
	}
	if len(prog.starts) != 1 || prog.starts[0] != [2]int64{int64(len(model)), 0} || prog.added != int64(len(model)) || prog.finished != 1 {
		t.Fatalf("progress: starts %v added %d finished %d", prog.starts, prog.added, prog.finished)
	}
	hub.Lock()
	auth := append([]string(nil), hub.AuthHeaders...)
	hub.Unlock()
	for _, a := range auth {
		if a != "Bearer secret" {
			t.Fatalf("hub saw Authorization %q, want the token", a)
		}
	}
	got, err := Resolve(testRepo, cache)
	if err != nil || got != wantDir {
		t.Fatalf("Resolve = %q, %v; want %s", got, err, wantDir)
	}
}

func TestFetchReusesCache(t *testing.T) {
	hub, model := newTestHub(t)
	cache := t.TempDir()
	ctx := testCtx(t)
	res, err := Fetch(ctx, hubOptions(hub, cache))
	if err != nil {
		t.Fatal(err)
	}
	_, gets := hub.Count(cdnPath)
	if gets != 1 {
		t.Fatalf("%d GETs of the file, want 1", gets)
	}
	_, configGets := hub.Count("/acme/tiny-clip/resolve/v1/open_clip_config.json")

	again, err := Fetch(ctx, hubOptions(hub, cache))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cached || again.Dir != res.Dir {
		t.Fatalf("second fetch: %+v, want the cached %s", again, res.Dir)
	}
	if _, gets := hub.Count(cdnPath); gets != 1 {
		t.Fatalf("the second fetch made a GET of the file (%d GETs)", gets)
	}
	if _, g := hub.Count("/acme/tiny-clip/resolve/v1/open_clip_config.json"); g != configGets {
		t.Fatal("the second fetch downloaded the config again")
	}

	// A cached file that no longer matches its recorded sha256 is downloaded again.
	corrupt := append([]byte(nil), model...)
	corrupt[len(corrupt)-1] ^= 0xff
	if err := os.WriteFile(res.Path, corrupt, 0o644); err != nil {
		t.Fatal(err)
	}
	fixed, err := Fetch(ctx, hubOptions(hub, cache))
	if err != nil {
		t.Fatal(err)
	}
	if fixed.Cached {
		t.Fatal("a corrupt cached file was reused")
	}
	mustFile(t, res.Path, model)
	if _, gets := hub.Count(cdnPath); gets != 2 {
		t.Fatalf("%d GETs of the file, want 2", gets)
	}

	// With the server gone, the verified cache still serves.
	hub.Close()
	o := hubOptions(hub, cache)
	o.Retries = -1
	offline, err := Fetch(ctx, o)
	if err != nil || !offline.Cached {
		t.Fatalf("offline fetch: %+v, %v; want the cache", offline, err)
	}
}

func TestFetchDefaultRepoPinsRevision(t *testing.T) {
	model := tinyModel(t)
	pinned := DefaultRevision(DefaultModel)
	if pinned != "c237dc49a33fc61debc9276459120b7eac67e7ef" {
		t.Fatalf("DefaultRevision(%s) = %s", DefaultModel, pinned)
	}
	hub := weightstest.NewHub(t, map[string]*weightstest.Repo{
		DefaultModel: {Revision: pinned, Files: map[string][]byte{"model.safetensors": model, "config.json": []byte(`{"model_type": "clip"}`)}},
	})
	cache := t.TempDir()
	ctx := testCtx(t)
	res, err := Fetch(ctx, FetchOptions{CacheDir: cache, Endpoint: hub.URL, RetryBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if revs := hub.SeenRevisions(); revs[0] != pinned || res.Manifest.Revision != pinned || res.Manifest.Name != DefaultModel {
		t.Fatalf("asked for revisions %q, manifest %+v; want %s", revs, res.Manifest, pinned)
	}
	mustFile(t, filepath.Join(res.Dir, "config.json"), []byte(`{"model_type": "clip"}`))
	if got, err := Resolve("", cache); err != nil || got != res.Dir {
		t.Fatalf("Resolve(\"\") = %q, %v; want %s", got, err, res.Dir)
	}

	// main has no model.safetensors: the 404 says what to do.
	_, err = Fetch(ctx, FetchOptions{Revision: "main", CacheDir: t.TempDir(), Endpoint: hub.URL, RetryBackoff: time.Millisecond})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	for _, want := range []string{"404", "RevisionNotFound", "--revision", pinned, "https:// URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("404 message %q lacks %q", err, want)
		}
	}
}

func TestFetchRevisionIsEscaped(t *testing.T) {
	model := tinyModel(t)
	hub := weightstest.NewHub(t, map[string]*weightstest.Repo{
		testRepo: {Revision: "refs/pr/66", Files: map[string][]byte{"model.safetensors": model}},
	})
	o := hubOptions(hub, t.TempDir())
	o.Revision = "refs/pr/66"
	res, err := Fetch(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Manifest.URL, "/resolve/refs%2Fpr%2F66/model.safetensors") {
		t.Fatalf("URL %s does not escape the revision", res.Manifest.URL)
	}
	mustFile(t, res.Path, model)
}

func TestFetchWrongSHA256FromFlag(t *testing.T) {
	hub, model := newTestHub(t)
	hub.Plain["tiny.safetensors"] = model
	cache := t.TempDir()
	wrong := strings.Repeat("ab", 32)

	// A plain server gives no sha256: the download happens, fails the check, and is deleted.
	res, err := Fetch(testCtx(t), FetchOptions{Name: hub.URL + "/plain/tiny.safetensors", SHA256: wrong, CacheDir: cache, RetryBackoff: time.Millisecond})
	if !errors.Is(err, ErrChecksum) || res != nil {
		t.Fatalf("err = %v, want ErrChecksum", err)
	}
	if !strings.Contains(err.Error(), weightstest.SHA256(model)) || !strings.Contains(err.Error(), wrong) {
		t.Fatalf("message %q lacks the two hashes", err)
	}
	name, _ := NameForURL(hub.URL + "/plain/tiny.safetensors")
	dir := filepath.Join(cache, "weights", filepath.FromSlash(name))
	mustNotExist(t, filepath.Join(dir, "tiny.safetensors"))
	mustNotExist(t, filepath.Join(dir, "tiny.safetensors.part"))
	mustNotExist(t, filepath.Join(dir, ManifestFile))
	if _, err := Resolve(hub.URL+"/plain/tiny.safetensors", cache); !errors.Is(err, ErrMissing) {
		t.Fatalf("Resolve after a failed fetch: %v, want ErrMissing", err)
	}

	// The hub tells the sha256: a different --sha256 fails before any download.
	o := hubOptions(hub, cache)
	o.SHA256 = wrong
	if _, err := Fetch(testCtx(t), o); !errors.Is(err, ErrChecksum) {
		t.Fatalf("err = %v, want ErrChecksum", err)
	}
	if _, gets := hub.Count(cdnPath); gets != 0 {
		t.Fatalf("%d GETs of the file, want none", gets)
	}

	// The right one, in capitals, passes.
	o.SHA256 = strings.ToUpper(weightstest.SHA256(model))
	res, err = Fetch(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.Verified != "flag" {
		t.Fatalf("verified %q, want flag", res.Manifest.Verified)
	}
}

func TestFetchHubSHA256Mismatch(t *testing.T) {
	hub, _ := newTestHub(t)
	hub.WrongLinkedSHA = strings.Repeat("0", 64)
	cache := t.TempDir()
	_, err := Fetch(testCtx(t), hubOptions(hub, cache))
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("err = %v, want ErrChecksum", err)
	}
	dir := filepath.Join(cache, "weights", "acme", "tiny-clip")
	mustNotExist(t, filepath.Join(dir, "model.safetensors"))
	mustNotExist(t, filepath.Join(dir, "model.safetensors.part"))
}

func TestFetchResumesInANewRun(t *testing.T) {
	hub, model := newTestHub(t)
	cache := t.TempDir()
	half := int64(len(model) / 2)
	hub.DropAfter = half
	o := hubOptions(hub, cache)
	o.Retries = -1
	_, err := Fetch(testCtx(t), o)
	if !errors.Is(err, ErrNetwork) {
		t.Fatalf("first run: err = %v, want ErrNetwork", err)
	}
	part := filepath.Join(cache, "weights", "acme", "tiny-clip", "model.safetensors.part")
	st, err := os.Stat(part)
	if err != nil {
		t.Fatalf("no partial file after a dropped connection: %v", err)
	}
	have := st.Size()
	if have <= 0 || have > half {
		t.Fatalf("partial file has %d bytes, want 1..%d", have, half)
	}
	mustNotExist(t, filepath.Join(cache, "weights", "acme", "tiny-clip", "model.safetensors"))

	prog := &recordedProgress{}
	o.Progress = prog
	res, err := Fetch(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	ranges := hub.SeenRanges()
	if len(ranges) != 2 || ranges[0] != "" || ranges[1] != "bytes="+itoa(have)+"-" {
		t.Fatalf("Range headers %q, want [\"\" \"bytes=%d-\"]", ranges, have)
	}
	mustFile(t, res.Path, model)
	if res.Manifest.SHA256 != weightstest.SHA256(model) {
		t.Fatalf("recorded sha256 %s", res.Manifest.SHA256)
	}
	if prog.starts[0] != [2]int64{int64(len(model)), have} || prog.added != int64(len(model))-have {
		t.Fatalf("progress %v added %d, want start at %d", prog.starts, prog.added, have)
	}
	mustNotExist(t, part)
}

func TestFetchResumesWithinARun(t *testing.T) {
	hub, model := newTestHub(t)
	hub.DropAfter = int64(len(model) / 3)
	res, err := Fetch(testCtx(t), hubOptions(hub, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	ranges := hub.SeenRanges()
	if len(ranges) != 2 || !strings.HasPrefix(ranges[1], "bytes=") {
		t.Fatalf("Range headers %q, want a resumed second request", ranges)
	}
	mustFile(t, res.Path, model)
}

// writePart leaves a partial download of the right URL whose bytes are wrong: resuming
// onto it would give a file with the wrong sha256.
func writePart(t *testing.T, hub *weightstest.Hub, cache string, n int) string {
	t.Helper()
	dir := filepath.Join(cache, "weights", "acme", "tiny-clip")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	part := filepath.Join(dir, "model.safetensors.part")
	if err := os.WriteFile(part, bytes.Repeat([]byte{0x55}, n), 0o644); err != nil {
		t.Fatal(err)
	}
	meta := `{"url":"` + hub.URL + `/acme/tiny-clip/resolve/v1/model.safetensors"}`
	if err := os.WriteFile(part+".meta", []byte(meta), 0o644); err != nil {
		t.Fatal(err)
	}
	return part
}

func TestFetchServerIgnoresRange(t *testing.T) {
	hub, model := newTestHub(t)
	hub.IgnoreRange = true
	cache := t.TempDir()
	writePart(t, hub, cache, 1000)
	res, err := Fetch(testCtx(t), hubOptions(hub, cache))
	if err != nil {
		t.Fatal(err)
	}
	if ranges := hub.SeenRanges(); len(ranges) != 1 || ranges[0] != "bytes=1000-" {
		t.Fatalf("Range headers %q, want one bytes=1000-", ranges)
	}
	mustFile(t, res.Path, model) // started over: the junk prefix is gone

	// Control: a server that honours the range appends to the junk, and the sha256 check
	// catches it (so the test above proves the restart).
	hub.Set(func(h *weightstest.Hub) { h.IgnoreRange = false })
	cache2 := t.TempDir()
	writePart(t, hub, cache2, 1000)
	if _, err := Fetch(testCtx(t), hubOptions(hub, cache2)); !errors.Is(err, ErrChecksum) {
		t.Fatalf("resuming onto junk: err = %v, want ErrChecksum", err)
	}
}

func TestFetchBadContentRangeStartsOver(t *testing.T) {
	hub, model := newTestHub(t)
	hub.BadRange = 1
	cache := t.TempDir()
	writePart(t, hub, cache, 1000)
	res, err := Fetch(testCtx(t), hubOptions(hub, cache))
	if err != nil {
		t.Fatal(err)
	}
	ranges := hub.SeenRanges()
	if len(ranges) != 2 || ranges[0] != "bytes=1000-" || ranges[1] != "" {
		t.Fatalf("Range headers %q, want [bytes=1000- \"\"]", ranges)
	}
	mustFile(t, res.Path, model)
}

func TestFetchRetries5xx(t *testing.T) {
	hub, model := newTestHub(t)
	hub.Fail5xx = 2
	res, err := Fetch(testCtx(t), hubOptions(hub, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	mustFile(t, res.Path, model)
	if n := hub.Requests(); n != 3 {
		t.Fatalf("%d data requests, want 3 (two 503s, then the file)", n)
	}

	hub.Set(func(h *weightstest.Hub) { h.Fail5xx, h.DataRequests = 100, 0 })
	o := hubOptions(hub, t.TempDir())
	o.Retries = 2
	_, err = Fetch(testCtx(t), o)
	if !errors.Is(err, ErrNetwork) || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "3 attempts") {
		t.Fatalf("err = %v, want ErrNetwork after 3 attempts of 503", err)
	}
	if n := hub.Requests(); n != 3 {
		t.Fatalf("%d data requests, want 3", n)
	}
}

func TestFetchStalledConnection(t *testing.T) {
	hub, model := newTestHub(t)
	hub.StallAfter = int64(len(model) / 2)
	o := hubOptions(hub, t.TempDir())
	o.StallTimeout = 300 * time.Millisecond
	res, err := Fetch(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	mustFile(t, res.Path, model)
	if ranges := hub.SeenRanges(); len(ranges) != 2 || !strings.HasPrefix(ranges[1], "bytes=") {
		t.Fatalf("Range headers %q, want a resume after the stall", ranges)
	}
}

func TestFetchNotFound(t *testing.T) {
	hub, _ := newTestHub(t)
	cache := t.TempDir()
	ctx := testCtx(t)
	cases := []struct {
		o    FetchOptions
		kind error
		want string
	}{
		{FetchOptions{Name: testRepo, Revision: "v2"}, ErrNotFound, "RevisionNotFound"},
		{FetchOptions{Name: testRepo, Revision: "v1", File: "other.safetensors"}, ErrNotFound, "EntryNotFound"},
		{FetchOptions{Name: "acme/nothing"}, ErrAccess, "HF_TOKEN"},
		{FetchOptions{Name: hub.URL + "/plain/none.safetensors"}, ErrNotFound, "check the URL"},
	}
	for _, c := range cases {
		c.o.CacheDir, c.o.Endpoint, c.o.RetryBackoff = cache, hub.URL, time.Millisecond
		_, err := Fetch(ctx, c.o)
		if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want %v mentioning %q", c.o, err, c.kind, c.want)
		}
	}
	if _, gets := hub.Count(cdnPath); gets != 0 {
		t.Fatalf("%d GETs of the file", gets)
	}
}

func TestFetchRefusesNonSafetensors(t *testing.T) {
	hub, _ := newTestHub(t)
	hub.Plain["page.safetensors"] = []byte("<html><body>Sign in</body></html>")
	cache := t.TempDir()
	_, err := Fetch(testCtx(t), FetchOptions{Name: hub.URL + "/plain/page.safetensors", CacheDir: cache, RetryBackoff: time.Millisecond})
	if !errors.Is(err, ErrBadWeights) {
		t.Fatalf("err = %v, want ErrBadWeights", err)
	}
	name, _ := NameForURL(hub.URL + "/plain/page.safetensors")
	dir := filepath.Join(cache, "weights", filepath.FromSlash(name))
	mustNotExist(t, filepath.Join(dir, "page.safetensors"))
	mustNotExist(t, filepath.Join(dir, "page.safetensors.part"))
}

func TestFetchPlainURL(t *testing.T) {
	hub, model := newTestHub(t)
	hub.Plain["ViT-B-32.safetensors"] = model
	cache := t.TempDir()
	u := hub.URL + "/plain/ViT-B-32.safetensors"
	res, err := Fetch(testCtx(t), FetchOptions{Name: u, CacheDir: cache, RetryBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mustFile(t, res.Path, model)
	if filepath.Base(res.Path) != "ViT-B-32.safetensors" || res.Manifest.Verified != "none" || res.Manifest.SHA256 != weightstest.SHA256(model) {
		t.Fatalf("result %+v manifest %+v", res, res.Manifest)
	}
	if got, err := Resolve(u, cache); err != nil || got != res.Dir {
		t.Fatalf("Resolve(URL) = %q, %v; want %s", got, err, res.Dir)
	}
}

func TestFetchRejectsBadArguments(t *testing.T) {
	ctx := testCtx(t)
	for _, o := range []FetchOptions{
		{Name: "http://example.com/m.safetensors"},      // plain http off loopback
		{Name: "ftp://example.com/m.safetensors"},       // not http(s)
		{Name: "https://example.com/pytorch_model.bin"}, // not safetensors
		{Name: "../../etc"},                             // not a repo name
		{Name: "acme/x", SHA256: "1234"},                // not a sha256
		{Name: "acme/x", File: "../x.safetensors"},      // file escapes the repo
		{Name: "https://example.com/m.safetensors", Revision: "v1"},
		{Name: "acme/x", CacheName: "../up"},
	} {
		o.CacheDir = t.TempDir()
		o.Endpoint = "http://127.0.0.1:1" // never reached
		if _, err := Fetch(ctx, o); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%+v: err = %v, want ErrInvalidArgument", o, err)
		}
	}
}

func TestFetchLockedDirectory(t *testing.T) {
	hub, _ := newTestHub(t)
	cache := t.TempDir()
	dir := filepath.Join(cache, "weights", "acme", "tiny-clip")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Fetch(testCtx(t), hubOptions(hub, cache))
	unlock()
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy", err)
	}
	if _, err := Fetch(testCtx(t), hubOptions(hub, cache)); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
}

func TestFetchCacheNotWritable(t *testing.T) {
	hub, _ := newTestHub(t)
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Fetch(testCtx(t), hubOptions(hub, file))
	if !errors.Is(err, ErrDisk) || !strings.Contains(err.Error(), "--cache-dir") {
		t.Fatalf("err = %v, want ErrDisk naming --cache-dir", err)
	}
}

func TestParseContentRange(t *testing.T) {
	for _, c := range []struct {
		in                string
		start, end, total int64
		ok                bool
	}{
		{"bytes 100-199/200", 100, 199, 200, true},
		{"bytes 0-0/*", 0, 0, -1, true},
		{"bytes */200", -1, -1, 200, false},
		{"bytes 100-99/200", -1, -1, 200, false},
		{"bytes 100-200/200", -1, -1, 200, false},
		{"items 0-1/2", -1, -1, -1, false},
		{"bytes 1-2", -1, -1, -1, false},
		{"", -1, -1, -1, false},
	} {
		s, e, tot, ok := parseContentRange(c.in)
		if s != c.start || e != c.end || tot != c.total || ok != c.ok {
			t.Errorf("parseContentRange(%q) = %d %d %d %v, want %d %d %d %v", c.in, s, e, tot, ok, c.start, c.end, c.total, c.ok)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
