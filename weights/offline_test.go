// offline_test.go: what users without a network meet: a hub that cannot be reached (a name
// that never resolves, a closed port) gives up after a few quick tries with one line that
// says what to do; a failed fetch leaves nothing that reads as an interrupted download;
// weights placed in the cache by hand are adopted with no server at all.
package weights

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/weights/weightstest"
)

// closedPort is a loopback address nothing listens on (connection refused).
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// countingTransport counts the requests that reach the network.
type countingTransport struct {
	mu sync.Mutex
	n  int
	rt http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.rt.RoundTrip(r)
}

// logRecords keeps what a fetch logged.
type logRecords struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r)
	return nil
}
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecords) WithGroup(string) slog.Handler      { return l }

// text is a record as slog's text handler would print it.
func text(r slog.Record) string {
	var b strings.Builder
	h := slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})
	h.Handle(context.Background(), r)
	return strings.TrimSpace(b.String())
}

func TestFetchUnreachableGivesUpQuickly(t *testing.T) {
	for _, c := range []struct {
		endpoint, host, why string
	}{
		// RFC 2606: .invalid never resolves.
		{"https://hub.invalid", "hub.invalid", "the host name cannot be resolved"},
		{"http://" + closedPort(t), "127.0.0.1:", "connection refused"},
	} {
		cache := t.TempDir()
		counter := &countingTransport{rt: DefaultClient().Transport}
		logs := &logRecords{}
		// The default retries and backoff (4 retries from 1s) that a reachable, failing server
		// gets; the context only bounds a regression.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := Fetch(ctx, FetchOptions{
			CacheDir: cache, Endpoint: c.endpoint, Logger: slog.New(logs),
			Client: &http.Client{Transport: counter, CheckRedirect: checkRedirect},
		})
		cancel()
		if !errors.Is(err, ErrNetwork) {
			t.Fatalf("%s: err = %v, want ErrNetwork", c.endpoint, err)
		}
		dir := filepath.Join(cache, "weights", filepath.FromSlash(DefaultModel))
		msg := err.Error()
		for _, want := range []string{"cannot reach " + c.host, c.why, "--weights PATH", dir, "model.safetensors"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: message lacks %q:\n%s", c.endpoint, want, msg)
			}
		}
		if strings.Contains(msg, "\n") || strings.Count(msg, "/resolve/") > 0 {
			t.Errorf("%s: message is not one short line:\n%s", c.endpoint, msg)
		}
		if counter.n > 1+unreachableRetries {
			t.Errorf("%s: %d requests, want at most %d", c.endpoint, counter.n, 1+unreachableRetries)
		}
		var waited time.Duration
		for _, r := range logs.records {
			line := text(r)
			if r.Level > slog.LevelDebug && strings.Contains(r.Message, "retry") {
				t.Errorf("%s: a retry logged above debug: %s", c.endpoint, line)
			}
			if len(line) > 200 {
				t.Errorf("%s: a %d-character log line: %s", c.endpoint, len(line), line)
			}
			r.Attrs(func(a slog.Attr) bool {
				if a.Key == "after" {
					waited += a.Value.Duration()
				}
				return true
			})
		}
		if waited > 2*time.Second {
			t.Errorf("%s: waited %s between tries, want at most 2s", c.endpoint, waited)
		}
		// Nothing is left behind: no folder holding only .lock.
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			entries, _ := os.ReadDir(dir)
			t.Errorf("%s: the failed fetch left %s (%d entries)", c.endpoint, dir, len(entries))
		}
		if _, err := Resolve("", cache); !errors.Is(err, ErrMissing) || strings.Contains(err.Error(), "interrupted") {
			t.Errorf("%s: Resolve after the failed fetch: %v", c.endpoint, err)
		}
	}
}

// TestFetchFailureLeftovers checks what Resolve says for each state a failed fetch can
// leave: nothing at all, or a partial download it can resume.
func TestFetchFailureLeftovers(t *testing.T) {
	hub, model := newTestHub(t)
	cache := t.TempDir()
	dir := filepath.Join(cache, "weights", "acme", "tiny-clip")

	// The hub answers 503 to every data request: the HEAD succeeds, no byte arrives.
	hub.Set(func(h *weightstest.Hub) { h.Fail5xx = 100 })
	o := hubOptions(hub, cache)
	o.Retries = 1
	if _, err := Fetch(testCtx(t), o); !errors.Is(err, ErrNetwork) {
		t.Fatalf("err = %v, want ErrNetwork", err)
	}
	if _, err := os.Stat(filepath.Join(cache, "weights")); !errors.Is(err, os.ErrNotExist) {
		entries, _ := os.ReadDir(dir)
		t.Fatalf("a fetch that received nothing left %v in the cache", names(entries))
	}
	_, err := Resolve(testRepo, cache)
	if !errors.Is(err, ErrMissing) || strings.Contains(err.Error(), "interrupted") || !strings.Contains(err.Error(), "--weights PATH") {
		t.Fatalf("Resolve = %v, want ErrMissing: not in the cache, with --weights PATH", err)
	}

	// A download cut halfway may stay: Resolve says it can be resumed.
	hub.Set(func(h *weightstest.Hub) { h.Fail5xx = 0; h.DropAfter = int64(len(model) / 2) })
	o.Retries = -1
	if _, err := Fetch(testCtx(t), o); !errors.Is(err, ErrNetwork) {
		t.Fatalf("err = %v, want ErrNetwork", err)
	}
	_, err = Resolve(testRepo, cache)
	want := `weights: acme/tiny-clip is an interrupted download in ` + dir + `: run "clipd weights fetch acme/tiny-clip" to resume it, or pass --weights PATH`
	if !errors.Is(err, ErrMissing) || err.Error() != want {
		t.Fatalf("Resolve = %v\nwant %s", err, want)
	}

	// A folder left holding only .lock (by an older clipd) is not a download either.
	stale := filepath.Join(cache, "weights", "acme", "stale")
	writeFiles(t, stale, ".lock")
	if _, err := Resolve("acme/stale", cache); !errors.Is(err, ErrMissing) || strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("Resolve of a folder holding only .lock: %v", err)
	}
}

func names(entries []os.DirEntry) []string {
	var s []string
	for _, e := range entries {
		s = append(s, e.Name())
	}
	return s
}

// placeByHand copies a golden model and its config into the cache folder of name, as a
// user without a network would.
func placeByHand(t *testing.T, cache, name, golden string) (dir string, model []byte) {
	t.Helper()
	dir, err := ModelDir(cache, name)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join("../testdata/golden", golden)
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "model.safetensors" && !strings.HasSuffix(e.Name(), "config.json") {
			continue
		}
		in, err := os.Open(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		out.Close()
	}
	model, err = os.ReadFile(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	return dir, model
}

func TestResolveAdoptsHandPlacedWeights(t *testing.T) {
	cache := t.TempDir()
	dir, model := placeByHand(t, cache, DefaultModel, "tiny_hf_erf_f16")

	got, err := Resolve("", cache)
	if err != nil || got != dir {
		t.Fatalf("Resolve = %q, %v; want %s", got, err, dir)
	}
	m, err := ReadManifest(dir)
	if err != nil {
		t.Fatalf("no manifest after adoption: %v", err)
	}
	sha := weightstest.SHA256(model)
	wantURL := DefaultEndpoint + "/" + DefaultModel + "/resolve/" + DefaultRevision(DefaultModel) + "/model.safetensors"
	if !m.Adopted || m.SHA256 != sha || m.Size != int64(len(model)) || m.File != "model.safetensors" ||
		m.Name != DefaultModel || m.URL != wantURL || m.Verified != "none" || len(m.Extras) != 1 || m.Extras[0].File != "config.json" {
		t.Fatalf("manifest %+v", m)
	}
	if RecordedSHA256(filepath.Join(dir, "model.safetensors")) != sha {
		t.Fatal("the sha256 is not recorded")
	}

	// A fetch with no network uses the adopted weights, from whichever endpoint (a mirror).
	for _, o := range []FetchOptions{
		{CacheDir: cache, Client: unreachableClient()},
		{CacheDir: cache, Client: unreachableClient(), Endpoint: "https://mirror.invalid"},
	} {
		res, err := Fetch(testCtx(t), o)
		if err != nil || !res.Cached || res.Path != filepath.Join(dir, "model.safetensors") {
			t.Fatalf("offline fetch from %q = %+v, %v; want the adopted weights", o.Endpoint, res, err)
		}
	}

	// Online, the hub's sha256 decides: other bytes there are downloaded over them.
	hubModel := tinyModel(t)
	hub := weightstest.NewHub(t, map[string]*weightstest.Repo{
		DefaultModel: {Revision: DefaultRevision(DefaultModel), Files: map[string][]byte{"model.safetensors": hubModel}},
	})
	res, err := Fetch(testCtx(t), FetchOptions{CacheDir: cache, Endpoint: hub.URL, RetryBackoff: time.Millisecond})
	if err != nil || res.Cached || res.Manifest.Adopted || res.Manifest.Verified != "hub" {
		t.Fatalf("online fetch = %+v, %v; want a download verified against the hub", res, err)
	}
	mustFile(t, res.Path, hubModel)
}

// unreachableClient fails every request as a lookup that finds no such host.
func unreachableClient() *http.Client {
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: r.URL.Hostname(), IsNotFound: true}}
	})}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestFetchAdoptsBeforeTheNetwork(t *testing.T) {
	cache := t.TempDir()
	dir, model := placeByHand(t, cache, DefaultModel, "tiny_openai_quick_f32")
	counter := &countingTransport{rt: roundTripFunc(func(*http.Request) (*http.Response, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	})}
	res, err := Fetch(testCtx(t), FetchOptions{CacheDir: cache, Client: &http.Client{Transport: counter}, RetryBackoff: time.Millisecond})
	if err != nil || !res.Cached || res.Manifest.SHA256 != weightstest.SHA256(model) || !res.Manifest.Adopted {
		t.Fatalf("fetch = %+v, %v; want the adopted weights", res, err)
	}
	if m, err := ReadManifest(dir); err != nil || len(m.Extras) != 1 || m.Extras[0].File != "open_clip_config.json" {
		t.Fatalf("manifest %+v, %v", m, err)
	}
}

func TestResolveRefusesHandPlacedNonCLIP(t *testing.T) {
	cache := t.TempDir()
	dir, err := ModelDir(cache, DefaultModel)
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, "model.safetensors") // "x": not a safetensors file
	_, err = Resolve("", cache)
	if !errors.Is(err, ErrBadWeights) || !strings.Contains(err.Error(), "by hand") || !strings.Contains(err.Error(), "--weights PATH") {
		t.Fatalf("err = %v, want ErrBadWeights about the file placed by hand", err)
	}
	mustNotExist(t, filepath.Join(dir, ManifestFile))
}

// timeoutError is a net.Error that timed out, as a dialer's deadline reports it.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestUnreachableKinds(t *testing.T) {
	wrap := func(err error) error {
		return &url.Error{Op: "Head", URL: "https://huggingface.co/x", Err: err}
	}
	for _, c := range []struct {
		err  error
		want string // "" for a failure of a server that was reached
	}{
		{wrap(&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}}), "cannot be resolved"},
		{wrap(&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "server misbehaving", Name: "x"}}), "server misbehaving"},
		{wrap(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), "connection refused"},
		{wrap(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ENETUNREACH)}), "network unreachable"},
		{wrap(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}), "host unreachable"},
		{wrap(&net.OpError{Op: "dial", Net: "tcp", Err: timeoutError{}}), "timed out"},
		{wrap(&net.OpError{Op: "read", Net: "tcp", Err: timeoutError{}}), ""},
		{wrap(&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), ""},
		{errors.New("HTTP 503 Service Unavailable"), ""},
	} {
		got := unreachable(c.err)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("unreachable(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
