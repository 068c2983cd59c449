// helpers_test.go: loopback servers that count their requests, and helpers that run a
// Fetcher over a few items with a hard time bound.
package fetch

import (
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/pipeline/item"
)

// testOptions are small and quick: short back-offs so retry tests take milliseconds. They
// allow private networks because the test servers listen on 127.0.0.1.
func testOptions() Options {
	return Options{
		Concurrency:          4,
		Retries:              3,
		Timeout:              5 * time.Second,
		BackoffBase:          5 * time.Millisecond,
		BackoffMax:           20 * time.Millisecond,
		AllowPrivateNetworks: true,
	}
}

// countingServer is an httptest server on 127.0.0.1 that counts the requests it handles.
type countingServer struct {
	*httptest.Server
	requests atomic.Int64
}

func newServer(t *testing.T, h http.HandlerFunc) *countingServer {
	t.Helper()
	s := &countingServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// fakeImage returns n deterministic bytes that start like a JPEG.
func fakeImage(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	copy(b, []byte{0xFF, 0xD8, 0xFF, 0xE0})
	return b
}

// runItems runs f over items and returns every result; the run must end within 30 s.
func runItems(t *testing.T, f *Fetcher, items []item.Item) []*Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var results []*Result
	for r := range f.Run(ctx, feed(ctx, items)) {
		results = append(results, r)
	}
	if ctx.Err() != nil {
		t.Fatalf("the run did not end within 30 s")
	}
	t.Cleanup(func() {
		for _, r := range results {
			r.Release()
		}
	})
	return results
}

// feed sends items on the channel it returns, then closes it (early, when ctx ends).
func feed(ctx context.Context, items []item.Item) <-chan item.Item {
	in := make(chan item.Item)
	go func() {
		defer close(in)
		for _, it := range items {
			select {
			case in <- it:
			case <-ctx.Done():
				return
			}
		}
	}()
	return in
}

func fetchURL(t *testing.T, opt Options, url string) *Result {
	t.Helper()
	return fetchItem(t, opt, item.Item{Seq: 7, Line: 8, URL: url})
}

func fetchItem(t *testing.T, opt Options, it item.Item) *Result {
	t.Helper()
	results := runItems(t, New(opt), []item.Item{it})
	if len(results) != 1 {
		t.Fatalf("got %d results for one item, want 1", len(results))
	}
	r := results[0]
	if !reflect.DeepEqual(r.Item, it) {
		t.Fatalf("result carries item %+v, want %+v", r.Item, it)
	}
	return r
}

func wantBody(t *testing.T, r *Result, body []byte) {
	t.Helper()
	if r.Failure != nil {
		t.Fatalf("%s failed: %q, want %d bytes", r.Item.URL, r.Failure.Reason, len(body))
	}
	if string(r.Body) != string(body) {
		t.Fatalf("%s: got %d bytes, want %d (different content)", r.Item.URL, len(r.Body), len(body))
	}
}

func wantFailure(t *testing.T, r *Result, reason string) {
	t.Helper()
	if r.Failure == nil {
		t.Fatalf("%s: got %d bytes, want failure %q", r.Item.URL, len(r.Body), reason)
	}
	if r.Body != nil {
		t.Fatalf("%s: failure %q carries a body", r.Item.URL, r.Failure.Reason)
	}
	if r.Failure.Reason != reason || r.Failure.Stage != "fetch" || !reflect.DeepEqual(r.Failure.Item, r.Item) {
		t.Fatalf("%s: failure %+v, want stage fetch reason %q", r.Item.URL, r.Failure, reason)
	}
}

func wantRequests(t *testing.T, got int64, want int64) {
	t.Helper()
	if got != want {
		t.Fatalf("server saw %d requests, want %d", got, want)
	}
}

// rawServer accepts TCP connections on 127.0.0.1 and hands each to serve; it counts
// connections and closes everything at cleanup.
type rawServer struct {
	ln    net.Listener
	conns atomic.Int64
	mu    sync.Mutex
	open  []net.Conn
	wg    sync.WaitGroup
}

func newRawServer(t *testing.T, serve func(c net.Conn)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			s.mu.Lock()
			s.open = append(s.open, c)
			s.mu.Unlock()
			s.wg.Go(func() { serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.open {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *rawServer) URL() string { return "http://" + s.ln.Addr().String() }

// readRequestHead reads up to the blank line that ends a request's headers.
func readRequestHead(c net.Conn) bool {
	buf := make([]byte, 0, 1024)
	one := make([]byte, 1)
	for {
		if _, err := c.Read(one); err != nil {
			return false
		}
		buf = append(buf, one[0])
		if n := len(buf); n >= 4 && string(buf[n-4:]) == "\r\n\r\n" {
			return true
		}
	}
}
