// stage.go: the decode stage (see package item for the stage contract): a pool of decoding
// workers between a channel of encoded bodies and a channel of decoded images; undecodable
// bodies go to the failures channel with their reason.

package decode

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clipd/clipd/internal/pipeline/item"
)

// Output is one decoded image and the item it came from; the receiver owns Image. Split's
// JPEG output carries the undecoded bytes in Encoded instead (Image nil), for an engine that
// decodes them itself; the receiver owns Encoded then.
type Output struct {
	Item    item.Item
	Image   *Image
	Encoded *item.Encoded
}

// Budget bounds the bytes decoding holds (see package budget): Acquire waits until n bytes
// fit (and fails at once when n is over Limit). The stage takes a decode's whole Footprint
// before it starts, gives back all but the image's Held bytes when it ends, and the stage
// that frees the pixels releases those.
type Budget interface {
	Acquire(ctx context.Context, n int64) error
	Release(n int64)
	Limit() int64
}

// StageOptions tune Start.
type StageOptions struct {
	Options
	Workers int    // decoding goroutines; at least 1
	Budget  Budget // nil: no bound beyond the output channel
	Output  int    // capacity of the output channel; 0 = Workers
}

// StageStats are Start's counters.
type StageStats struct {
	OK, Failed int64
	Bytes      int64         // encoded bytes decoded
	Busy       time.Duration // summed over workers
}

// Stage is a running decode stage in the pipeline's stage contract (see package item).
type Stage struct {
	out                     chan Output
	ok, failed, bytes, busy atomic.Int64
}

// Start decodes the bodies of in with opt.Workers goroutines. With opt.Budget, each decode
// first takes its Footprint from the budget (an image whose decode needs more than the whole
// budget fails "too large for --memory" undecoded) and the image that comes out on Out holds
// its Held bytes of it. Undecodable bodies go to fails with stage "decode" and their reason.
// Every body is released once decoded. The stage drains in even after ctx ends (it only
// stops sending images then: they are released and dropped unjudged).
func Start(ctx context.Context, in <-chan *item.Encoded, fails chan<- item.Failure, opt StageOptions) *Stage {
	workers := max(opt.Workers, 1)
	if opt.Output <= 0 {
		opt.Output = workers
	}
	s := &Stage{out: make(chan Output, opt.Output)}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			d, derr := NewDecoder(opt.Options)
			if derr == nil {
				defer d.Close()
			}
			for enc := range in {
				if ctx.Err() != nil {
					enc.Release()
					continue
				}
				t := time.Now()
				image, err := (*Image)(nil), derr
				var fp Footprint
				dropped := false
				if err == nil && opt.Budget != nil {
					if fp, err = d.Footprint(enc.Body); err == nil && fp.Peak > opt.Budget.Limit() {
						err = overBudget(fp.Peak, opt.Budget.Limit())
					} else if err == nil && opt.Budget.Acquire(ctx, fp.Peak) != nil {
						enc.Release() // ctx ended while waiting: dropped unjudged
						continue
					}
					if err != nil {
						fp = Footprint{}
					}
				}
				if err == nil {
					image, err = d.Decode(enc.Body)
				}
				if opt.Budget != nil {
					// The image keeps its buffer's share; the rest goes back. (An image larger
					// than its modelled footprint, a gap in the model, takes the difference.)
					if more := image.Held() - fp.Peak; more > 0 && opt.Budget.Acquire(ctx, more) != nil {
						image.Release()
						image, dropped = nil, true
					}
					if freed := fp.Peak - image.Held(); freed > opt.Budget.Limit()/8 {
						// A large intermediate is garbage now, not yet free memory: collect it
						// before its bytes go back to the budget (a few ms, once per such image).
						runtime.GC()
					}
					opt.Budget.Release(fp.Peak - image.Held())
				}
				s.busy.Add(int64(time.Since(t)))
				s.bytes.Add(int64(len(enc.Body)))
				it := enc.Item
				enc.Release()
				if dropped {
					continue // ctx ended while waiting for the budget: unjudged
				}
				if err != nil {
					s.failed.Add(1)
					fails <- item.Failure{Item: it, Stage: "decode", Reason: err.Error()}
					continue
				}
				s.ok.Add(1)
				it.Width, it.Height = image.OrigWidth, image.OrigHeight
				s.out <- Output{Item: it, Image: image}
			}
		})
	}
	go func() { wg.Wait(); close(s.out) }()
	return s
}

// overBudget is the failure of an image whose decode would need more than the whole budget.
func overBudget(need, limit int64) error {
	return &Error{Kind: ErrOverBudget, Detail: fmt.Sprintf("decoding needs %d MiB, over the %d MiB that --memory leaves the decoders", (need+1<<20-1)>>20, limit>>20)}
}

// Out is the stage's output, closed after the last image.
func (s *Stage) Out() <-chan Output { return s.out }

// Stats returns the counters so far.
func (s *Stage) Stats() StageStats {
	return StageStats{OK: s.ok.Load(), Failed: s.failed.Load(), Bytes: s.bytes.Load(), Busy: time.Duration(s.busy.Load())}
}
