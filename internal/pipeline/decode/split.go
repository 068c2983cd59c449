// split.go: the split stage, in front of the decoders when the engine decodes JPEGs itself
// (clipd embed --decode gpu): JPEGs (by their magic bytes) pass on undecoded, with the size
// and the checks their header allows; every other body goes on to the CPU decode workers.

package decode

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/clipd/clipd/internal/cgo/turbojpeg"
	"github.com/clipd/clipd/internal/pipeline/item"
)

// SplitOptions tune StartSplit.
type SplitOptions struct {
	Options     // MaxPixels is checked from the JPEG header, as Decode checks it
	JPEGs   int // capacity of the JPEG output; 0 = 1
	Others  int // capacity of the other output; 0 = 1
}

// SplitStats are a Split's counters.
type SplitStats struct {
	JPEGs, Others, Failed int64
	Bytes                 int64         // encoded bytes of the JPEGs read (passed on or failed), as the decoders count theirs
	Busy                  time.Duration // reading JPEG headers
}

// Split is a running split stage.
type Split struct {
	jpegs  chan Output
	others chan *item.Encoded

	nJPEG, nOther, failed, bytes, busy atomic.Int64
}

// StartSplit reads in until it is closed: a JPEG whose header reads and whose size passes
// MaxPixels goes to JPEGs (Output.Encoded set, Item.Width/Height its encoded size, as the
// decoders set them); a JPEG that fails there goes to fails with the reason Decode would
// give; anything else goes to Others unread. Both outputs close after in does. After ctx
// ends, bodies are released and dropped unjudged.
func StartSplit(ctx context.Context, in <-chan *item.Encoded, fails chan<- item.Failure, opt SplitOptions) *Split {
	s := &Split{jpegs: make(chan Output, max(opt.JPEGs, 1)), others: make(chan *item.Encoded, max(opt.Others, 1))}
	go func() {
		defer close(s.jpegs)
		defer close(s.others)
		d, derr := NewDecoder(opt.Options)
		if derr == nil {
			defer d.Close()
		}
		for enc := range in {
			if ctx.Err() != nil {
				enc.Release()
				continue
			}
			if sniff(enc.Body) != "jpeg" {
				s.nOther.Add(1)
				select {
				case s.others <- enc:
				case <-ctx.Done():
					enc.Release()
				}
				continue
			}
			t := time.Now()
			err := derr
			if err == nil {
				var h turbojpeg.Header
				if h, err = d.jpegHeader(enc.Body); err == nil {
					enc.Item.Width, enc.Item.Height = h.Width, h.Height
				}
			}
			s.busy.Add(int64(time.Since(t)))
			s.bytes.Add(int64(len(enc.Body)))
			if err != nil {
				s.failed.Add(1)
				it := enc.Item
				enc.Release()
				fails <- item.Failure{Item: it, Stage: "decode", Reason: err.Error()}
				continue
			}
			s.nJPEG.Add(1)
			select {
			case s.jpegs <- Output{Item: enc.Item, Encoded: enc}:
			case <-ctx.Done():
				enc.Release()
			}
		}
	}()
	return s
}

// JPEGs is the output of JPEGs for the engine; closed after the last one.
func (s *Split) JPEGs() <-chan Output { return s.jpegs }

// Others is the output of the bodies for the CPU decoders; closed after the last one.
func (s *Split) Others() <-chan *item.Encoded { return s.others }

// Stats returns the counters so far.
func (s *Split) Stats() SplitStats {
	return SplitStats{JPEGs: s.nJPEG.Load(), Others: s.nOther.Load(), Failed: s.failed.Load(),
		Bytes: s.bytes.Load(), Busy: time.Duration(s.busy.Load())}
}
