// budget.go: a byte budget for decoded pixels in flight between the decoders and the engine,
// so that a run of large images cannot queue more memory than the plan allows.

package batch

import (
	"context"
	"sync"
)

// Budget bounds the bytes held at once. Acquire waits until n bytes fit; a request larger
// than the whole budget is let through when nothing else is held, so one huge image cannot
// stall the run. Safe for concurrent use.
type Budget struct {
	mu    sync.Mutex
	limit int64
	held  int64
	peak  int64
	wake  chan struct{} // closed and replaced on every Release
}

// NewBudget returns a budget of limit bytes; limit <= 0 means no limit.
func NewBudget(limit int64) *Budget {
	return &Budget{limit: limit, wake: make(chan struct{})}
}

// Acquire takes n bytes, waiting while they do not fit. It returns ctx's error if ctx ends
// first (nothing is then held).
func (b *Budget) Acquire(ctx context.Context, n int64) error {
	for {
		b.mu.Lock()
		if b.limit <= 0 || b.held+n <= b.limit || b.held == 0 {
			b.held += n
			b.peak = max(b.peak, b.held)
			b.mu.Unlock()
			return nil
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Release gives n bytes back.
func (b *Budget) Release(n int64) {
	b.mu.Lock()
	b.held -= n
	close(b.wake)
	b.wake = make(chan struct{})
	b.mu.Unlock()
}

// Held is the number of bytes held now, Peak the most held at once so far.
func (b *Budget) Held() int64 { b.mu.Lock(); defer b.mu.Unlock(); return b.held }

// Peak is the most bytes held at once so far.
func (b *Budget) Peak() int64 { b.mu.Lock(); defer b.mu.Unlock(); return b.peak }
