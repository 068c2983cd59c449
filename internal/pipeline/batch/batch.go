// batch.go: the engine stage: a collector goroutine gathers decoded images into the next
// batch while the engine goroutine runs the current one, hands over whatever it holds the
// moment the engine is free (full batches when the engine is the bottleneck, smaller ones
// when decoding is), releases the pixels after each call and emits one Batch per call.

package batch

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/internal/pipeline/decode"
	"github.com/clipd/clipd/internal/pipeline/item"
)

// Embedder is what the stage needs from an engine; *engine.Engine implements it and tests
// use fakes. EmbedImages writes len(images)*Info().EmbedDim floats into out.
type Embedder interface {
	EmbedImages(images []engine.Image, out []float32) error
	Info() engine.ModelInfo
}

// Input is one decoded image and the item it came from (the decode stage's output). The
// stage owns Image from the moment it is sent and releases it after the engine call (or when
// it is dropped).
type Input = decode.Output

// Batch is the outcome of one engine call: Items[i]'s embedding is
// Embeddings[i*Dim:(i+1)*Dim]. Err is the engine's error; the items then have no embedding.
// NonFinite[i] is set when item i's embedding holds a NaN or an Inf (the weights overflowed
// for that image): it has no usable embedding and fails alone, with ReasonNonFinite; nil
// when every embedding is finite.
type Batch struct {
	Items      []item.Item
	Embeddings []float32
	Dim        int
	Err        error
	NonFinite  []bool
}

// ReasonNonFinite is the failure reason of an image whose embedding is not finite.
const ReasonNonFinite = "non-finite embedding"

// Finite reports whether item i has a finite embedding.
func (b *Batch) Finite(i int) bool { return b.NonFinite == nil || !b.NonFinite[i] }

// CountNonFinite is how many items have no finite embedding.
func (b *Batch) CountNonFinite() int {
	n := 0
	for _, bad := range b.NonFinite {
		if bad {
			n++
		}
	}
	return n
}

// Row returns item i and its embedding (a sub-slice of Embeddings).
func (b *Batch) Row(i int) (item.Item, []float32) {
	return b.Items[i], b.Embeddings[i*b.Dim : (i+1)*b.Dim]
}

// Options tune the stage.
type Options struct {
	BatchSize int  // most images per engine call; default 32
	Normalize bool // L2-normalise each embedding (off: rows equal model.encode_image)
	// Released, when set, is called with an image's pixel bytes after the stage released it,
	// so a caller can bound the decoded bytes in flight (see Budget).
	Released func(bytes int64)
	Output   int // capacity of the output channel; default 2
}

// DefaultBatchSize is the batch size when Options.BatchSize is 0.
const DefaultBatchSize = 32

// Stats are the stage's counters; safe to read at any time through Stage.Stats.
type Stats struct {
	Batches  int64         // engine calls made
	Images   int64         // images embedded
	Dropped  int64         // images released without an engine call because ctx ended
	Busy     time.Duration // total time inside EmbedImages
	Waiting  int64         // images queued in the collector now (not yet in a call)
	MaxBatch int64         // largest batch passed so far
	// NonFinite counts the images (among Images) whose embedding was not finite.
	NonFinite int64
}

// Stage is a running batch stage.
type Stage struct {
	e   Embedder
	opt Options
	out chan Batch

	batches, images, dropped, busyNS, waiting, maxBatch, nonFinite atomic.Int64
}

// Start starts the stage (see package item for the stage contract; an engine error is not
// an item's failure but the run's, so it travels in Batch.Err): it reads in until in is closed and sends one Batch per engine call
// on the returned channel, which it closes at the end. One goroutine owns the engine. Once
// ctx is done, no new engine call starts: the call in progress finishes and is sent, and
// every image read afterwards is released and dropped (its item is not failed: it belongs to
// a later run). The caller must still close in and read the output to the end.
func Start(ctx context.Context, e Embedder, in <-chan Input, opt Options) *Stage {
	if opt.BatchSize <= 0 {
		opt.BatchSize = DefaultBatchSize
	}
	if opt.Output <= 0 {
		opt.Output = 2
	}
	s := &Stage{e: e, opt: opt, out: make(chan Batch, opt.Output)}
	ready := make(chan []Input) // collector -> engine goroutine: the next batch
	go s.collect(ctx, in, ready)
	go s.embedLoop(ctx, ready)
	return s
}

// Out is the stage's output; it is closed after the last batch.
func (s *Stage) Out() <-chan Batch { return s.out }

// Stats returns the counters so far.
func (s *Stage) Stats() Stats {
	return Stats{
		Batches: s.batches.Load(), Images: s.images.Load(), Dropped: s.dropped.Load(),
		Busy: time.Duration(s.busyNS.Load()), Waiting: s.waiting.Load(), MaxBatch: s.maxBatch.Load(),
		NonFinite: s.nonFinite.Load(),
	}
}

// collect gathers inputs into the pending batch and hands it over whenever the engine
// goroutine asks (it receives on ready). It stops reading in while the pending batch is full,
// which is what bounds the queue. After ctx ends it drops what it holds and what arrives.
func (s *Stage) collect(ctx context.Context, in <-chan Input, ready chan<- []Input) {
	defer close(ready)
	var pending []Input
	for in != nil || len(pending) > 0 {
		if ctx.Err() != nil {
			s.drop(pending)
			s.waiting.Add(-int64(len(pending)))
			pending = nil
			for x := range in {
				s.drop([]Input{x})
			}
			return
		}
		recv, send := in, ready
		if len(pending) >= s.opt.BatchSize {
			recv = nil // full: wait for the engine
		}
		if len(pending) == 0 {
			send = nil // nothing to hand over yet
		}
		select {
		case x, ok := <-recv:
			if !ok {
				in = nil
				continue
			}
			pending = append(pending, x)
			s.waiting.Add(1)
		case send <- pending:
			s.waiting.Add(-int64(len(pending)))
			pending = make([]Input, 0, s.opt.BatchSize)
		case <-ctx.Done():
		}
	}
}

func (s *Stage) drop(xs []Input) {
	for _, x := range xs {
		s.release(x.Image)
		s.dropped.Add(1)
	}
}

func (s *Stage) release(im *decode.Image) {
	if im == nil {
		return
	}
	n := im.Held()
	im.Release()
	if s.opt.Released != nil {
		s.opt.Released(n)
	}
}

// embedLoop owns the engine: one call per batch the collector hands over.
func (s *Stage) embedLoop(ctx context.Context, ready <-chan []Input) {
	defer close(s.out)
	dim := s.e.Info().EmbedDim
	images := make([]engine.Image, 0, s.opt.BatchSize)
	for xs := range ready {
		if ctx.Err() != nil {
			s.drop(xs)
			continue
		}
		images = images[:0]
		b := Batch{Items: make([]item.Item, len(xs)), Dim: dim}
		for i, x := range xs {
			b.Items[i] = x.Item
			images = append(images, engine.Image{RGB: x.Image.RGB, Width: x.Image.Width, Height: x.Image.Height})
		}
		b.Embeddings = make([]float32, len(xs)*dim)
		start := time.Now()
		b.Err = s.e.EmbedImages(images, b.Embeddings)
		s.busyNS.Add(int64(time.Since(start)))
		for i, x := range xs {
			images[i] = engine.Image{}
			s.release(x.Image)
		}
		s.batches.Add(1)
		if n := int64(len(xs)); n > s.maxBatch.Load() {
			s.maxBatch.Store(n)
		}
		if b.Err != nil {
			b.Err = fmt.Errorf("engine: %w", b.Err)
			b.Embeddings = nil
		} else {
			s.images.Add(int64(len(xs)))
			for i := range b.Items {
				row := b.Embeddings[i*dim : (i+1)*dim]
				if !AllFinite(row) {
					if b.NonFinite == nil {
						b.NonFinite = make([]bool, len(xs))
					}
					b.NonFinite[i] = true
					s.nonFinite.Add(1)
				} else if s.opt.Normalize {
					Normalize(row)
				}
			}
		}
		s.out <- b
	}
}

// AllFinite reports whether v holds neither NaN nor ±Inf.
func AllFinite(v []float32) bool {
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return false
		}
	}
	return true
}

// Normalize scales v to unit L2 norm in place (a zero vector stays zero). The sum runs in
// float64 so the result does not depend on the order of a float32 accumulation.
func Normalize(v []float32) {
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	if ss == 0 {
		return
	}
	inv := 1 / math.Sqrt(ss)
	for i, x := range v {
		v[i] = float32(float64(x) * inv)
	}
}
