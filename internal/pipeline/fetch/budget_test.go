// budget_test.go: Options.Budget: bodies take their size before they are read, so that the
// bodies alive at once never exceed it, however many connections are open and however late
// the last byte; a body is held until its Result is released.
package fetch

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/pipeline/budget"
	"github.com/clipd/clipd/internal/pipeline/item"
)

func TestBodiesStayWithinTheBudget(t *testing.T) {
	const size, n = 1 << 20, 24
	img := fakeImage(size, 7)
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if !chunked {
					w.Header().Set("Content-Length", strconv.Itoa(size))
				}
				w.Write(img[:size-1])
				w.(http.Flusher).Flush()
				time.Sleep(50 * time.Millisecond) // every connection holds an almost whole body
				w.Write(img[size-1:])
			})
			opt := testOptions()
			opt.Concurrency, opt.MaxConnsPerHost = 16, 16
			opt.MaxBodyBytes = 2 << 20
			// Room for 4 bodies of known length, or 2 of unknown length (each takes the limit).
			b := budget.New("bodies", 4*(size+1)+(4<<20))
			opt.Budget = b
			f := New(opt)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			in := make(chan item.Item)
			go func() {
				defer close(in)
				for i := range n {
					in <- item.Item{Seq: int64(i), URL: fmt.Sprintf("%s/%d.jpg", srv.URL, i)}
				}
			}()
			ok := 0
			for res := range f.Run(ctx, in) {
				if res.Failure != nil {
					t.Errorf("%s: %s", res.Item.URL, res.Failure.Reason)
				} else if len(res.Body) == size {
					ok++
				}
				time.Sleep(5 * time.Millisecond) // a slow consumer: queued bodies keep their share
				res.Release()
			}
			if ok != n {
				t.Errorf("%d of %d bodies", ok, n)
			}
			if b.Peak() > b.Limit() || b.Peak() < size {
				t.Errorf("peak held %d, budget %d", b.Peak(), b.Limit())
			}
			if b.Held() != 0 {
				t.Errorf("%d bytes still held after every Result was released", b.Held())
			}
			t.Logf("peak %d of %d", b.Peak(), b.Limit())
		})
	}
}

// A body that can never fit the budget fails "too large" without being read; one that waits
// past its URL's deadline fails "timeout"; neither keeps any of the budget.
func TestBodyOverTheBudget(t *testing.T) {
	img := fakeImage(1<<20, 3)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(img)))
		w.Write(img)
	})
	opt := testOptions()
	opt.Retries = -1
	opt.Budget = budget.New("bodies", 1<<19)
	wantFailure(t, fetchURL(t, opt, srv.URL+"/a.jpg"), ReasonTooLarge)

	opt.Budget = budget.New("bodies", 2<<20)
	opt.Budget.Acquire(context.Background(), 2<<20) // all of it held elsewhere
	opt.Timeout = 300 * time.Millisecond
	wantFailure(t, fetchURL(t, opt, srv.URL+"/b.jpg"), ReasonTimeout)
	if opt.Budget.Held() != 2<<20 {
		t.Errorf("held %d, want only the other holder's", opt.Budget.Held())
	}
}
