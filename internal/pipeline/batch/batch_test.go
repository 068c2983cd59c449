// batch_test.go: the batch stage with a fake engine: every image embedded once with its own
// pixels' embedding, batches never larger than asked, the engine handed whatever is queued
// when it is free, pixels released, cancellation, engine errors, normalisation and Budget.
package batch

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/internal/pipeline/decode"
	"github.com/clipd/clipd/internal/pipeline/item"
)

const dim = 4

// fakeEngine embeds an image as (first byte, last byte, width, height); gate, when set, is
// received from before each call returns so tests can hold the engine busy.
type fakeEngine struct {
	gate    chan struct{}
	entered chan int // batch sizes, sent when a call starts (if not nil)
	err     error
	calls   atomic.Int64
	mu      sync.Mutex
	sizes   []int
}

func (f *fakeEngine) Info() engine.ModelInfo { return engine.ModelInfo{EmbedDim: dim} }

func (f *fakeEngine) EmbedImages(images []engine.Image, out []float32) error {
	f.calls.Add(1)
	f.mu.Lock()
	f.sizes = append(f.sizes, len(images))
	f.mu.Unlock()
	if f.entered != nil {
		f.entered <- len(images)
	}
	if f.gate != nil {
		<-f.gate
	}
	if f.err != nil {
		return f.err
	}
	for i, im := range images {
		out[i*dim+0] = float32(im.RGB[0])
		out[i*dim+1] = float32(im.RGB[len(im.RGB)-1])
		out[i*dim+2] = float32(im.Width)
		out[i*dim+3] = float32(im.Height)
	}
	return nil
}

func testImage(seq int) Input {
	w, h := 2+seq%5, 3+seq%7
	rgb := make([]byte, w*h*3)
	rgb[0], rgb[len(rgb)-1] = byte(seq), byte(seq*7)
	return Input{Item: item.Item{Seq: int64(seq), URL: "u"}, Image: &decode.Image{RGB: rgb, Width: w, Height: h}}
}

func want(seq int) []float32 {
	x := testImage(seq)
	return []float32{float32(byte(seq)), float32(byte(seq * 7)), float32(x.Image.Width), float32(x.Image.Height)}
}

func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// collectAll reads the stage to the end or fails when the deadline passes.
func collectAll(t *testing.T, ctx context.Context, s *Stage) []Batch {
	t.Helper()
	var out []Batch
	for {
		select {
		case b, ok := <-s.Out():
			if !ok {
				return out
			}
			out = append(out, b)
		case <-ctx.Done():
			t.Fatal("the stage did not finish in time")
		}
	}
}

func TestEveryImageOnceWithItsEmbedding(t *testing.T) {
	ctx := bounded(t)
	const n, bs = 103, 8
	var released, releasedBytes atomic.Int64
	fe := &fakeEngine{}
	in := make(chan Input, 5)
	s := Start(context.Background(), fe, in, Options{BatchSize: bs, Released: func(b int64) { released.Add(1); releasedBytes.Add(b) }})
	var totalBytes int64
	go func() {
		defer close(in)
		for i := range n {
			x := testImage(i)
			totalBytes += int64(len(x.Image.RGB))
			in <- x
		}
	}()
	seen := map[int64]bool{}
	for _, b := range collectAll(t, ctx, s) {
		if b.Err != nil {
			t.Fatal(b.Err)
		}
		if len(b.Items) == 0 || len(b.Items) > bs {
			t.Fatalf("batch of %d, want 1..%d", len(b.Items), bs)
		}
		for i := range b.Items {
			it, emb := b.Row(i)
			if seen[it.Seq] {
				t.Fatalf("seq %d twice", it.Seq)
			}
			seen[it.Seq] = true
			w := want(int(it.Seq))
			for k := range w {
				if emb[k] != w[k] {
					t.Fatalf("seq %d: embedding %v, want %v", it.Seq, emb, w)
				}
			}
		}
	}
	if len(seen) != n {
		t.Fatalf("%d items out, want %d", len(seen), n)
	}
	if released.Load() != n || releasedBytes.Load() != totalBytes {
		t.Fatalf("released %d images / %d bytes, want %d / %d", released.Load(), releasedBytes.Load(), n, totalBytes)
	}
	st := s.Stats()
	if st.Images != n || st.Dropped != 0 || st.Waiting != 0 || st.MaxBatch > bs {
		t.Fatalf("stats %+v", st)
	}
}

// The engine gets what is queued as soon as it is free (no waiting for a full batch), and
// while it is busy the collector fills the next batch up to BatchSize and no further.
func TestEngineTakesWhatIsQueued(t *testing.T) {
	ctx := bounded(t)
	const bs = 4
	fe := &fakeEngine{gate: make(chan struct{}), entered: make(chan int)}
	in := make(chan Input)
	s := Start(context.Background(), fe, in, Options{BatchSize: bs})
	in <- testImage(0)
	if got := recvInt(t, ctx, fe.entered); got != 1 {
		t.Fatalf("first call had %d images, want 1 (the only one queued)", got)
	}
	// The engine is held busy; queue more than a batch from another goroutine.
	sent := make(chan struct{})
	go func() {
		for i := 1; i <= bs+3; i++ {
			in <- testImage(i)
		}
		close(in)
		close(sent)
	}()
	for s.Stats().Waiting < bs {
		select {
		case <-ctx.Done():
			t.Fatal("collector never held a full batch")
		case <-time.After(time.Millisecond):
		}
	}
	select {
	case <-sent:
		t.Fatal("all images were taken while the engine was busy: the queue is not bounded")
	default:
	}
	fe.gate <- struct{}{}
	if got := recvInt(t, ctx, fe.entered); got != bs {
		t.Fatalf("second call had %d images, want a full batch of %d", got, bs)
	}
	select { // while the second call runs, the last 3 images reach the collector
	case <-sent:
	case <-ctx.Done():
		t.Fatal("the last images were never taken")
	}
	for s.Stats().Waiting < 3 {
		select {
		case <-ctx.Done():
			t.Fatal("collector never held the last 3 images")
		case <-time.After(time.Millisecond):
		}
	}
	fe.gate <- struct{}{}
	if got := recvInt(t, ctx, fe.entered); got != 3 {
		t.Fatalf("third call had %d images, want the 3 left", got)
	}
	fe.gate <- struct{}{}
	total := 0
	for _, b := range collectAll(t, ctx, s) {
		total += len(b.Items)
	}
	if total != bs+4 {
		t.Fatalf("%d items out, want %d", total, bs+4)
	}
}

func recvInt(t *testing.T, ctx context.Context, c <-chan int) int {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-ctx.Done():
		t.Fatal("timed out waiting for an engine call")
	}
	return 0
}

// After ctx ends the call in progress is delivered and everything else is released unused.
func TestCancelFinishesCallDropsRest(t *testing.T) {
	ctx := bounded(t)
	runCtx, cancel := context.WithCancel(context.Background())
	fe := &fakeEngine{gate: make(chan struct{}), entered: make(chan int)}
	in := make(chan Input, 20)
	var released atomic.Int64
	s := Start(runCtx, fe, in, Options{BatchSize: 4, Released: func(int64) { released.Add(1) }})
	in <- testImage(0)
	recvInt(t, ctx, fe.entered)
	for i := 1; i < 10; i++ {
		in <- testImage(i)
	}
	cancel()
	fe.gate <- struct{}{}
	for i := 10; i < 15; i++ {
		in <- testImage(i)
	}
	close(in)
	batches := collectAll(t, ctx, s)
	if len(batches) != 1 || len(batches[0].Items) != 1 || batches[0].Items[0].Seq != 0 || batches[0].Err != nil {
		t.Fatalf("got %d batches (%+v), want only the call in progress", len(batches), batches)
	}
	if fe.calls.Load() != 1 {
		t.Fatalf("%d engine calls after cancel, want 1", fe.calls.Load())
	}
	if st := s.Stats(); st.Dropped != 14 || released.Load() != 15 || st.Waiting != 0 {
		t.Fatalf("dropped %d released %d waiting %d, want 14, 15, 0", st.Dropped, released.Load(), st.Waiting)
	}
}

func TestEngineErrorIsReported(t *testing.T) {
	ctx := bounded(t)
	boom := errors.New("device lost")
	fe := &fakeEngine{err: boom}
	in := make(chan Input, 3)
	s := Start(context.Background(), fe, in, Options{BatchSize: 8})
	in <- testImage(1)
	close(in)
	b := collectAll(t, ctx, s)
	if len(b) != 1 || !errors.Is(b[0].Err, boom) || b[0].Embeddings != nil || len(b[0].Items) != 1 {
		t.Fatalf("got %+v, want one batch failing with %v", b, boom)
	}
}

func TestNormalize(t *testing.T) {
	ctx := bounded(t)
	in := make(chan Input, 10)
	s := Start(context.Background(), &fakeEngine{}, in, Options{BatchSize: 3, Normalize: true})
	for i := 1; i <= 7; i++ {
		in <- testImage(i)
	}
	close(in)
	for _, b := range collectAll(t, ctx, s) {
		for i := range b.Items {
			it, emb := b.Row(i)
			var ss float64
			for _, x := range emb {
				ss += float64(x) * float64(x)
			}
			if math.Abs(ss-1) > 1e-6 {
				t.Fatalf("seq %d: |v|^2 = %v", it.Seq, ss)
			}
			w := want(int(it.Seq))
			if r := float64(emb[2]) / float64(emb[3]); math.Abs(r-float64(w[2])/float64(w[3])) > 1e-6 {
				t.Fatalf("seq %d: direction changed: %v vs %v", it.Seq, emb, w)
			}
		}
	}
	z := []float32{0, 0}
	Normalize(z)
	if z[0] != 0 || z[1] != 0 {
		t.Fatal("zero vector changed")
	}
}

func TestBudget(t *testing.T) {
	ctx := bounded(t)
	b := NewBudget(100)
	if err := b.Acquire(ctx, 60); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := b.Acquire(short, 50); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("over-budget acquire returned %v, want it to wait until its context ended", err)
	}
	got := make(chan error)
	go func() { got <- b.Acquire(ctx, 50) }()
	b.Release(60)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	b.Release(50)
	if err := b.Acquire(ctx, 500); err != nil { // larger than the budget, nothing held: allowed
		t.Fatal(err)
	}
	if b.Held() != 500 || b.Peak() != 500 {
		t.Fatalf("held %d peak %d", b.Held(), b.Peak())
	}
}

// nanEngine is the fake engine, except that images whose first byte is odd come out NaN
// (or +Inf for the ones divisible by 3 too), as when the weights overflow for some images.
type nanEngine struct{ fakeEngine }

func (f *nanEngine) EmbedImages(images []engine.Image, out []float32) error {
	if err := f.fakeEngine.EmbedImages(images, out); err != nil {
		return err
	}
	for i, im := range images {
		if v := im.RGB[0]; v%2 == 1 {
			out[i*dim+1] = float32(math.NaN())
			if v%3 == 0 {
				out[i*dim+1] = float32(math.Inf(1))
			}
		}
	}
	return nil
}

// A non-finite embedding marks its image alone (NonFinite), never the batch's Err, and is
// left as the engine gave it (normalisation skips it); the others are embedded as usual.
func TestNonFiniteEmbeddingMarksItsImageOnly(t *testing.T) {
	ctx := bounded(t)
	const n = 40
	in := make(chan Input, n)
	for i := range n {
		in <- testImage(i)
	}
	close(in)
	s := Start(context.Background(), &nanEngine{}, in, Options{BatchSize: 8, Normalize: true})
	var good, bad int
	for _, b := range collectAll(t, ctx, s) {
		if b.Err != nil {
			t.Fatalf("batch error %v: a non-finite embedding must not fail the batch", b.Err)
		}
		for i := range b.Items {
			seq := b.Items[i].Seq
			_, emb := b.Row(i)
			if odd := seq%2 == 1; odd == b.Finite(i) {
				t.Fatalf("seq %d: Finite = %v", seq, b.Finite(i))
			}
			if !b.Finite(i) {
				bad++
				continue
			}
			good++
			w := want(int(seq))
			Normalize(w)
			for j := range w {
				if math.Abs(float64(emb[j]-w[j])) > 1e-6 {
					t.Fatalf("seq %d: embedding %v, want %v", seq, emb, w)
				}
			}
		}
	}
	if good != n/2 || bad != n/2 || s.Stats().NonFinite != n/2 {
		t.Errorf("good %d bad %d NonFinite %d, want %d each", good, bad, s.Stats().NonFinite, n/2)
	}
}
