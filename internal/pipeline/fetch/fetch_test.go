// fetch_test.go: the fetcher against real servers on 127.0.0.1: statuses, retries,
// Retry-After, redirects, size limits, encodings, content checks, DNS caching, and the
// exactly-once guarantee at scale.
package fetch

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"crypto/md5"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/pipeline/item"
)

func TestOKBodyIntactAndHeadersSent(t *testing.T) {
	img := fakeImage(300<<10, 1)
	var ua, accept atomic.Value
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		ua.Store(r.UserAgent())
		accept.Store(r.Header.Get("Accept-Encoding"))
		w.Header().Set("Content-Type", "image/jpeg")
		w.Write(img)
	})
	f := New(testOptions())
	results := runItems(t, f, []item.Item{{Seq: 1, URL: s.URL + "/a.jpg"}})
	r := results[0]
	wantBody(t, r, img)
	wantRequests(t, s.requests.Load(), 1)
	if r.ContentType != "image/jpeg" || r.FinalURL != s.URL+"/a.jpg" || r.Attempts != 1 {
		t.Fatalf("result metadata %q %q %d", r.ContentType, r.FinalURL, r.Attempts)
	}
	if ua.Load() != DefaultUserAgent || !strings.Contains(accept.Load().(string), "gzip") {
		t.Fatalf("server saw User-Agent %q, Accept-Encoding %q", ua.Load(), accept.Load())
	}
	st := f.Stats()
	if st.Started != 1 || st.OK != 1 || st.Failed != 0 || st.InFlight != 0 || st.BytesOK != int64(len(img)) || st.BytesReceived != int64(len(img)) {
		t.Fatalf("stats %+v", st)
	}
	r.Release()
	r.Release() // twice is fine
	if r.Body != nil {
		t.Fatal("Body still set after Release")
	}
}

func TestNotFoundIsNotRetried(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	f := New(testOptions())
	r := runItems(t, f, []item.Item{{URL: s.URL + "/gone.jpg"}})[0]
	wantFailure(t, r, "http 404")
	wantRequests(t, s.requests.Load(), 1)
	if st := f.Stats(); st.Failed != 1 || st.Reasons["http 404"] != 1 || st.Retries != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestServerErrorThenSuccess(t *testing.T) {
	img := fakeImage(1000, 2)
	var calls atomic.Int64
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		w.Write(img)
	})
	f := New(testOptions())
	r := runItems(t, f, []item.Item{{URL: s.URL + "/x"}})[0]
	wantBody(t, r, img)
	wantRequests(t, s.requests.Load(), 2)
	if st := f.Stats(); r.Attempts != 2 || st.Retries != 1 || len(st.RetryReasons) != 1 || st.RetryReasons["http 500"] != 1 {
		t.Fatalf("attempts %d, stats %+v", r.Attempts, st)
	}
}

func TestServerErrorRetriesThenFails(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	opt := testOptions()
	opt.Retries = 2
	wantFailure(t, fetchURL(t, opt, s.URL), "http 503")
	wantRequests(t, s.requests.Load(), 3)

	opt.Retries = -1 // none
	before := s.requests.Load()
	wantFailure(t, fetchURL(t, opt, s.URL), "http 503")
	wantRequests(t, s.requests.Load()-before, 1)
}

func TestTooManyRequestsHonoursRetryAfter(t *testing.T) {
	img := fakeImage(500, 3)
	var mu sync.Mutex
	var times []time.Time
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		n := len(times)
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Write(img)
	})
	wantBody(t, fetchURL(t, testOptions(), s.URL), img)
	wantRequests(t, s.requests.Load(), 2)
	if gap := times[1].Sub(times[0]); gap < 900*time.Millisecond {
		t.Fatalf("retried %v after a 429 with Retry-After: 1, want >= 1 s", gap)
	}
}

func TestRetryAfterPastTheDeadlineFailsAtOnce(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	opt := testOptions()
	opt.Timeout = 2 * time.Second
	opt.RetryAfterMax = time.Hour // only the URL's deadline can stop the wait
	start := time.Now()
	wantFailure(t, fetchURL(t, opt, s.URL), "http 429")
	wantRequests(t, s.requests.Load(), 1)
	// Behaviour, not speed: it must not have slept out the deadline (or the hour).
	if time.Since(start) >= opt.Timeout {
		t.Fatalf("waited out the deadline instead of failing at once")
	}
}

// redirectServer serves /r/<n> -> /r/<n-1> ... /r/0 = an image, plus the given extras.
func redirectServer(t *testing.T, img []byte, extra map[string]string) *countingServer {
	return newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if loc, ok := extra[r.URL.Path]; ok {
			w.Header().Set("Location", loc)
			w.WriteHeader(http.StatusFound)
			return
		}
		n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/r/"))
		switch {
		case err != nil:
			http.NotFound(w, r)
		case n == 0:
			w.Write(img)
		case n%3 == 0: // relative to the current path
			w.Header().Set("Location", strconv.Itoa(n-1))
			w.WriteHeader(http.StatusMovedPermanently)
		case n%3 == 1: // absolute path
			w.Header().Set("Location", "/r/"+strconv.Itoa(n-1))
			w.WriteHeader(http.StatusTemporaryRedirect)
		default: // absolute URL
			w.Header().Set("Location", "http://"+r.Host+"/r/"+strconv.Itoa(n-1))
			w.WriteHeader(http.StatusSeeOther)
		}
	})
}

func TestRedirects(t *testing.T) {
	img := fakeImage(2000, 4)
	s := redirectServer(t, img, map[string]string{
		"/loop/a": "/loop/b", "/loop/b": "/loop/a",
		"/ftp":     "ftp://127.0.0.1/file.jpg",
		"/empty":   "",
		"/garbage": "http://[::1",
	})
	for _, tc := range []struct {
		path     string
		reason   string
		requests int64
	}{
		{"/r/3", "", 4},
		{"/r/5", "", 6}, // exactly MaxRedirects hops
		{"/r/6", ReasonTooManyRedirects, 6},
		{"/loop/a", ReasonRedirectLoop, 2},
		{"/ftp", ReasonBadRedirect, 1},
		{"/empty", ReasonBadRedirect, 1},
		{"/garbage", ReasonBadRedirect, 1},
	} {
		t.Run(strings.ReplaceAll(tc.path, "/", "_"), func(t *testing.T) {
			before := s.requests.Load()
			r := fetchURL(t, testOptions(), s.URL+tc.path)
			if tc.reason == "" {
				wantBody(t, r, img)
				if r.FinalURL != s.URL+"/r/0" {
					t.Fatalf("FinalURL %q", r.FinalURL)
				}
			} else {
				wantFailure(t, r, tc.reason)
			}
			wantRequests(t, s.requests.Load()-before, tc.requests)
		})
	}
}

func TestTooLarge(t *testing.T) {
	const limit = 1 << 20
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/declared": // Content-Length over the limit: refused before the body is read
			w.Header().Set("Content-Length", strconv.Itoa(64<<20))
			w.WriteHeader(http.StatusOK)
			w.Write(make([]byte, 1000))
		case "/chunked": // no Content-Length: streamed in chunks past the limit
			chunk := fakeImage(64<<10, 5)
			for range 32 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		case "/fits":
			w.Write(fakeImage(limit, 6))
		}
	})
	opt := testOptions()
	opt.MaxBodyBytes = limit
	wantFailure(t, fetchURL(t, opt, s.URL+"/declared"), ReasonTooLarge)
	wantRequests(t, s.requests.Load(), 1)
	wantFailure(t, fetchURL(t, opt, s.URL+"/chunked"), ReasonTooLarge)
	wantRequests(t, s.requests.Load(), 2)
	wantBody(t, fetchURL(t, opt, s.URL+"/fits"), fakeImage(limit, 6))
}

func gzipBytes(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestContentEncodingDecoded(t *testing.T) {
	img := bytes.Repeat([]byte("\xFF\xD8\xFFclipd compressible image "), 4000)
	var zlibBuf, rawBuf bytes.Buffer
	zw := zlib.NewWriter(&zlibBuf)
	zw.Write(img)
	zw.Close()
	fw, _ := flate.NewWriter(&rawBuf, flate.BestSpeed)
	fw.Write(img)
	fw.Close()
	bodies := map[string][2]string{
		"/gzip":     {"gzip", string(gzipBytes(t, img))},
		"/zlib":     {"deflate", string(zlibBuf.Bytes())},
		"/raw":      {"deflate", string(rawBuf.Bytes())},
		"/corrupt":  {"gzip", string(gzipBytes(t, img)[:200])},
		"/brotli":   {"br", "whatever"},
		"/identity": {"identity", string(img)},
	}
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		b := bodies[r.URL.Path]
		w.Header().Set("Content-Encoding", b[0])
		w.Write([]byte(b[1]))
	})
	for _, p := range []string{"/gzip", "/zlib", "/raw", "/identity"} {
		wantBody(t, fetchURL(t, testOptions(), s.URL+p), img)
	}
	wantFailure(t, fetchURL(t, testOptions(), s.URL+"/corrupt"), ReasonBadEncoding)
	wantFailure(t, fetchURL(t, testOptions(), s.URL+"/brotli"), ReasonBadEncoding)
}

func TestGzipBombStopsAtTheLimit(t *testing.T) {
	// Concatenated gzip members are one valid stream: 256 x 1 MiB of zeros from ~260 KB.
	member := gzipBytes(t, make([]byte, 1<<20))
	bomb := bytes.Repeat(member, 256)
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(bomb)
	})
	opt := testOptions()
	opt.MaxBodyBytes = 4 << 20
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	wantFailure(t, fetchURL(t, opt, s.URL), ReasonTooLarge)
	runtime.ReadMemStats(&after)
	wantRequests(t, s.requests.Load(), 1)
	// Decoding all of it would allocate 256 MiB; stopping at the limit allocates a few times 4 MiB.
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Fatalf("fetching the bomb allocated %d MiB", grew>>20)
	}
}

func TestHTMLIsNotAnImage(t *testing.T) {
	img := fakeImage(800, 7)
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/page":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write([]byte("<p>This photo is no longer available</p>"))
		case "/mislabeled-page":
			w.Header().Set("Content-Type", "image/jpeg")
			w.Write([]byte("\n  <!DOCTYPE html><html><body>gone</body></html>"))
		case "/mislabeled-image":
			w.Header().Set("Content-Type", "text/html")
			w.Write(img)
		}
	})
	wantFailure(t, fetchURL(t, testOptions(), s.URL+"/page"), ReasonNotImage)
	wantFailure(t, fetchURL(t, testOptions(), s.URL+"/mislabeled-page"), ReasonNotImage)
	wantBody(t, fetchURL(t, testOptions(), s.URL+"/mislabeled-image"), img)
	opt := testOptions()
	opt.AcceptHTML = true
	wantBody(t, fetchURL(t, opt, s.URL+"/page"), []byte("<p>This photo is no longer available</p>"))
	wantRequests(t, s.requests.Load(), 4) // none retried
}

func TestExpectedMD5AndSize(t *testing.T) {
	img := fakeImage(5000, 8)
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write(img) })
	sum := md5.Sum(img)
	good := base64.StdEncoding.EncodeToString(sum[:])
	other := md5.Sum([]byte("placeholder"))
	bad := base64.StdEncoding.EncodeToString(other[:])

	wantBody(t, fetchItem(t, testOptions(), item.Item{URL: s.URL, MD5: good, Size: int64(len(img))}), img)
	wantBody(t, fetchItem(t, testOptions(), item.Item{URL: s.URL, MD5: fmt.Sprintf("%x", sum)}), img)
	wantFailure(t, fetchItem(t, testOptions(), item.Item{URL: s.URL, MD5: bad}), ReasonMD5Mismatch)
	wantFailure(t, fetchItem(t, testOptions(), item.Item{URL: s.URL, Size: 4999}), ReasonSizeMismatch)
	wantRequests(t, s.requests.Load(), 4) // mismatches are not retried
}

func TestBadURL(t *testing.T) {
	for _, u := range []string{"", "ftp://127.0.0.1/a.jpg", "/relative.jpg", "http://"} {
		wantFailure(t, fetchURL(t, testOptions(), u), ReasonBadURL)
	}
}

// fakeResolver answers img.test with 127.0.0.1 and nothing else, counting lookups.
type fakeResolver struct{ lookups atomic.Int64 }

func (r *fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	r.lookups.Add(1)
	if host == "img.test" {
		return []net.IPAddr{{IP: net.IPv4(127, 0, 0, 1)}}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestDNSCachedAndFailures(t *testing.T) {
	img := fakeImage(100, 9)
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close") // every request dials anew
		w.Write(img)
	})
	_, port, _ := net.SplitHostPort(s.Listener.Addr().String())
	res := &fakeResolver{}
	opt := testOptions()
	opt.Concurrency = 1
	opt.resolver = res
	f := New(opt)
	var items []item.Item
	for i := range 5 {
		items = append(items, item.Item{Seq: int64(i), URL: "http://img.test:" + port + "/" + strconv.Itoa(i)})
	}
	for _, r := range runItems(t, f, items) {
		wantBody(t, r, img)
	}
	wantRequests(t, s.requests.Load(), 5)
	if n := res.lookups.Load(); n != 1 {
		t.Fatalf("%d DNS lookups for 5 connections to one host, want 1 (cached)", n)
	}
	r := runItems(t, f, []item.Item{{URL: "http://nowhere.test:" + port + "/x"}})[0]
	wantFailure(t, r, ReasonDNS)
	if n := res.lookups.Load(); n != 2 {
		t.Fatalf("%d lookups after a not-found name, want 2 (not retried)", n)
	}
}

// TestEveryItemExactlyOnce: 2,000 URLs with mixed outcomes at concurrency 64 against a host
// that allows 16 connections, so most workers wait for a connection.
func TestEveryItemExactlyOnce(t *testing.T) {
	const n = 2000
	var failedOnce sync.Map
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		i, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		switch i % 5 {
		case 0:
			w.Write(fakeImage(1000+i, uint64(i)))
		case 1:
			http.NotFound(w, r)
		case 2: // 500 once, then the image
			if _, seen := failedOnce.LoadOrStore(i, true); !seen {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			w.Write(fakeImage(1000+i, uint64(i)))
		case 3:
			http.Redirect(w, r, "/"+strconv.Itoa(i-3), http.StatusFound)
		case 4:
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html>nope</html>"))
		}
	})
	opt := testOptions()
	opt.Concurrency = 64
	opt.MaxConnsPerHost = 16
	opt.OutputBuffer = 8
	f := New(opt)
	items := make([]item.Item, n)
	for i := range items {
		items[i] = item.Item{Seq: int64(i), Line: int64(i + 2), URL: s.URL + "/" + strconv.Itoa(i)}
	}
	results := runItems(t, f, items)
	if len(results) != n {
		t.Fatalf("%d results for %d items", len(results), n)
	}
	seen := make([]bool, n)
	for _, r := range results {
		i := int(r.Item.Seq)
		if seen[i] {
			t.Fatalf("item %d came out twice", i)
		}
		seen[i] = true
		switch i % 5 {
		case 0, 2:
			wantBody(t, r, fakeImage(1000+i, uint64(i)))
		case 3:
			wantBody(t, r, fakeImage(1000+i-3, uint64(i-3)))
		case 1:
			wantFailure(t, r, "http 404")
		case 4:
			wantFailure(t, r, ReasonNotImage)
		}
	}
	st := f.Stats()
	if st.Started != n || st.OK != 3*n/5 || st.Failed != 2*n/5 || st.InFlight != 0 ||
		st.Retries != n/5 || st.Redirects != n/5 ||
		st.Reasons["http 404"] != n/5 || st.Reasons[ReasonNotImage] != n/5 || len(st.Reasons) != 2 {
		t.Fatalf("stats %+v", st)
	}
	wantRequests(t, s.requests.Load(), n+n/5+n/5) // one each, plus the 500s' retries and the redirects' targets
}

func TestURLSentAsGiven(t *testing.T) {
	img := fakeImage(100, 11)
	var got atomic.Value
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.RequestURI)
		w.Write(img)
	})
	// Escapes in signed or odd paths must reach the server unchanged.
	const path = "/dir/a%2Fb%20c..//x.jpg?sig=k%3D%3D&e=1"
	wantBody(t, fetchURL(t, testOptions(), s.URL+path), img)
	if got.Load() != path {
		t.Fatalf("server saw %q, want %q", got.Load(), path)
	}
}
