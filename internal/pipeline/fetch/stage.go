// stage.go: the fetch stage in the pipeline's stage contract (see package item): items in,
// bodies out, judged failures to the shared failures channel.

package fetch

import (
	"context"

	"github.com/clipd/clipd/internal/pipeline/item"
)

// Stage is a running fetch stage.
type Stage struct {
	*Fetcher
	out chan *item.Encoded
}

// Start fetches the items of in with a new Fetcher made from opt. Bodies come out on Out
// (the receiver releases each); failures other than "canceled" go to fails; canceled items
// (ctx ended before they were judged) are dropped: they belong to the next run.
func Start(ctx context.Context, in <-chan item.Item, fails chan<- item.Failure, opt Options) *Stage {
	f := New(opt)
	s := &Stage{Fetcher: f, out: make(chan *item.Encoded, f.opt.OutputBuffer)}
	results := f.Run(ctx, in)
	go func() {
		defer close(s.out)
		for res := range results {
			if res.Failure != nil {
				if res.Failure.Reason != ReasonCanceled {
					fails <- *res.Failure
				}
				res.Release()
				continue
			}
			s.out <- item.NewEncoded(res.Item, res.Body, res.Release)
		}
	}()
	return s
}

// Out is the stage's output, closed after the last body.
func (s *Stage) Out() <-chan *item.Encoded { return s.out }
