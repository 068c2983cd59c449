// batch.go: the engine stage: a collector goroutine gathers decoded images (and JPEGs left
// for the engine to decode) into the next batch while the engine goroutines run the current
// ones, hands over whatever it holds the moment an engine is free (full batches when the
// engines are the bottleneck, smaller ones when decoding is), releases the pixels and bytes
// after each call and emits one Batch per call.

package batch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
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

// EncodedEmbedder is an engine that also decodes: EmbedEncoded embeds len(data) encoded
// images (JPEG) into out (len(data)*EmbedDim floats). An image the engine cannot decode fails
// alone: failed[i] (len(data)) is set and row i of out is not valid. The error is the call's,
// as EmbedImages' is (the engine broke; the run stops).
type EncodedEmbedder interface {
	Embedder
	EmbedEncoded(data [][]byte, out []float32, failed []error) error
}

// TextEmbedder embeds texts on an engine (CLIP's text tower): EmbedTexts writes
// len(texts)*EmbedDim floats into out, row i the embedding of texts[i], not normalized (as
// model.encode_text), in one engine call, and says how many texts were longer than the
// model's context and cut to it (CLIP keeps the end token). The embed package's
// implementation tokenizes and calls the engine; tests use fakes.
type TextEmbedder interface {
	EmbedTexts(texts []string, out []float32) (truncated int, err error)
}

// Input is one decoded image, or one JPEG left for the engine to decode (Encoded set, Image
// nil), and the item it came from (the decode stage's output). The stage owns Image and
// Encoded from the moment they are sent and releases them after the engine call (or when
// they are dropped).
type Input = decode.Output

// Batch is the outcome of one engine call: Items[i]'s embedding is
// Embeddings[i*Dim:(i+1)*Dim], and with Options.Texts the embedding of Items[i].Text is
// TextEmbeddings[i*Dim:(i+1)*Dim] (nil without). Err is the engine's error; the items then have no embedding.
// Images the engine could not decode are not in Items: they went to Options.Fails.
// NonFinite[i] is set when item i's embedding holds a NaN or an Inf (the weights overflowed
// for that image): it has no usable embedding and fails alone, with ReasonNonFinite; nil
// when every embedding is finite.
type Batch struct {
	Items          []item.Item
	Embeddings     []float32
	TextEmbeddings []float32
	Dim            int
	Err            error
	// NonFinite[i]: item i's embedding, or its text's, holds a NaN or an Inf.
	NonFinite []bool
	Engine    int // which engine ran it: 0 the first, i Options.Others[i-1]
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

// TextRow is the embedding of item i's text (a sub-slice of TextEmbeddings); nil in a batch
// without texts.
func (b *Batch) TextRow(i int) []float32 {
	if b.TextEmbeddings == nil {
		return nil
	}
	return b.TextEmbeddings[i*b.Dim : (i+1)*b.Dim]
}

// Options tune the stage.
type Options struct {
	BatchSize int  // most images per engine call; default 32
	Normalize bool // L2-normalise each embedding (off: rows equal model.encode_image)
	// Released, when set, is called with an image's pixel bytes after the stage released it,
	// so a caller can bound the decoded bytes in flight (see Budget).
	Released func(bytes int64)
	Output   int // capacity of the output channel; default 2

	// Others are more engines beside the first (one per device): each batch goes to
	// whichever engine is free. All must have the first one's EmbedDim.
	Others []Embedder
	// Fails receives the JPEGs the engine could not decode and the CPU decoder could not
	// either (stage "decode", the CPU decoder's reason); needed when inputs carry Encoded.
	Fails chan<- item.Failure
	// Texts, when set, embeds each batch's texts (Item.Text) too: Texts[0] on the first
	// engine, Texts[i] on Others[i-1] (one per engine, run by that engine's goroutine right
	// after its images, so an engine serves one call at a time), normalized with Normalize.
	Texts []TextEmbedder
	// Fallback are the options of the CPU decoder that retries a JPEG the engine failed: it
	// either decodes it (the image is then embedded from its pixels, as a CPU-decoded run
	// would) or gives the reason a CPU-decoded run records.
	Fallback decode.Options
}

// DefaultBatchSize is the batch size when Options.BatchSize is 0.
const DefaultBatchSize = 32

// Stats are the stage's counters; safe to read at any time through Stage.Stats.
type Stats struct {
	Batches  int64         // engine calls made (a batch holding both pixels and JPEGs counts once)
	Images   int64         // images embedded
	Dropped  int64         // images released without an engine call because ctx ended
	Busy     time.Duration // total time inside engine calls (summed over engines), fallback decodes included
	Waiting  int64         // images queued in the collector now (not yet in a call)
	MaxBatch int64         // largest batch passed so far
	// NonFinite counts the images (among Images) whose embedding was not finite.
	NonFinite int64

	// The engine's own decoding (inputs with Encoded): its time is inside Busy.
	Encoded      int64         // JPEGs handed to the engine's encoded call
	EncodedBusy  time.Duration // time inside the encoded calls (decode + forward), part of Busy
	Fallbacks    int64         // JPEGs the engine failed, retried on the CPU decoder
	FallbackBusy time.Duration // time of those CPU decodes, part of Busy
	Bytes        int64         // encoded bytes handed to the engine

	PerEngine []EngineStats // one per engine, the first one first

	// The texts embedded (Options.Texts): their time is inside Busy.
	Texts         int64         // texts embedded
	TextTruncated int64         // of them, longer than the context and cut to it
	TextEmpty     int64         // of them, empty (the row had no text: the embedding of "")
	TextBusy      time.Duration // time inside the text calls (tokenizing included), part of Busy
}

// EngineStats are one engine's share of the work.
type EngineStats struct {
	Batches, Images int64
	Busy            time.Duration
}

// Stage is a running batch stage.
type Stage struct {
	engines []Embedder
	opt     Options
	out     chan Batch

	batches, images, dropped, busyNS, waiting, maxBatch, nonFinite atomic.Int64
	encoded, encodedNS, fallbacks, fallbackNS, bytes               atomic.Int64
	texts, textTruncated, textEmpty, textNS                        atomic.Int64
	per                                                            []engineCounters
}

type engineCounters struct{ batches, images, busyNS atomic.Int64 }

// Start starts the stage (see package item for the stage contract; an engine error is not
// an item's failure but the run's, so it travels in Batch.Err): it reads in until in is
// closed and sends one Batch per engine call on the returned channel, which it closes at the
// end. One goroutine owns each engine (e, then Options.Others). Once ctx is done, no new
// engine call starts: the calls in progress finish and are sent, and every image read
// afterwards is released and dropped (its item is not failed: it belongs to a later run).
// The caller must still close in and read the output to the end.
func Start(ctx context.Context, e Embedder, in <-chan Input, opt Options) *Stage {
	if opt.BatchSize <= 0 {
		opt.BatchSize = DefaultBatchSize
	}
	if opt.Output <= 0 {
		opt.Output = 2
	}
	engines := append([]Embedder{e}, opt.Others...)
	if opt.Texts != nil && len(opt.Texts) != len(engines) {
		panic(fmt.Sprintf("batch: %d text embedders for %d engines", len(opt.Texts), len(engines)))
	}
	s := &Stage{engines: engines, opt: opt, out: make(chan Batch, opt.Output), per: make([]engineCounters, len(engines))}
	ready := make(chan []Input) // collector -> engine goroutines: the next batch
	go s.collect(ctx, in, ready)
	var wg sync.WaitGroup
	for i := range engines {
		wg.Go(func() { s.embedLoop(ctx, i, ready) })
	}
	go func() { wg.Wait(); close(s.out) }()
	return s
}

// Out is the stage's output; it is closed after the last batch.
func (s *Stage) Out() <-chan Batch { return s.out }

// Stats returns the counters so far.
func (s *Stage) Stats() Stats {
	st := Stats{
		Batches: s.batches.Load(), Images: s.images.Load(), Dropped: s.dropped.Load(),
		Busy: time.Duration(s.busyNS.Load()), Waiting: s.waiting.Load(), MaxBatch: s.maxBatch.Load(),
		Encoded: s.encoded.Load(), EncodedBusy: time.Duration(s.encodedNS.Load()),
		Fallbacks: s.fallbacks.Load(), FallbackBusy: time.Duration(s.fallbackNS.Load()), Bytes: s.bytes.Load(),
		NonFinite: s.nonFinite.Load(),
		Texts:     s.texts.Load(), TextTruncated: s.textTruncated.Load(), TextEmpty: s.textEmpty.Load(),
		TextBusy: time.Duration(s.textNS.Load()),
	}
	for i := range s.per {
		c := &s.per[i]
		st.PerEngine = append(st.PerEngine, EngineStats{Batches: c.batches.Load(), Images: c.images.Load(), Busy: time.Duration(c.busyNS.Load())})
	}
	return st
}

// collect gathers inputs into the pending batch and hands it over whenever an engine
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
			recv = nil // full: wait for an engine
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
		s.release(x)
		s.dropped.Add(1)
	}
}

// release frees what an input holds: its pixels (counted back through Released) or its bytes.
func (s *Stage) release(x Input) {
	if x.Encoded != nil {
		x.Encoded.Release()
	}
	im := x.Image
	if im == nil {
		return
	}
	n := im.Held()
	im.Release()
	if s.opt.Released != nil {
		s.opt.Released(n)
	}
}

// embedLoop owns engine k: one call per batch the collector hands over.
func (s *Stage) embedLoop(ctx context.Context, k int, ready <-chan []Input) {
	eng := s.engines[k]
	dim := s.engines[0].Info().EmbedDim
	var fallback *decode.Decoder // made on the first JPEG the engine fails
	defer func() {
		if fallback != nil {
			fallback.Close()
		}
	}()
	for xs := range ready {
		if ctx.Err() != nil {
			s.drop(xs)
			continue
		}
		start := time.Now()
		b := s.embed(eng, dim, xs, &fallback)
		if b.Err == nil && s.opt.Texts != nil {
			s.embedTexts(s.opt.Texts[k], &b)
		}
		busy := time.Since(start)
		b.Engine = k
		for _, x := range xs {
			s.release(x)
		}
		s.busyNS.Add(int64(busy))
		s.batches.Add(1)
		c := &s.per[k]
		c.batches.Add(1)
		c.busyNS.Add(int64(busy))
		if n := int64(len(xs)); n > s.maxBatch.Load() {
			s.maxBatch.Store(n)
		}
		if b.Err != nil {
			b.Err = fmt.Errorf("engine: %w", b.Err)
			b.Embeddings = nil
		} else {
			s.images.Add(int64(len(b.Items)))
			c.images.Add(int64(len(b.Items)))
			for i := range b.Items {
				row, text := b.Embeddings[i*dim:(i+1)*dim], b.TextRow(i)
				if !AllFinite(row) || !AllFinite(text) {
					if b.NonFinite == nil {
						b.NonFinite = make([]bool, len(b.Items))
					}
					b.NonFinite[i] = true
					s.nonFinite.Add(1)
				} else if s.opt.Normalize {
					Normalize(row)
					Normalize(text)
				}
			}
		}
		s.out <- b
	}
}

// embed runs one batch on eng: the decoded images in one EmbedImages call, the JPEGs in one
// EmbedEncoded call. The rows come out images first, then JPEGs (the sink orders rows by
// Seq); a JPEG the engine fails is retried on the CPU decoder and, if that decodes it,
// embedded from its pixels, else failed with the decoder's reason.
func (s *Stage) embed(eng Embedder, dim int, xs []Input, fallback **decode.Decoder) Batch {
	b := Batch{Items: make([]item.Item, 0, len(xs)), Dim: dim, Embeddings: make([]float32, len(xs)*dim)}
	var images []engine.Image
	var jpegs []Input
	for _, x := range xs {
		if x.Encoded != nil {
			jpegs = append(jpegs, x)
			continue
		}
		b.Items = append(b.Items, x.Item)
		images = append(images, engine.Image{RGB: x.Image.RGB, Width: x.Image.Width, Height: x.Image.Height})
	}
	if len(images) > 0 {
		if b.Err = eng.EmbedImages(images, b.Embeddings[:len(images)*dim]); b.Err != nil {
			b.Items = items(xs)
			return b
		}
	}
	if len(jpegs) == 0 {
		return b
	}
	enc, ok := eng.(EncodedEmbedder)
	if !ok {
		b.Items, b.Err = items(xs), errors.New("this engine cannot decode JPEGs (the batch stage was given encoded images)")
		return b
	}
	data := make([][]byte, len(jpegs))
	for i, x := range jpegs {
		data[i] = x.Encoded.Body
		s.bytes.Add(int64(len(data[i])))
	}
	failed := make([]error, len(jpegs))
	base := len(b.Items)
	t := time.Now()
	b.Err = enc.EmbedEncoded(data, b.Embeddings[base*dim:(base+len(jpegs))*dim], failed)
	s.encodedNS.Add(int64(time.Since(t)))
	s.encoded.Add(int64(len(jpegs)))
	if b.Err != nil {
		b.Items = items(xs)
		return b
	}
	// Keep the rows the engine embedded (compacting over the failed ones), retry the others.
	var retry []Input
	for i, x := range jpegs {
		if failed[i] != nil {
			retry = append(retry, x)
			continue
		}
		n := len(b.Items)
		if n != base+i {
			copy(b.Embeddings[n*dim:(n+1)*dim], b.Embeddings[(base+i)*dim:(base+i+1)*dim])
		}
		b.Items = append(b.Items, x.Item)
	}
	for _, x := range retry {
		if b.Err = s.retry(eng, dim, x, fallback, &b); b.Err != nil {
			b.Items = items(xs)
			return b
		}
	}
	b.Embeddings = b.Embeddings[:len(b.Items)*dim]
	return b
}

// embedTexts embeds the texts of b's items (those with an image embedding) in one call of
// the engine's text embedder; its error is the batch's, as an image call's is.
func (s *Stage) embedTexts(te TextEmbedder, b *Batch) {
	b.TextEmbeddings = make([]float32, len(b.Items)*b.Dim)
	if len(b.Items) == 0 {
		return
	}
	texts := make([]string, len(b.Items))
	empty := 0
	for i, it := range b.Items {
		texts[i] = it.Text
		if it.Text == "" {
			empty++
		}
	}
	t := time.Now()
	truncated, err := te.EmbedTexts(texts, b.TextEmbeddings)
	s.textNS.Add(int64(time.Since(t)))
	if err != nil {
		b.Err, b.TextEmbeddings = fmt.Errorf("text tower: %w", err), nil
		return
	}
	s.texts.Add(int64(len(texts)))
	s.textTruncated.Add(int64(truncated))
	s.textEmpty.Add(int64(empty))
}

// retry decodes a JPEG the engine failed with the CPU decoder: decoded, it is embedded from
// its pixels into the next row of b; undecodable, it fails with the decoder's reason. Only
// the engine's error is returned.
func (s *Stage) retry(eng Embedder, dim int, x Input, fallback **decode.Decoder, b *Batch) error {
	s.fallbacks.Add(1)
	t := time.Now()
	var im *decode.Image
	var err error
	if *fallback == nil {
		*fallback, err = decode.NewDecoder(s.opt.Fallback)
	}
	if err == nil {
		im, err = (*fallback).Decode(x.Encoded.Body)
	}
	s.fallbackNS.Add(int64(time.Since(t)))
	if err != nil {
		if s.opt.Fails == nil {
			return fmt.Errorf("%s: %v (and the batch stage has no Fails channel to report it)", x.Item.URL, err)
		}
		s.opt.Fails <- item.Failure{Item: x.Item, Stage: "decode", Reason: err.Error()}
		return nil
	}
	defer im.Release()
	n := len(b.Items)
	row := b.Embeddings[n*dim : (n+1)*dim]
	if err := eng.EmbedImages([]engine.Image{{RGB: im.RGB, Width: im.Width, Height: im.Height}}, row); err != nil {
		return err
	}
	b.Items = append(b.Items, x.Item)
	return nil
}

func items(xs []Input) []item.Item {
	out := make([]item.Item, len(xs))
	for i, x := range xs {
		out[i] = x.Item
	}
	return out
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
