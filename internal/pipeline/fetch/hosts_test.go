// hosts_test.go: per-host politeness against several loopback servers standing for several
// hosts: the connection cap, the rate cap, the host back-off after 429, giving a dead host
// up, and the bounded host table.
package fetch

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/pipeline/item"
)

// peakServer counts the requests it is serving at once and remembers the most.
type peakServer struct {
	*countingServer
	now, peak atomic.Int64
}

func newPeakServer(t *testing.T, hold time.Duration, body []byte) *peakServer {
	s := &peakServer{}
	s.countingServer = newServer(t, func(w http.ResponseWriter, r *http.Request) {
		n := s.now.Add(1)
		defer s.now.Add(-1)
		for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
		}
		time.Sleep(hold)
		w.Write(body)
	})
	return s
}

func itemsFor(base string, n int, seq0 int64) []item.Item {
	items := make([]item.Item, n)
	for i := range items {
		items[i] = item.Item{Seq: seq0 + int64(i), URL: base + "/" + strconv.Itoa(i) + ".jpg"}
	}
	return items
}

func TestPerHostConnectionCap(t *testing.T) {
	img := fakeImage(2000, 20)
	a := newPeakServer(t, 20*time.Millisecond, img)
	b := newPeakServer(t, 20*time.Millisecond, img)
	opt := testOptions()
	opt.Concurrency = 16
	opt.MaxConnsPerHost = 3
	var items []item.Item
	for i := range 40 { // interleaved, as a shuffled list would be
		items = append(items, itemsFor(a.URL, 1, int64(2*i))[0], itemsFor(b.URL, 1, int64(2*i+1))[0])
	}
	for _, r := range runItems(t, New(opt), items) {
		wantBody(t, r, img)
	}
	for name, s := range map[string]*peakServer{"a": a, "b": b} {
		if p := s.peak.Load(); p > 3 || p < 2 {
			t.Errorf("host %s served %d requests at once, want at most 3 (and the cap used)", name, p)
		}
	}
}

// TestTooManyRequestsBacksTheHostOff: one worker, a 429 with Retry-After: 1 from host a.
// Host a's next request waits the second out; host b's items are fetched meanwhile.
func TestTooManyRequestsBacksTheHostOff(t *testing.T) {
	img := fakeImage(500, 21)
	var mu sync.Mutex
	var aTimes, bTimes []time.Time
	a := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		aTimes = append(aTimes, time.Now())
		first := len(aTimes) == 1
		mu.Unlock()
		if first {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Write(img)
	})
	b := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		bTimes = append(bTimes, time.Now())
		mu.Unlock()
		w.Write(img)
	})
	opt := testOptions()
	opt.Concurrency = 1
	items := append(itemsFor(a.URL, 1, 0), itemsFor(b.URL, 5, 1)...)
	items = append(items, itemsFor(a.URL, 1, 6)...)
	f := New(opt)
	for _, r := range runItems(t, f, items) {
		wantBody(t, r, img)
	}
	if len(aTimes) != 3 || len(bTimes) != 5 {
		t.Fatalf("host a saw %d requests (want 3: the 429, its retry, the other URL), b %d (want 5)", len(aTimes), len(bTimes))
	}
	for _, at := range aTimes[1:] {
		if gap := at.Sub(aTimes[0]); gap < 900*time.Millisecond {
			t.Errorf("host a asked again %v after its 429 with Retry-After: 1", gap)
		}
	}
	if last := bTimes[len(bTimes)-1]; !last.Before(aTimes[1]) {
		t.Errorf("host b's URLs waited for host a's back-off")
	}
	if st := f.Stats(); st.RetryReasons["http 429"] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDeadHostGivenUp(t *testing.T) {
	img := fakeImage(700, 22)
	alive := newServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write(img) })
	ln, err := net.Listen("tcp", "127.0.0.1:0") // after alive's, so it cannot take this port
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()

	opt := testOptions()
	opt.HostMaxFailures = 5
	f := New(opt)
	items := append(itemsFor(dead, 60, 0), itemsFor(alive.URL, 10, 60)...)
	givenUp := 0
	for _, r := range runItems(t, f, items) {
		if r.Item.Seq >= 60 {
			wantBody(t, r, img)
			continue
		}
		switch reason := r.Failure.Reason; {
		case reason == "host given up (after 5 failures: connection refused)":
			givenUp++
		case reason != ReasonConnRefused:
			t.Errorf("dead host's URL failed %q", reason)
		}
	}
	// Concurrency 4 with 3 retries each: at most a few URLs see the refusals themselves.
	if givenUp < 55 {
		t.Fatalf("%d of 60 URLs failed as given up", givenUp)
	}
	if st := f.Stats(); st.Reasons[ReasonHostGivenUp] != int64(givenUp) || st.Retries > 10 {
		t.Fatalf("stats %+v", st)
	}
}

func TestHostRate(t *testing.T) {
	img := fakeImage(300, 23)
	var mu sync.Mutex
	var times []time.Time
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		w.Write(img)
	})
	other := newServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write(img) })
	opt := testOptions()
	opt.HostRate = 10 // a burst of 10, then one every 100 ms
	start := time.Now()
	items := append(itemsFor(s.URL, 15, 0), itemsFor(other.URL, 15, 15)...)
	for _, r := range runItems(t, New(opt), items) {
		wantBody(t, r, img)
	}
	if len(times) != 15 {
		t.Fatalf("%d requests", len(times))
	}
	// Request k (0-based) may not go before (k-9)*100 ms: bounded below, not timed tightly.
	for k, at := range times {
		if earliest := time.Duration(k-9) * 100 * time.Millisecond; at.Sub(start) < earliest-20*time.Millisecond {
			t.Errorf("request %d went after %v, want >= %v", k, at.Sub(start), earliest)
		}
	}
}

// TestHostRateWaitBoundedByDeadline: tokens the URL's deadline cannot reach fail the URL
// at once with "timeout" instead of holding it.
func TestHostRateWaitBoundedByDeadline(t *testing.T) {
	img := fakeImage(300, 24)
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write(img) })
	opt := testOptions()
	opt.HostRate = 1
	opt.Timeout = 1500 * time.Millisecond
	results := runItems(t, New(opt), itemsFor(s.URL, 8, 0))
	ok := 0
	for _, r := range results {
		if r.Failure == nil {
			ok++
		} else if r.Failure.Reason != ReasonTimeout {
			t.Errorf("failure %q, want timeout", r.Failure.Reason)
		}
	}
	if ok < 2 || ok > 3 {
		t.Fatalf("%d of 8 URLs fetched at 1 request/s within 1.5 s each, want 2 or 3", ok)
	}
}

func TestHostTableBounded(t *testing.T) {
	tab := newHostTable(3)
	a, b := tab.get("a:80"), tab.get("b:80")
	for _, k := range []string{"c:80", "a:80", "d:80", "e:80"} { // b is least recently used
		tab.get(k)
	}
	if n := tab.len(); n != 3 {
		t.Fatalf("%d hosts kept, want 3", n)
	}
	if tab.get("a:80") != a {
		t.Fatal("recently used host a was evicted")
	}
	if tab.get("b:80") == b {
		t.Fatal("least recently used host b was kept over newer ones")
	}
}

func TestHostKey(t *testing.T) {
	for raw, want := range map[string]string{
		"http://Example.com/a":      "example.com:80",
		"https://example.com/a":     "example.com:443",
		"http://example.com:8080/":  "example.com:8080",
		"http://[2001:db8::1]/x":    "[2001:db8::1]:80",
		"https://127.0.0.1:9443/x?": "127.0.0.1:9443",
	} {
		u, _ := checkURL(raw)
		if got := hostKey(u); got != want {
			t.Errorf("hostKey(%s) = %s, want %s", raw, got, want)
		}
	}
}

// A list dominated by one slow host: URLs past the host's cap wait off the workers, so the
// workers go on to the other hosts' URLs instead of all queueing for the slow one (issue 15:
// URLs over the per-host cap used to wait inside fasthttp, each holding a worker).
func TestDominantHostDoesNotHoldTheWorkers(t *testing.T) {
	img := fakeImage(2000, 22)
	slow := newPeakServer(t, 100*time.Millisecond, img)
	fast := newPeakServer(t, 0, img)
	opt := testOptions()
	opt.Concurrency = 32
	opt.MaxConnsPerHost = 4
	items := append(itemsFor(slow.URL, 120, 0), itemsFor(fast.URL, 20, 120)...)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	slowDone, fastDone, slowBeforeLastFast := 0, 0, -1
	for r := range New(opt).Run(ctx, feed(ctx, items)) {
		wantBody(t, r, img)
		r.Release()
		if r.Item.Seq < 120 {
			slowDone++
		} else if fastDone++; fastDone == 20 {
			slowBeforeLastFast = slowDone
		}
	}
	if slowDone != 120 || fastDone != 20 {
		t.Fatalf("%d slow and %d fast results, want 120 and 20", slowDone, fastDone)
	}
	// The slow host serves 4 URLs per 100 ms: the fast host's 20 URLs, reached once the
	// slow host's 120 are set aside, are done long before half of those (92 of 120 when
	// workers waited for the slow host's connections; about 10 now; 60 leaves room for a
	// loaded machine).
	if slowBeforeLastFast > 60 {
		t.Errorf("the fast host's last URL came after %d of the slow host's 120: the workers waited for the slow host", slowBeforeLastFast)
	}
	if p := slow.peak.Load(); p > 4 {
		t.Errorf("the slow host served %d requests at once, want at most 4", p)
	}
}

// A host that answers but whose bodies break off (here: eight bodies reset together after
// their headers, as when many bodies wait on the memory budget and their server gives up on
// them) is alive: those URLs fail on their own and the host's later URLs are fetched. (Counted
// as a dead host, such a burst gave up 188,493 good URLs of a soak run.)
func TestBodiesCutOffDoNotGiveTheHostUp(t *testing.T) {
	img := fakeImage(3000, 23)
	var cut sync.WaitGroup
	cut.Add(8)
	var served atomic.Int64
	s := newRawServer(t, func(c net.Conn) {
		defer c.Close()
		for readRequestHead(c) {
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(img))
			if served.Add(1) > 8 {
				c.Write(img)
				continue
			}
			c.Write(img[:100])
			cut.Done()
			cut.Wait()                    // all eight have their headers
			c.(*net.TCPConn).SetLinger(0) // then each is reset
			return
		}
	})
	opt := testOptions()
	opt.Concurrency = 8
	opt.Retries = -1 // none
	opt.HostMaxFailures = 3
	f := New(opt)
	ok := 0
	for _, r := range runItems(t, f, itemsFor(s.URL(), 16, 0)) {
		switch {
		case r.Failure == nil:
			ok++
		case strings.HasPrefix(r.Failure.Reason, ReasonHostGivenUp):
			t.Errorf("%s failed %q: a host that answers is not dead", r.Item.URL, r.Failure.Reason)
		}
	}
	if ok != 8 {
		t.Errorf("%d URLs fetched, want the 8 after the cut-off ones", ok)
	}
}
