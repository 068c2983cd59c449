// dns_test.go: the resolver cache looks each host up once however many URLs wait for it,
// runs at most DNSConcurrency lookups at once, and retries a temporary failure once.
package fetch

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/pipeline/item"
)

// TestDNSOneLookupPerHost: 16 workers start on one uncached host at once; the slow lookup is
// made once and the other 15 wait for its answer.
func TestDNSOneLookupPerHost(t *testing.T) {
	img := fakeImage(200, 31)
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write(img) })
	res := &slowResolver{delay: 100 * time.Millisecond}
	opt := testOptions()
	opt.Concurrency = 16
	opt.resolver = res
	var items []item.Item
	for i := range 16 {
		items = append(items, item.Item{Seq: int64(i), URL: "http://img.test:" + portOf(t, s.URL) + "/" + strconv.Itoa(i)})
	}
	for _, r := range runItems(t, New(opt), items) {
		wantBody(t, r, img)
	}
	if n := res.lookups.Load(); n != 1 {
		t.Fatalf("%d lookups for 16 concurrent URLs of one host, want 1", n)
	}
}

// TestDNSConcurrencyBound: with DNSConcurrency 2, five hosts looked up at once get two
// lookups running and three waiting until those end.
func TestDNSConcurrencyBound(t *testing.T) {
	res := &gatedResolver{started: make(chan string, 5), gate: make(chan struct{})}
	opt := Options{DNSConcurrency: 2, resolver: res}.withDefaults()
	c := newDNSCache(&opt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := make(chan error, 5)
	for i := range 5 {
		go func() {
			_, err := c.lookup(ctx, fmt.Sprintf("h%d.test", i))
			errs <- err
		}()
	}
	for range 2 {
		select {
		case <-res.started:
		case <-ctx.Done():
			t.Fatal("two lookups did not start")
		}
	}
	select {
	case h := <-res.started:
		t.Fatalf("a third lookup (%s) started while two were running, DNSConcurrency 2", h)
	case <-time.After(100 * time.Millisecond):
	}
	close(res.gate)
	for range 5 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := res.most.Load(); n != 2 {
		t.Fatalf("at most %d lookups ran at once, want 2", n)
	}
}

// TestDNSRetriedOnce: a temporary failure is retried once, after dnsRetryDelay; a second
// failure fails the URL "dns" and is remembered, so the fetch's own retries do not ask again.
func TestDNSRetriedOnce(t *testing.T) {
	img := fakeImage(200, 32)
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write(img) })
	port := portOf(t, s.URL)
	res := &flakyResolver{failures: map[string]int{"flaky.test": 1, "down.test": 1 << 20}}
	opt := testOptions()
	opt.resolver = res

	wantBody(t, fetchURL(t, opt, "http://flaky.test:"+port+"/a"), img)
	if n := res.count("flaky.test"); n != 2 {
		t.Fatalf("%d lookups of a host that failed once, want 2", n)
	}
	wantFailure(t, fetchURL(t, opt, "http://down.test:"+port+"/a"), ReasonDNS)
	if n := res.count("down.test"); n != 2 {
		t.Fatalf("%d lookups of a host that always fails, want 2", n)
	}
	wantRequests(t, s.requests.Load(), 1)
}

// slowResolver answers every host with 127.0.0.1 after delay, counting lookups.
type slowResolver struct {
	delay   time.Duration
	lookups atomic.Int64
}

func (r *slowResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	r.lookups.Add(1)
	select {
	case <-time.After(r.delay):
		return []net.IPAddr{{IP: net.IPv4(127, 0, 0, 1)}}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// gatedResolver reports each lookup on started and holds it until gate is closed, keeping
// the most lookups it saw running at once.
type gatedResolver struct {
	started       chan string
	gate          chan struct{}
	running, most atomic.Int64
}

func (r *gatedResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	n := r.running.Add(1)
	defer r.running.Add(-1)
	for m := r.most.Load(); n > m && !r.most.CompareAndSwap(m, n); m = r.most.Load() {
	}
	r.started <- host
	select {
	case <-r.gate:
		return []net.IPAddr{{IP: net.IPv4(127, 0, 0, 1)}}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// flakyResolver fails each host's first failures[host] lookups with a temporary error, then
// answers 127.0.0.1.
type flakyResolver struct {
	mu       sync.Mutex
	failures map[string]int
	lookups  map[string]int
}

func (r *flakyResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lookups == nil {
		r.lookups = map[string]int{}
	}
	r.lookups[host]++
	if r.lookups[host] <= r.failures[host] {
		return nil, &net.DNSError{Err: "server misbehaving", Name: host, IsTemporary: true}
	}
	return []net.IPAddr{{IP: net.IPv4(127, 0, 0, 1)}}, nil
}

func (r *flakyResolver) count(host string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lookups[host]
}
