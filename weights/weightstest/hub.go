// hub.go: the fake hub: resolve URLs with the hub's headers and redirects, a CDN path that
// honours Range, and the faults and records the download tests use.

package weightstest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Commit is the X-Repo-Commit the hub reports.
const Commit = "0123456789abcdef0123456789abcdef01234567"

// Repo is one repository the hub serves at one revision.
type Repo struct {
	Revision string            // the only revision served (others answer 404 RevisionNotFound)
	Files    map[string][]byte // file name -> content; *.safetensors are served as LFS files
}

// Hub is a fake hub on 127.0.0.1. Resolve URLs (/ORG/NAME/resolve/REV/FILE) of LFS files
// answer with the hub's headers (X-Linked-Etag = sha256, X-Linked-Size, X-Repo-Commit) and
// a redirect to /cdn/...; small files are served directly with a git-sha1-like ETag.
// /plain/FILE serves Plain[FILE] without hub headers (any https-URL server).
type Hub struct {
	*httptest.Server
	Repos map[string]*Repo  // "org/name" -> repo
	Plain map[string][]byte // /plain/FILE

	mu sync.Mutex
	// Faults for the data responses (/cdn and /plain), set between fetches.
	Fail5xx        int    // the next n data requests answer 503
	DropAfter      int64  // >0: the next data GET sends this many bytes, then drops the connection
	StallAfter     int64  // >0: the next data GET sends this many bytes, then sends nothing more
	IgnoreRange    bool   // answer 200 with the whole file to range requests
	BadRange       int    // the next n range requests get a 206 whose Content-Range starts at 0
	WrongLinkedSHA string // X-Linked-Etag to report instead of the true sha256

	// What was seen.
	Heads, Gets  map[string]int // by URL path
	Ranges       []string       // Range headers of data GETs ("" when none)
	Revisions    []string       // revisions asked for in resolve URLs, unescaped
	AuthHeaders  []string       // Authorization headers of resolve requests
	DataRequests int            // data GETs (including failed ones)
}

// NewHub starts a hub serving repos; it stops when the test ends.
func NewHub(t testing.TB, repos map[string]*Repo) *Hub {
	h := &Hub{Repos: repos, Plain: map[string][]byte{}, Heads: map[string]int{}, Gets: map[string]int{}}
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.Server.Close)
	return h
}

// SHA256 is the hex sha256 of b.
func SHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Lock and Unlock guard the fault and record fields while a fetch may run.
func (h *Hub) Lock()   { h.mu.Lock() }
func (h *Hub) Unlock() { h.mu.Unlock() }

// Count returns the counts of HEAD and GET requests for a path.
func (h *Hub) Count(path string) (heads, gets int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.Heads[path], h.Gets[path]
}

// Requests returns the number of data GETs so far.
func (h *Hub) Requests() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.DataRequests
}

// SeenRevisions returns a copy of the revisions asked for.
func (h *Hub) SeenRevisions() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.Revisions...)
}

// Set changes faults (or resets records) under the hub's lock.
func (h *Hub) Set(change func(h *Hub)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	change(h)
}

// SeenRanges returns a copy of the Range headers of data GETs.
func (h *Hub) SeenRanges() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.Ranges...)
}

func (h *Hub) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	if r.Method == http.MethodHead {
		h.Heads[r.URL.Path]++
	} else {
		h.Gets[r.URL.Path]++
	}
	h.mu.Unlock()
	switch {
	case strings.HasPrefix(r.URL.Path, "/cdn/"):
		// /cdn/ORG/NAME/FILE
		parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/cdn/"), "/", 3)
		if len(parts) != 3 {
			http.NotFound(w, r)
			return
		}
		repo := h.Repos[parts[0]+"/"+parts[1]]
		if repo == nil || repo.Files[parts[2]] == nil {
			http.NotFound(w, r)
			return
		}
		h.serveData(w, r, parts[2], repo.Files[parts[2]])
	case strings.HasPrefix(r.URL.Path, "/plain/"):
		name := strings.TrimPrefix(r.URL.Path, "/plain/")
		b := h.Plain[name]
		if b == nil {
			http.NotFound(w, r)
			return
		}
		h.serveData(w, r, name, b)
	default:
		h.serveResolve(w, r)
	}
}

// serveResolve answers /ORG/NAME/resolve/REV/FILE like the hub.
func (h *Hub) serveResolve(w http.ResponseWriter, r *http.Request) {
	segs := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	if len(segs) != 5 || segs[2] != "resolve" {
		http.NotFound(w, r)
		return
	}
	name := segs[0] + "/" + segs[1]
	rev, err1 := url.PathUnescape(segs[3])
	file, err2 := url.PathUnescape(segs[4])
	h.mu.Lock()
	h.Revisions = append(h.Revisions, rev)
	h.AuthHeaders = append(h.AuthHeaders, r.Header.Get("Authorization"))
	wrongSHA := h.WrongLinkedSHA
	h.mu.Unlock()
	repo := h.Repos[name]
	switch {
	case err1 != nil || err2 != nil:
		http.Error(w, "bad path", http.StatusBadRequest)
		return
	case repo == nil:
		w.Header().Set("X-Error-Code", "RepoNotFound")
		http.Error(w, "Repository not found", http.StatusUnauthorized)
		return
	case rev != repo.Revision:
		w.Header().Set("X-Error-Code", "RevisionNotFound")
		w.Header().Set("X-Error-Message", "Invalid rev id: "+rev)
		http.Error(w, "Revision not found", http.StatusNotFound)
		return
	case repo.Files[file] == nil:
		w.Header().Set("X-Error-Code", "EntryNotFound")
		w.Header().Set("X-Error-Message", "Entry not found")
		http.Error(w, "Entry not found", http.StatusNotFound)
		return
	}
	b := repo.Files[file]
	w.Header().Set("X-Repo-Commit", Commit)
	if strings.HasSuffix(file, ".safetensors") {
		sha := SHA256(b)
		if wrongSHA != "" {
			sha = wrongSHA
		}
		w.Header().Set("X-Linked-Etag", `"`+sha+`"`)
		w.Header().Set("X-Linked-Size", fmt.Sprint(len(b)))
		w.Header().Set("ETag", `W/"not-the-sha"`)
		http.Redirect(w, r, "/cdn/"+name+"/"+file, http.StatusFound)
		return
	}
	// A regular git file: its ETag is a git blob sha1 (40 hex), not a sha256.
	w.Header().Set("ETag", `"`+SHA256(b)[:40]+`"`)
	http.ServeContent(w, r, file, time.Time{}, bytes.NewReader(b))
}

// serveData serves file content with the configured faults.
func (h *Hub) serveData(w http.ResponseWriter, r *http.Request, name string, b []byte) {
	if r.Method != http.MethodGet {
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
		return
	}
	h.mu.Lock()
	h.DataRequests++
	h.Ranges = append(h.Ranges, r.Header.Get("Range"))
	fail := h.Fail5xx > 0
	if fail {
		h.Fail5xx--
	}
	drop, stall := h.DropAfter, h.StallAfter
	h.DropAfter, h.StallAfter = 0, 0
	ignoreRange := h.IgnoreRange
	badRange := h.BadRange > 0 && r.Header.Get("Range") != ""
	if badRange {
		h.BadRange--
	}
	h.mu.Unlock()
	if fail {
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	switch {
	case drop > 0 || stall > 0:
		n := drop + stall
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.WriteHeader(http.StatusOK)
		w.Write(b[:n])
		w.(http.Flusher).Flush()
		if stall > 0 {
			select { // until the client gives up (or a bound, so the server can close)
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
			return
		}
		panic(http.ErrAbortHandler) // drops the connection mid-body
	case badRange:
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(b)-1, len(b)))
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(b)
	case ignoreRange:
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.WriteHeader(http.StatusOK)
		w.Write(b)
	default:
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
	}
}
