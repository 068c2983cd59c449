// keepalive_test.go: servers that close idle keep-alive connections (issue 16, item 2). A
// pooled connection the server has dropped must not cost a URL its retries, or fail it.
package fetch

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/pipeline/item"
)

// runPhases runs one Fetcher run over two batches of n URLs with a lull between them (the
// pool holds the first batch's connections through the lull) and returns the second batch's
// results.
func runPhases(t *testing.T, f *Fetcher, base string, n int, lull time.Duration) []*Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second+lull)
	defer cancel()
	in := make(chan item.Item)
	out := f.Run(ctx, in)
	phase := func(first int) []*Result {
		go func() {
			for i := range n {
				select {
				case in <- item.Item{Seq: int64(first + i), URL: fmt.Sprintf("%s/img/%d", base, first+i)}:
				case <-ctx.Done():
					return
				}
			}
		}()
		var got []*Result
		for len(got) < n {
			select {
			case r := <-out:
				got = append(got, r)
				t.Cleanup(r.Release)
			case <-ctx.Done():
				t.Fatalf("%d of %d results before the time bound", len(got), n)
			}
		}
		return got
	}
	phase(0)
	time.Sleep(lull)
	second := phase(n)
	close(in)
	for range out {
	}
	return second
}

func idleClosingServer(t *testing.T, idle time.Duration) *httptest.Server {
	t.Helper()
	body := fakeImage(2000, 3)
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond) // overlap, so the pool holds several connections
		w.Write(body)
	}))
	s.Config.IdleTimeout = idle // net/http closes keep-alive connections idle this long
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func wantAllFetchedWithoutRetries(t *testing.T, f *Fetcher, results []*Result) {
	t.Helper()
	for _, r := range results {
		if r.Failure != nil {
			t.Errorf("%s failed: %s", r.Item.URL, r.Failure.Reason)
		}
	}
	if st := f.Stats(); st.Retries != 0 {
		t.Errorf("%d retries counted, want 0: a connection the server closed while idle is no fault of the URL's", st.Retries)
	}
}

// The case: Apache's default KeepAliveTimeout (5 s) and a 7 s lull. Idle connections
// are dropped on our side before the common server timeouts.
func TestIdleConnectionsDroppedBeforeApacheTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 7 s")
	}
	s := idleClosingServer(t, 5*time.Second)
	opt := testOptions()
	opt.Concurrency = 8
	opt.Retries = 1
	f := New(opt)
	results := runPhases(t, f, s.URL, 20, 7*time.Second)
	wantAllFetchedWithoutRetries(t, f, results)
	if st := f.Stats(); st.StaleConnections != 0 {
		t.Errorf("%d stale connections met: idle connections should be closed on our side first", st.StaleConnections)
	}
}

// A server quicker to drop idle connections than our idle limit: a request that fails on a
// reused connection before any answer byte goes again at once on a new connection, not
// counted against the retries.
func TestStaleConnectionRetriedOnNewConnection(t *testing.T) {
	s := idleClosingServer(t, 300*time.Millisecond)
	opt := testOptions()
	opt.Concurrency = 8
	opt.Retries = 0 // a stale connection must not need one
	f := New(opt)
	results := runPhases(t, f, s.URL, 20, time.Second)
	wantAllFetchedWithoutRetries(t, f, results)
	if st := f.Stats(); st.StaleConnections == 0 {
		t.Errorf("no stale connection counted: the test did not exercise the case")
	}
}
