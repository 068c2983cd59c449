// fetch.go: downloading weights into the cache: a HEAD probe (size, the hub's sha256 and
// commit), a resumable GET into NAME.part (Range, checked against Content-Range), sha256
// while downloading, verification, and an atomic install (fsync, rename) with the sha256
// file and manifest beside it. Transient failures are retried, resuming from what is there;
// a host that cannot be reached at all only briefly. A failed fetch tidies what it leaves.

package weights

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/clipd/clipd/internal/filehash"
)

// Progress receives download progress (the CLI draws a bar with it). Start is called at
// the beginning of each attempt with the total size (-1 when unknown) and the bytes
// already on disk; Add with each chunk received; Finish once the file is complete.
type Progress interface {
	Start(file string, total, done int64)
	Add(n int)
	Finish()
}

// FetchOptions says what to download and how.
type FetchOptions struct {
	// Name is a hub repository ("openai/clip-vit-base-patch32") or an https:// URL of a
	// .safetensors file; "" is DefaultModel.
	Name string
	// Revision is the hub revision (branch, tag, commit); "" is DefaultRevision(Name).
	Revision string
	// File is the weights file in a hub repository; "" is DefaultFile.
	File string
	// CacheName overrides the name the download is cached under (default CacheName(Name)).
	CacheName string
	// SHA256 is the expected sha256 (hex). "" takes the hub's when it gives one.
	SHA256 string
	// CacheDir is clipd's cache directory; "" is CacheDir("").
	CacheDir string
	// Endpoint is the hub's base URL; "" is DefaultEndpoint.
	Endpoint string
	// Token is sent as a bearer token to the hub (gated repositories); never to other hosts.
	Token string
	// Force downloads again even when the cache holds the file, and drops a partial file.
	Force bool
	// Retries is the number of consecutive failed attempts retried (default 4; -1 for none).
	// A server that cannot be reached at all gets at most 2 quick ones (see unreachableRetries).
	Retries int
	// RetryBackoff is the first wait between attempts, doubled each time (default 1s).
	RetryBackoff time.Duration
	// StallTimeout aborts (and retries) an attempt that receives nothing for this long
	// (default 60s). Connect, TLS and response-header waits have their own bounds.
	StallTimeout time.Duration
	// MaxSize refuses files larger than this (default 64 GiB).
	MaxSize int64
	// Client is the HTTP client; nil builds one with bounded timeouts.
	Client *http.Client
	// Progress, when set, receives download progress.
	Progress Progress
	// Logger receives what happens; nil is slog.Default().
	Logger *slog.Logger
	// UserAgent defaults to "clipd".
	UserAgent string
}

// Result is what Fetch installed.
type Result struct {
	Dir      string    // the cache directory of the weights (what Resolve returns)
	Path     string    // the weights file
	Manifest *Manifest // what was recorded
	Cached   bool      // true when nothing was downloaded: the cache already held it
}

// source is a resolved FetchOptions.Name.
type source struct {
	name     string // cache name
	url      string // weights URL
	file     string // file name in the cache directory
	hub      bool   // from the hub (its sha256/commit headers are trusted; extras fetched)
	repo     string
	revision string
	endpoint *url.URL
}

func (o *FetchOptions) source() (*source, error) {
	s := &source{}
	name := o.Name
	if name == "" {
		name = DefaultModel
	}
	if IsURL(name) {
		if o.Revision != "" || (o.File != "" && o.File != DefaultFile) {
			return nil, newErr(ErrInvalidArgument, nil, "weights: --revision and --file apply to hub repository names, not to URLs")
		}
		u, err := checkURL(name, "URL")
		if err != nil {
			return nil, err
		}
		if !strings.HasSuffix(u.Path, ".safetensors") {
			return nil, newErr(ErrInvalidArgument, nil, fmt.Sprintf("weights: %s does not name a .safetensors file; clipd loads safetensors weights only", name))
		}
		s.url = u.String()
		s.file = path.Base(u.Path)
		if s.name, err = NameForURL(name); err != nil {
			return nil, err
		}
	} else {
		if err := checkRepo(name); err != nil {
			return nil, err
		}
		ep := o.Endpoint
		if ep == "" {
			ep = DefaultEndpoint
		}
		u, err := checkURL(strings.TrimRight(ep, "/"), "hub endpoint")
		if err != nil {
			return nil, err
		}
		s.hub, s.repo, s.name, s.endpoint = true, name, name, u
		s.revision = o.Revision
		if s.revision == "" {
			s.revision = DefaultRevision(name)
		}
		if strings.ContainsAny(s.revision, " \t\n") || strings.Contains(s.revision, "..") {
			return nil, newErr(ErrInvalidArgument, nil, fmt.Sprintf("weights: %q is not a valid revision", s.revision))
		}
		s.file = o.File
		if s.file == "" {
			s.file = DefaultFile
		}
		if strings.Contains(s.file, "/") || !strings.HasSuffix(s.file, ".safetensors") {
			return nil, newErr(ErrInvalidArgument, nil, fmt.Sprintf("weights: --file %q must be the name of a .safetensors file at the top of the repository", s.file))
		}
		s.url = s.resolveURL(s.file)
	}
	if o.CacheName != "" {
		if err := checkCacheName(o.CacheName); err != nil {
			return nil, err
		}
		s.name = o.CacheName
	}
	return s, nil
}

// resolveURL is the hub's download URL of a file at the source's revision. The revision is
// escaped whole ("refs/pr/66" -> "refs%2Fpr%2F66"), as the hub's own client does.
func (s *source) resolveURL(file string) string {
	return s.endpoint.String() + "/" + s.repo + "/resolve/" + url.PathEscape(s.revision) + "/" + url.PathEscape(file)
}

// fetcher carries one Fetch call's settings.
type fetcher struct {
	o      FetchOptions
	src    *source
	log    *slog.Logger
	client *http.Client
	probe  *http.Client // the same transport, following no redirects (to read the hub's headers)
	dir    string       // the cache directory the weights go to
}

// DefaultClient is an HTTP client with bounded connect, TLS and response-header waits and
// no overall deadline (a download of a large file takes as long as it takes; Fetch aborts
// one that stalls).
func DefaultClient() *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 20 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   20 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		IdleConnTimeout:       60 * time.Second,
		MaxIdleConnsPerHost:   2,
		DisableCompression:    true, // byte ranges must address the file itself
	}
	return &http.Client{Transport: tr, CheckRedirect: checkRedirect}
}

func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("more than 10 redirects")
	}
	if req.URL.Scheme != "https" && !(req.URL.Scheme == "http" && isLoopback(req.URL.Hostname())) {
		return fmt.Errorf("redirect to %s refused (not https)", req.URL.Redacted())
	}
	return nil
}

// Fetch downloads the weights named by o into the cache (unless the cache already holds
// them, verified) and returns where they are.
func Fetch(ctx context.Context, o FetchOptions) (*Result, error) {
	src, err := o.source()
	if err != nil {
		return nil, err
	}
	if o.SHA256 != "" {
		if !isSHA256(o.SHA256) {
			return nil, newErr(ErrInvalidArgument, nil, fmt.Sprintf("weights: --sha256 %q is not 64 hex digits", o.SHA256))
		}
		o.SHA256 = strings.ToLower(o.SHA256)
	}
	if o.Retries == 0 {
		o.Retries = 4
	} else if o.Retries < 0 {
		o.Retries = 0
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = time.Second
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = 60 * time.Second
	}
	if o.MaxSize <= 0 {
		o.MaxSize = 64 << 30
	}
	if o.UserAgent == "" {
		o.UserAgent = "clipd"
	}
	f := &fetcher{o: o, src: src, log: o.Logger, client: o.Client}
	if f.log == nil {
		f.log = slog.Default()
	}
	if f.client == nil {
		f.client = DefaultClient()
	}
	probe := *f.client
	probe.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	f.probe = &probe

	dir, err := ModelDir(o.CacheDir, src.name)
	if err != nil {
		return nil, err
	}
	f.dir = dir
	created := missingDirs(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, newErr(ErrDisk, err, fmt.Sprintf("weights: cannot create the cache directory %s: %v; pass --cache-dir or set CLIPD_CACHE", dir, err))
	}
	unlock, err := lockDir(dir)
	if err != nil {
		if !errors.Is(err, ErrBusy) {
			removeEmptyDirs(created)
		}
		return nil, err
	}
	defer unlock()
	res, err := f.fetch(ctx, dir)
	if err != nil {
		tidyFailed(dir, created)
	}
	return res, err
}

// missingDirs lists dir and those of its parents that do not exist yet, deepest first:
// the directories a fetch creates, and removes again when it fails with nothing in them.
func missingDirs(dir string) []string {
	var dirs []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || d == filepath.Dir(d) {
			return dirs
		}
		dirs = append(dirs, d)
	}
}

// removeEmptyDirs removes each directory in turn while it is empty.
func removeEmptyDirs(dirs []string) {
	for _, d := range dirs {
		if os.Remove(d) != nil {
			return
		}
	}
}

// tidyFailed leaves a failed fetch's directory in a state later commands read right
// (Resolve tells them apart): a partial download that can be resumed stays, with its
// .meta; an empty one, a stray .meta, and a lock with nothing else to guard go, and so does
// the directory when nothing is left in it, with the parents this fetch created. It runs
// while the lock is held; a fetch that opened the lock file just before it is removed
// finds it locked (ErrBusy), and one that opens it after creates it again (lockDir).
func tidyFailed(dir string, created []string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	left := map[string]bool{}
	for _, e := range entries {
		left[e.Name()] = true
	}
	for name := range left {
		part, ok := strings.CutSuffix(name, ".part.meta")
		if !ok {
			continue
		}
		part += ".part"
		if st, err := os.Stat(filepath.Join(dir, part)); err == nil && st.Size() > 0 {
			continue
		}
		if os.Remove(filepath.Join(dir, part)) == nil || !left[part] {
			delete(left, part)
		}
		if os.Remove(filepath.Join(dir, name)) == nil {
			delete(left, name)
		}
	}
	if len(left) != 1 || !left[".lock"] || os.Remove(filepath.Join(dir, ".lock")) != nil {
		return
	}
	if os.Remove(dir) == nil && len(created) > 0 && created[0] == filepath.Clean(dir) {
		removeEmptyDirs(created[1:])
	}
}

// remote is what the HEAD probe learned.
type remote struct {
	size   int64  // -1 when unknown
	sha256 string // the hub's sha256 of the file, "" when not told
	commit string
}

func (f *fetcher) fetch(ctx context.Context, dir string) (*Result, error) {
	src := f.src
	final := filepath.Join(dir, src.file)
	part := final + ".part"

	if !f.o.Force {
		// Weights placed here by hand are adopted before the network is touched, so that a
		// machine without one finds them cached below.
		if _, err := adoptLocked(dir, src); err != nil && !errors.Is(err, errNothingToAdopt) {
			f.log.Warn("the weights placed in the cache by hand are not usable; downloading over them", "error", err)
		}
	}
	rem, probeErr := f.head(ctx)
	if probeErr != nil {
		if errors.Is(probeErr, ErrNetwork) && !f.o.Force {
			// Offline: what the cache holds for this very URL still serves.
			if res, ok := f.cached(dir, final, &remote{size: -1}); ok {
				f.log.Warn("cannot reach the server; using the cached weights (not checked against it)", "dir", dir)
				return res, nil
			}
		}
		return nil, probeErr
	}
	want, verified := f.o.SHA256, "flag"
	if want == "" && rem.sha256 != "" {
		want, verified = rem.sha256, "hub"
	} else if want != "" && rem.sha256 != "" && want != rem.sha256 {
		return nil, newErr(ErrChecksum, nil, fmt.Sprintf("weights: the server says %s has sha256 %s, but --sha256 is %s; check the revision, the URL or the hash", src.url, rem.sha256, want))
	}
	if want == "" {
		verified = "none"
	}
	if !f.o.Force {
		rem.sha256 = want
		if res, ok := f.cached(dir, final, rem); ok {
			return f.completeExtras(ctx, dir, res)
		}
	}

	if err := f.preparePart(part, want, f.o.Force); err != nil {
		return nil, err
	}
	sum, size, err := f.download(ctx, part, rem.size)
	if err != nil {
		return nil, err
	}
	if want != "" && sum != want {
		os.Remove(part)
		os.Remove(part + ".meta")
		return nil, newErr(ErrChecksum, nil, fmt.Sprintf("weights: %s downloaded with sha256 %s, want %s (from %s); the download was deleted; check the URL, revision or --sha256", src.url, sum, want, map[string]string{"hub": "the server", "flag": "--sha256"}[verified]))
	}
	if _, err := ReadHeader(part); err != nil {
		os.Remove(part)
		os.Remove(part + ".meta")
		return nil, newErr(ErrBadWeights, err, fmt.Sprintf("weights: %s is not a safetensors file (%v); the download was deleted", src.url, errors.Unwrap(err)))
	}

	m := &Manifest{
		Name: f.o.Name, URL: src.url, Revision: src.revision, Commit: rem.commit, File: src.file,
		Size: size, SHA256: sum, Verified: verified, Fetched: time.Now().UTC().Truncate(time.Second),
	}
	if m.Name == "" {
		m.Name = DefaultModel
	}
	if src.hub {
		if m.Extras, err = f.fetchExtras(ctx, dir, extraFiles); err != nil {
			return nil, err
		}
		m.ExtrasChecked = extraFiles
	}
	if err := f.install(dir, part, final, m); err != nil {
		return nil, err
	}
	f.log.Info("weights downloaded", "file", final, "size", size, "sha256", sum, "verified", verified)
	return &Result{Dir: dir, Path: final, Manifest: m}, nil
}

// cached reports whether dir already holds the weights of this source: a manifest for the
// same URL and a file whose sha256 (hashed again now) is the recorded one, and the
// expected one when there is one; and its config files when from the hub. Adopted weights
// match any URL of their cache name (theirs is only where fetch would have looked; the
// user put them in this folder): the hub's sha256, when it is reachable, still decides.
func (f *fetcher) cached(dir, final string, rem *remote) (*Result, bool) {
	m, err := ReadManifest(dir)
	if err != nil || (m.URL != f.src.url && !m.Adopted) || m.File != f.src.file || !isSHA256(m.SHA256) {
		return nil, false
	}
	if rem.sha256 != "" && rem.sha256 != m.SHA256 {
		f.log.Info("the cached weights differ from the requested ones; downloading", "cached", m.SHA256, "want", rem.sha256)
		return nil, false
	}
	if rem.size >= 0 && rem.size != m.Size {
		return nil, false
	}
	st, err := os.Stat(final)
	if err != nil || st.Size() != m.Size {
		return nil, false
	}
	for _, x := range m.Extras {
		if st, err := os.Stat(filepath.Join(dir, x.File)); err != nil || st.Size() != x.Size {
			return nil, false
		}
	}
	sum, err := hashFile(final)
	if err != nil || sum != m.SHA256 {
		f.log.Warn("the cached weights do not match their recorded sha256; downloading again", "file", final)
		return nil, false
	}
	f.log.Info("weights already in the cache", "file", final, "sha256", sum)
	return &Result{Dir: dir, Path: final, Manifest: m, Cached: true}, true
}

// partMeta, beside NAME.part, says what the partial file is a prefix of, so a partial
// download of something else is never resumed.
type partMeta struct {
	URL    string `json:"url"`
	SHA256 string `json:"sha256,omitempty"`
}

func (f *fetcher) preparePart(part, want string, force bool) error {
	metaPath := part + ".meta"
	var pm partMeta
	keep := false
	if b, err := os.ReadFile(metaPath); err == nil && json.Unmarshal(b, &pm) == nil {
		keep = !force && pm.URL == f.src.url && (pm.SHA256 == "" || want == "" || pm.SHA256 == want)
	}
	if !keep {
		if err := os.Remove(part); err != nil && !errors.Is(err, os.ErrNotExist) {
			return newErr(ErrDisk, err, fmt.Sprintf("weights: cannot remove the stale partial download %s: %v", part, err))
		}
	} else if st, err := os.Stat(part); err == nil && st.Size() > 0 {
		f.log.Info("resuming a partial download", "file", part, "have", st.Size())
	}
	b, _ := json.Marshal(partMeta{URL: f.src.url, SHA256: want})
	if err := writeFileAtomic(metaPath, b); err != nil {
		return err
	}
	return nil
}

// head probes the URL without following redirects: the hub answers a resolve request with
// its own headers (X-Linked-Etag: the LFS file's sha256, X-Linked-Size, X-Repo-Commit)
// before redirecting to its CDN.
func (f *fetcher) head(ctx context.Context) (*remote, error) {
	rem := &remote{size: -1}
	var resp *http.Response
	err := f.retry(ctx, "HEAD", func(attempt int) (bool, error) {
		req, err := f.newRequest(ctx, http.MethodHead, f.src.url)
		if err != nil {
			return false, err
		}
		r, err := f.probe.Do(req)
		if err != nil {
			return true, err
		}
		r.Body.Close()
		if r.StatusCode >= 500 || r.StatusCode == http.StatusTooManyRequests {
			return true, fmt.Errorf("HTTP %s", r.Status)
		}
		resp = r
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return nil, f.notFound(resp)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, f.denied(resp)
	case resp.StatusCode == http.StatusMethodNotAllowed || resp.StatusCode == http.StatusNotImplemented:
		return rem, nil // no HEAD here: the GET tells the size
	case resp.StatusCode >= 400:
		return nil, newErr(ErrNetwork, nil, fmt.Sprintf("weights: %s: HTTP %s%s", f.src.url, resp.Status, hubMessage(resp)))
	}
	h := resp.Header
	if v := h.Get("X-Linked-Size"); v != "" {
		rem.size = parseSize(v)
	} else if resp.StatusCode == http.StatusOK && resp.ContentLength >= 0 {
		rem.size = resp.ContentLength
	}
	if etag := normalizeETag(h.Get("X-Linked-Etag")); isSHA256(etag) {
		rem.sha256 = strings.ToLower(etag)
	} else if etag := normalizeETag(h.Get("ETag")); f.src.hub && isSHA256(etag) {
		rem.sha256 = strings.ToLower(etag)
	}
	rem.commit = h.Get("X-Repo-Commit")
	return rem, nil
}

func normalizeETag(s string) string {
	s = strings.TrimPrefix(strings.TrimSpace(s), "W/")
	return strings.Trim(s, `"`)
}

func parseSize(s string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// hubMessage is the hub's own explanation of an error response, when it gives one.
func hubMessage(r *http.Response) string {
	code, msg := r.Header.Get("X-Error-Code"), r.Header.Get("X-Error-Message")
	switch {
	case code != "" && msg != "":
		return fmt.Sprintf(" (%s: %s)", code, msg)
	case code != "":
		return " (" + code + ")"
	case msg != "":
		return " (" + msg + ")"
	}
	return ""
}

func (f *fetcher) notFound(r *http.Response) error {
	msg := fmt.Sprintf("weights: %s: not found (HTTP %d%s)", f.src.url, r.StatusCode, hubMessage(r))
	if f.src.hub {
		msg += fmt.Sprintf("; the repository %s may not exist, or revision %q may hold no %s: pass --revision with one that has it", f.src.repo, f.src.revision, f.src.file)
		if pin, ok := pinnedRevisions[f.src.repo]; ok && pin != f.src.revision {
			msg += fmt.Sprintf(" (for %s: --revision %s, the safetensors conversion of refs/pr/66)", f.src.repo, pin)
		}
		msg += ", or give an https:// URL of a .safetensors file"
	} else {
		msg += "; check the URL"
	}
	return newErr(ErrNotFound, nil, msg)
}

func (f *fetcher) denied(r *http.Response) error {
	msg := fmt.Sprintf("weights: %s: access denied (HTTP %d%s)", f.src.url, r.StatusCode, hubMessage(r))
	if f.src.hub {
		msg += "; the repository may be private or gated (set HF_TOKEN to a token that may read it) or may not exist"
	}
	return newErr(ErrAccess, nil, msg)
}

func (f *fetcher) newRequest(ctx context.Context, method, u string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, newErr(ErrInvalidArgument, err, fmt.Sprintf("weights: bad URL %s: %v", u, err))
	}
	req.Header.Set("User-Agent", f.o.UserAgent)
	req.Header.Set("Accept-Encoding", "identity")
	if f.o.Token != "" && f.src.hub && req.URL.Host == f.src.endpoint.Host {
		req.Header.Set("Authorization", "Bearer "+f.o.Token)
	}
	return req, nil
}

// retry runs try until it succeeds, fails for good (retryable false), the context ends, or
// the retry policy (retryState) gives up. try reports whether its error is transient.
func (f *fetcher) retry(ctx context.Context, what string, try func(attempt int) (retryable bool, err error)) error {
	st := f.newRetryState()
	for attempt := 0; ; attempt++ {
		retryable, err := try(attempt)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !retryable {
			return err
		}
		if err := f.again(ctx, what, attempt, st, err, false); err != nil {
			return err
		}
	}
}

// A server that cannot be reached at all (its name does not resolve, nothing listens, no
// route, the connect times out) is almost always a machine without a network or a wrong
// host name, which waiting does not fix: it gets at most unreachableRetries quick retries
// (under 2s of waiting in all) before the error that says how to work offline. A server
// that answers but fails (5xx, 429, timeouts, dropped connections) gets o.Retries retries
// with the longer backoff.
const (
	unreachableRetries = 2
	unreachableBackoff = 300 * time.Millisecond
)

// retryState is one request's (or one download's) count of failed attempts.
type retryState struct {
	failures    int           // failed attempts in a row
	unreachable int           // of those, the last ones in a row that reached no server
	wait        time.Duration // the next backoff for a server that answered
	quick       time.Duration // the next backoff for one that could not be reached
}

func (f *fetcher) newRetryState() *retryState {
	return &retryState{wait: f.o.RetryBackoff, quick: min(f.o.RetryBackoff, unreachableBackoff)}
}

// again decides after a failed, retryable attempt: it waits before the next one and
// returns nil, or returns the error to give up with. An attempt that received data
// (progressed) starts the count again: a flaky link, not a dead one.
func (f *fetcher) again(ctx context.Context, what string, attempt int, st *retryState, err error, progressed bool) error {
	if progressed {
		st.failures, st.unreachable, st.wait = 0, 0, f.o.RetryBackoff
	} else {
		st.failures++
	}
	if why := unreachable(err); why != "" {
		st.unreachable++
		if st.unreachable > min(f.o.Retries, unreachableRetries) {
			return f.unreachableError(err, why)
		}
		return f.backoff(ctx, slog.LevelDebug, what, attempt, &st.quick, err)
	}
	st.unreachable = 0
	if f.o.Retries == 0 || st.failures > f.o.Retries || attempt+1 >= maxAttempts {
		return f.gaveUp(what, attempt+1, err)
	}
	return f.backoff(ctx, slog.LevelWarn, what, attempt, &st.wait, err)
}

// unreachable says why err means no server could be reached: "" when it is some other
// failure (a timeout, a reset, an HTTP status).
func unreachable(err error) string {
	var dns *net.DNSError
	switch {
	case errors.As(err, &dns):
		if dns.IsNotFound {
			return "the host name cannot be resolved (no network access, or a wrong host name)"
		}
		return "the host name cannot be resolved (" + dns.Err + "; no network access?)"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused (no server there, or no network access)"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable (no network access)"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable (no network access)"
	}
	// A connect that times out reached no server either (packets dropped: no route out, a
	// firewall); a timeout after connecting is a slow server and keeps the longer policy.
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" && op.Timeout() {
		return "the connection timed out (no network access, or a firewall)"
	}
	return ""
}

// unreachableError is the one line a user without a network reads: which host, why, and
// the two ways to go on without it.
func (f *fetcher) unreachableError(err error, why string) error {
	host := ""
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			host = u.Host
		}
	}
	if host == "" {
		if u, perr := url.Parse(f.src.url); perr == nil {
			host = u.Host
		}
	}
	config := "its config.json or open_clip_config.json"
	if f.src.hub {
		config = "the repository's config.json"
	}
	return newErr(ErrNetwork, err, fmt.Sprintf("weights: cannot reach %s: %s; to go on without it, pass --weights PATH (a local .safetensors file or a folder holding one), or place %s and %s in %s by hand", host, why, f.src.file, config, f.dir))
}

func (f *fetcher) gaveUp(what string, attempts int, err error) error {
	return newErr(ErrNetwork, err, fmt.Sprintf("weights: %s %s failed after %d attempts: %s; check the network and run the command again (a partial download resumes)", what, f.src.url, attempts, shortError(err)))
}

// shortError is err without the method and URL that net/http puts in front of it (the
// messages around it name the URL once).
func shortError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// backoff sleeps before the next attempt: *wait plus up to half of it at random, then
// doubles *wait (up to 30s). The line it logs is short: the host, not the whole URL.
func (f *fetcher) backoff(ctx context.Context, level slog.Level, what string, attempt int, wait *time.Duration, cause error) error {
	d := *wait + time.Duration(rand.Int64N(int64(*wait)/2+1))
	host := f.src.url
	if u, err := url.Parse(f.src.url); err == nil {
		host = u.Host
	}
	f.log.Log(ctx, level, "retrying", "what", what, "host", host, "attempt", attempt+1, "after", d.Round(time.Millisecond), "error", shortError(cause))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	if *wait *= 2; *wait > 30*time.Second {
		*wait = 30 * time.Second
	}
	return nil
}

// errRestart marks an attempt whose partial data had to be dropped (the server changed
// the file or ignored the range in a way that cannot be resumed): retry from zero.
var errRestart = errors.New("restart")

// maxAttempts bounds the attempts of one download even when each makes progress.
const maxAttempts = 100

// download fetches src.url into part, resuming from its current size, and returns the
// sha256 and size of the complete file. An attempt that received bytes resets the count
// of failures (a flaky link, not a dead one); o.Retries failures in a row end it, and
// with no retries the first failure does.
func (f *fetcher) download(ctx context.Context, part string, total int64) (string, int64, error) {
	st := f.newRetryState()
	for attempt := 0; ; attempt++ {
		sum, size, got, retryable, err := f.attempt(ctx, part, &total)
		if err == nil {
			return sum, size, nil
		}
		if ctx.Err() != nil {
			return "", 0, ctx.Err()
		}
		if !retryable {
			return "", 0, err
		}
		if err := f.again(ctx, "download", attempt, st, err, got > 0); err != nil {
			return "", 0, err
		}
	}
}

// attempt is one GET. total is the expected size, -1 until known; it is updated from the
// response. It returns the sha256 and size on success; the bytes this attempt received;
// and on failure whether a retry makes sense.
func (f *fetcher) attempt(ctx context.Context, part string, total *int64) (sum string, size, got int64, retryable bool, err error) {
	fh, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return "", 0, 0, false, newErr(ErrDisk, err, fmt.Sprintf("weights: cannot write %s: %v", part, err))
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return "", 0, 0, false, newErr(ErrDisk, err, fmt.Sprintf("weights: cannot stat %s: %v", part, err))
	}
	have := st.Size()
	if *total >= 0 && have > *total {
		have = 0
	}
	if *total >= 0 && have == *total && have > 0 {
		// A previous run received everything but did not finish.
		return f.finish(fh, part, have)
	}

	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := f.newRequest(actx, http.MethodGet, f.src.url)
	if err != nil {
		return "", 0, 0, false, err
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	stall := time.AfterFunc(f.o.StallTimeout, cancel)
	defer stall.Stop()
	resp, err := f.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", 0, 0, false, ctx.Err()
		}
		return "", 0, 0, true, err
	}
	defer resp.Body.Close()

	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, end, complete, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != have || (resp.ContentLength >= 0 && resp.ContentLength != end-start+1) {
			f.log.Warn("the server answered the range request with a bad Content-Range; starting over", "content-range", resp.Header.Get("Content-Range"), "want-start", have)
			return "", 0, 0, true, f.truncate(fh, part, errRestart)
		}
		if complete >= 0 {
			if *total >= 0 && complete != *total {
				f.log.Warn("the file changed on the server; starting over", "was", *total, "now", complete)
				*total = complete
				return "", 0, 0, true, f.truncate(fh, part, errRestart)
			}
			*total = complete
		}
	case http.StatusOK:
		if have > 0 {
			f.log.Info("the server ignored the range request; starting over", "had", have)
			have = 0
		}
		if resp.ContentLength >= 0 {
			*total = resp.ContentLength
		}
	case http.StatusRequestedRangeNotSatisfiable:
		_, _, complete, _ := parseContentRange(resp.Header.Get("Content-Range"))
		if complete >= 0 && complete == have {
			*total = complete
			return f.finish(fh, part, have)
		}
		return "", 0, 0, true, f.truncate(fh, part, fmt.Errorf("HTTP %s for bytes=%d-", resp.Status, have))
	case http.StatusNotFound, http.StatusGone:
		return "", 0, 0, false, f.notFound(resp)
	case http.StatusUnauthorized, http.StatusForbidden:
		return "", 0, 0, false, f.denied(resp)
	default:
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout {
			return "", 0, 0, true, fmt.Errorf("HTTP %s", resp.Status)
		}
		return "", 0, 0, false, newErr(ErrNetwork, nil, fmt.Sprintf("weights: %s: unexpected HTTP %s%s", f.src.url, resp.Status, hubMessage(resp)))
	}
	if *total > f.o.MaxSize {
		return "", 0, 0, false, newErr(ErrInvalidArgument, nil, fmt.Sprintf("weights: %s is %d bytes, over the %d-byte limit", f.src.url, *total, f.o.MaxSize))
	}

	// Hash what is already there, then the new bytes as they arrive.
	if err := fh.Truncate(have); err != nil {
		return "", 0, 0, false, newErr(ErrDisk, err, fmt.Sprintf("weights: cannot truncate %s: %v", part, err))
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(fh, 0, have)); err != nil {
		return "", 0, 0, false, newErr(ErrDisk, err, fmt.Sprintf("weights: cannot read %s: %v", part, err))
	}
	if _, err := fh.Seek(have, io.SeekStart); err != nil {
		return "", 0, 0, false, newErr(ErrDisk, err, fmt.Sprintf("weights: cannot seek in %s: %v", part, err))
	}
	if f.o.Progress != nil {
		f.o.Progress.Start(f.src.file, *total, have)
	}
	start := have
	buf := make([]byte, 1<<20)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			stall.Reset(f.o.StallTimeout)
			if have+int64(n) > f.o.MaxSize || (*total >= 0 && have+int64(n) > *total) {
				return "", 0, 0, false, newErr(ErrNetwork, nil, fmt.Sprintf("weights: %s sent more bytes than announced (%d)", f.src.url, *total))
			}
			if _, err := fh.Write(buf[:n]); err != nil {
				return "", 0, 0, false, newErr(ErrDisk, err, fmt.Sprintf("weights: cannot write %s: %v", part, err))
			}
			h.Write(buf[:n])
			have += int64(n)
			if f.o.Progress != nil {
				f.o.Progress.Add(n)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return "", 0, 0, false, ctx.Err()
			}
			if actx.Err() != nil {
				rerr = fmt.Errorf("no data for %s", f.o.StallTimeout)
			}
			return "", 0, have - start, true, fmt.Errorf("after %d bytes: %v", have, rerr)
		}
	}
	if *total >= 0 && have != *total {
		return "", 0, have - start, true, fmt.Errorf("connection closed after %d of %d bytes", have, *total)
	}
	if err := fh.Sync(); err != nil {
		return "", 0, 0, false, newErr(ErrDisk, err, fmt.Sprintf("weights: cannot sync %s: %v", part, err))
	}
	if f.o.Progress != nil {
		f.o.Progress.Finish()
	}
	return hex.EncodeToString(h.Sum(nil)), have, have - start, false, nil
}

// finish hashes a part file that already holds the whole download.
func (f *fetcher) finish(fh *os.File, part string, size int64) (sum string, n, got int64, retryable bool, err error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(fh, 0, size)); err != nil {
		return "", 0, 0, false, newErr(ErrDisk, err, fmt.Sprintf("weights: cannot read %s: %v", part, err))
	}
	if err := fh.Sync(); err != nil {
		return "", 0, 0, false, newErr(ErrDisk, err, fmt.Sprintf("weights: cannot sync %s: %v", part, err))
	}
	return hex.EncodeToString(h.Sum(nil)), size, 0, false, nil
}

func (f *fetcher) truncate(fh *os.File, part string, cause error) error {
	if err := fh.Truncate(0); err != nil {
		return newErr(ErrDisk, err, fmt.Sprintf("weights: cannot truncate %s: %v", part, err))
	}
	return cause
}

// parseContentRange reads "bytes START-END/TOTAL" (TOTAL may be "*": complete -1) and
// "bytes */TOTAL" (start and end -1).
func parseContentRange(s string) (start, end, complete int64, ok bool) {
	start, end, complete = -1, -1, -1
	rest, found := strings.CutPrefix(strings.TrimSpace(s), "bytes ")
	if !found {
		return start, end, complete, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return start, end, complete, false
	}
	if tot != "*" {
		if complete = parseSize(tot); complete < 0 {
			return start, end, complete, false
		}
	}
	if rng == "*" {
		return start, end, complete, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return start, end, complete, false
	}
	start, end = parseSize(a), parseSize(b)
	if start < 0 || end < start || (complete >= 0 && end >= complete) {
		return -1, -1, complete, false
	}
	return start, end, complete, true
}

// extraFiles are the files fetched beside hub weights when the repository has them: the
// model's config files, and the text tokenizer's vocabulary (tokenizerFiles), which
// libclipengine's clip_tokenizer_open reads from the weights' folder.
var extraFiles = []string{"config.json", "open_clip_config.json", "vocab.json", "merges.txt"}

// tokenizerFiles are the extra files an older clipd did not fetch: a cached download
// whose manifest does not say they were looked for gets them on the next fetch.
var tokenizerFiles = []string{"vocab.json", "merges.txt"}

// maxExtraSize bounds an extra file (CLIP's vocab.json is 0.9 MB, merges.txt 0.5 MB).
const maxExtraSize = 4 << 20

// checkExtra says what is wrong with an extra file's bytes ("" when nothing): a .json file
// must be a JSON object, merges.txt UTF-8 text, each at most maxExtraSize bytes.
func checkExtra(name string, b []byte) string {
	if strings.HasSuffix(name, ".json") {
		var obj map[string]any
		if len(b) > maxExtraSize || json.Unmarshal(b, &obj) != nil {
			return fmt.Sprintf("a JSON object of at most %d bytes", maxExtraSize)
		}
		return ""
	}
	if len(b) > maxExtraSize || !utf8.Valid(b) {
		return fmt.Sprintf("UTF-8 text of at most %d bytes", maxExtraSize)
	}
	return ""
}

// fetchExtras downloads the named extra files of the repository at the same revision
// (absent ones are skipped, and a stale copy from another revision removed).
func (f *fetcher) fetchExtras(ctx context.Context, dir string, names []string) ([]FileRecord, error) {
	var recs []FileRecord
	for _, name := range names {
		u := f.src.resolveURL(name)
		var body []byte
		var status int
		err := f.retry(ctx, "GET "+name+" from", func(int) (bool, error) {
			req, err := f.newRequest(ctx, http.MethodGet, u)
			if err != nil {
				return false, err
			}
			resp, err := f.client.Do(req)
			if err != nil {
				return true, err
			}
			defer resp.Body.Close()
			status = resp.StatusCode
			if status >= 500 || status == http.StatusTooManyRequests {
				return true, fmt.Errorf("HTTP %s", resp.Status)
			}
			if status != http.StatusOK {
				return false, nil
			}
			body, err = io.ReadAll(io.LimitReader(resp.Body, maxExtraSize+1))
			if err != nil {
				return true, err
			}
			return false, nil
		})
		if err != nil {
			return nil, err
		}
		target := filepath.Join(dir, name)
		if status != http.StatusOK {
			if status != http.StatusNotFound {
				f.log.Warn("skipping an extra file", "url", u, "status", status)
			}
			if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, newErr(ErrDisk, err, fmt.Sprintf("weights: cannot remove the stale %s: %v", target, err))
			}
			continue
		}
		if want := checkExtra(name, body); want != "" {
			return nil, newErr(ErrBadWeights, nil, fmt.Sprintf("weights: %s is not %s", u, want))
		}
		if err := writeFileAtomic(target, body); err != nil {
			return nil, err
		}
		s := sha256.Sum256(body)
		recs = append(recs, FileRecord{File: name, URL: u, Size: int64(len(body)), SHA256: hex.EncodeToString(s[:])})
	}
	return recs, nil
}

// completeExtras gives cached hub weights the tokenizer files when their manifest does not
// say they were looked for (a download by an older clipd, or weights placed by hand): the
// ones not in the folder are fetched (a copy placed by hand is kept) and the manifest
// records them and the look-up, so later fetches ask the hub nothing more.
func (f *fetcher) completeExtras(ctx context.Context, dir string, res *Result) (*Result, error) {
	m := res.Manifest
	if !f.src.hub || slices.Contains(m.ExtrasChecked, tokenizerFiles[0]) {
		return res, nil
	}
	var names []string
	for _, name := range tokenizerFiles {
		if _, err := os.Stat(filepath.Join(dir, name)); errors.Is(err, os.ErrNotExist) {
			names = append(names, name)
		}
	}
	recs, err := f.fetchExtras(ctx, dir, names)
	if err != nil {
		return nil, err
	}
	m.Extras = append(m.Extras, recs...)
	for _, name := range extraFiles {
		if !slices.Contains(m.ExtrasChecked, name) {
			m.ExtrasChecked = append(m.ExtrasChecked, name)
		}
	}
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := writeFileAtomic(filepath.Join(dir, ManifestFile), append(mb, '\n')); err != nil {
		return nil, err
	}
	if len(recs) > 0 {
		f.log.Info("fetched the tokenizer files the cached weights lacked", "dir", dir, "files", len(recs))
	}
	return res, syncDir(dir)
}

// install records the sha256 and the manifest, then renames the verified part file into
// place and syncs the directory. A weights file of a previous manifest with another name
// is removed, so the directory holds one model.
func (f *fetcher) install(dir, part, final string, m *Manifest) error {
	old, _ := ReadManifest(dir)
	sumLine := fmt.Sprintf("%s  %s\n", m.SHA256, m.File)
	if err := writeFileAtomic(final+".sha256", []byte(sumLine)); err != nil {
		return err
	}
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := writeFileAtomic(filepath.Join(dir, ManifestFile), append(mb, '\n')); err != nil {
		return err
	}
	if err := os.Rename(part, final); err != nil {
		return newErr(ErrDisk, err, fmt.Sprintf("weights: cannot rename %s to %s: %v", part, final, err))
	}
	os.Remove(part + ".meta")
	if old != nil && old.File != "" && old.File != m.File && !strings.Contains(old.File, "/") {
		os.Remove(filepath.Join(dir, old.File))
		os.Remove(filepath.Join(dir, old.File+".sha256"))
	}
	return syncDir(dir)
}

// writeFileAtomic writes b to path through a temporary file, fsync and rename.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	fh, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return newErr(ErrDisk, err, fmt.Sprintf("weights: cannot write %s: %v", tmp, err))
	}
	_, werr := io.Copy(fh, bytes.NewReader(b))
	if werr == nil {
		werr = fh.Sync()
	}
	if cerr := fh.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
		return newErr(ErrDisk, werr, fmt.Sprintf("weights: cannot write %s: %v", path, werr))
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return newErr(ErrDisk, err, fmt.Sprintf("weights: cannot open %s: %v", dir, err))
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return newErr(ErrDisk, err, fmt.Sprintf("weights: cannot sync %s: %v", dir, err))
	}
	return nil
}

// SHA256 is a weights file's sha256 in hex, of its bytes (FileSHA256 with the default
// cache directory); a recorded FILE.sha256 is never taken for it.
func SHA256(file string) (string, error) {
	id, err := FileSHA256(file, "")
	return id.SHA256, err
}

func hashFile(p string) (string, error) {
	sum, _, err := filehash.SHA256(p)
	return sum, err
}

// lockDir takes an exclusive lock on dir/.lock so two fetches never write one file.
func lockDir(dir string) (func(), error) {
	p := filepath.Join(dir, ".lock")
	fh, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if errors.Is(err, os.ErrNotExist) {
		// A failed fetch removed the directory (tidyFailed) after this one made it.
		if os.MkdirAll(dir, 0o755) == nil {
			fh, err = os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
		}
	}
	if err != nil {
		return nil, newErr(ErrDisk, err, fmt.Sprintf("weights: cannot create %s: %v", p, err))
	}
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fh.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, newErr(ErrBusy, err, fmt.Sprintf("weights: another clipd is downloading into %s; wait for it to finish", dir))
		}
		return nil, newErr(ErrDisk, err, fmt.Sprintf("weights: cannot lock %s: %v", p, err))
	}
	return func() {
		syscall.Flock(int(fh.Fd()), syscall.LOCK_UN)
		fh.Close()
	}, nil
}
