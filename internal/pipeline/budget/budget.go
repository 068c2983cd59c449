// Package budget is a byte budget: a counting semaphore over bytes that the pipeline's stages
// acquire before they allocate (a download's body, a file's bytes, a decode's intermediate
// and its pixels) and release once the memory is no longer needed, so that what is alive at
// once never exceeds what the memory plan gave that pool.
package budget

import (
	"context"
	"fmt"
	"sync"
)

// Budget bounds the bytes held at once. Unlike a best-effort limit it never lets a request
// through past the limit: one larger than the whole budget fails at once with *TooLarge, and
// the others wait, first come first served, so a large request is not starved by a stream of
// small ones. Safe for concurrent use; a nil *Budget holds nothing and never waits.
type Budget struct {
	name  string
	mu    sync.Mutex
	limit int64
	held  int64
	peak  int64
	queue []*waiter // requests waiting, oldest first
}

type waiter struct {
	n       int64
	granted bool
	ready   chan struct{} // closed once granted
}

// New returns a budget of limit bytes (at least 1) called name in messages ("bodies").
func New(name string, limit int64) *Budget {
	return &Budget{name: name, limit: max(limit, 1)}
}

// TooLarge is the error of a request larger than the whole budget.
type TooLarge struct {
	Name      string
	Need, Cap int64
}

func (e *TooLarge) Error() string {
	return fmt.Sprintf("needs %d MiB, over the %d MiB %s budget", (e.Need+1<<20-1)>>20, e.Cap>>20, e.Name)
}

// TryAcquire takes n bytes if they fit now and nobody waits before it, and reports whether it
// did.
func (b *Budget) TryAcquire(n int64) bool {
	if b == nil || n <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) > 0 || b.held+n > b.limit {
		return false
	}
	b.take(n)
	return true
}

// Acquire takes n bytes, waiting while they do not fit or earlier requests wait. It fails
// with *TooLarge when n is over the whole budget, and with ctx's error when ctx ends first;
// nothing is held then.
func (b *Budget) Acquire(ctx context.Context, n int64) error {
	if b == nil || n <= 0 {
		return nil
	}
	if n > b.limit {
		return &TooLarge{Name: b.name, Need: n, Cap: b.limit}
	}
	b.mu.Lock()
	if len(b.queue) == 0 && b.held+n <= b.limit {
		b.take(n)
		b.mu.Unlock()
		return nil
	}
	w := &waiter{n: n, ready: make(chan struct{})}
	b.queue = append(b.queue, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if w.granted { // granted while ctx ended: give it back
		b.held -= n
	} else {
		for i, q := range b.queue {
			if q == w {
				b.queue = append(b.queue[:i], b.queue[i+1:]...)
				break
			}
		}
	}
	b.grant() // the next in line may fit now
	return ctx.Err()
}

func (b *Budget) take(n int64) {
	b.held += n
	b.peak = max(b.peak, b.held)
}

// grant hands the bytes to the waiting requests that fit, in order; called with mu held.
func (b *Budget) grant() {
	for len(b.queue) > 0 && b.held+b.queue[0].n <= b.limit {
		w := b.queue[0]
		b.queue = b.queue[1:]
		b.take(w.n)
		w.granted = true
		close(w.ready)
	}
}

// Release gives n bytes back.
func (b *Budget) Release(n int64) {
	if b == nil || n <= 0 {
		return
	}
	b.mu.Lock()
	b.held = max(b.held-n, 0) // more released than acquired is a caller's bug; never below 0
	b.grant()
	b.mu.Unlock()
}

// Limit is the budget's size in bytes.
func (b *Budget) Limit() int64 {
	if b == nil {
		return 0
	}
	return b.limit
}

// Held is the number of bytes held now.
func (b *Budget) Held() int64 {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held
}

// Peak is the most bytes held at once so far.
func (b *Budget) Peak() int64 {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peak
}
