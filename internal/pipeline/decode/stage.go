// stage.go: the decode stage (see package item for the stage contract): a pool of decoding
// workers between a channel of encoded bodies and a channel of decoded images; undecodable
// bodies go to the failures channel with their reason.

package decode

import (
	"context"
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

// Budget bounds the decoded bytes in flight (see batch.Budget): Acquire waits until n bytes
// fit; the stage that frees the pixels releases them.
type Budget interface {
	Acquire(ctx context.Context, n int64) error
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

// Start decodes the bodies of in with opt.Workers goroutines. Images come out on Out (after
// opt.Budget admitted their bytes); undecodable bodies go to fails with stage "decode" and
// their reason. Every body is released once decoded. The stage drains in even after ctx ends
// (it only stops sending images then: they are released and dropped unjudged).
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
				if err == nil {
					image, err = d.Decode(enc.Body)
				}
				s.busy.Add(int64(time.Since(t)))
				s.bytes.Add(int64(len(enc.Body)))
				it := enc.Item
				enc.Release()
				if err != nil {
					s.failed.Add(1)
					fails <- item.Failure{Item: it, Stage: "decode", Reason: err.Error()}
					continue
				}
				s.ok.Add(1)
				if opt.Budget != nil {
					if err := opt.Budget.Acquire(ctx, int64(len(image.RGB))); err != nil {
						image.Release() // ctx ended while waiting: dropped unjudged
						continue
					}
				}
				it.Width, it.Height = image.OrigWidth, image.OrigHeight
				s.out <- Output{Item: it, Image: image}
			}
		})
	}
	go func() { wg.Wait(); close(s.out) }()
	return s
}

// Out is the stage's output, closed after the last image.
func (s *Stage) Out() <-chan Output { return s.out }

// Stats returns the counters so far.
func (s *Stage) Stats() StageStats {
	return StageStats{OK: s.ok.Load(), Failed: s.failed.Load(), Bytes: s.bytes.Load(), Busy: time.Duration(s.busy.Load())}
}
