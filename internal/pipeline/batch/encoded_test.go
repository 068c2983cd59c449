// encoded_test.go: the batch stage with JPEGs left for the engine to decode (a fake engine
// with an encoded call that fails chosen images) and with several engines: every row once,
// the engine's failures retried on the CPU decoder (embedded from its pixels, or failed with
// its reason), bytes released, and batches spread over the engines.
package batch

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/pipeline/decode"
	"github.com/clipd/clipd/internal/pipeline/item"
)

// fakeEncoder embeds encoded bytes as (first byte, last byte, length, -1) and fails the ones
// that start with "BAD" or end with 0xD9 0xD9 (stand-ins for what a GPU decoder refuses).
type fakeEncoder struct {
	fakeEngine
	encCalls, encImages atomic.Int64
}

func (f *fakeEncoder) EmbedEncoded(data [][]byte, out []float32, failed []error) error {
	f.encCalls.Add(1)
	f.encImages.Add(int64(len(data)))
	for i, d := range data {
		if strings.HasPrefix(string(d), "BAD") || strings.HasSuffix(string(d), "\xd9\xd9") {
			failed[i] = errors.New("cannot decode")
			out[i*dim] = 12345 // garbage the stage must not keep
			continue
		}
		out[i*dim+0], out[i*dim+1], out[i*dim+2], out[i*dim+3] = float32(d[0]), float32(d[len(d)-1]), float32(len(d)), -1
	}
	return nil
}

func encodedInput(seq int, body []byte, released *atomic.Int64) Input {
	it := item.Item{Seq: int64(seq), URL: "u"}
	return Input{Item: it, Encoded: item.NewEncoded(it, body, func() { released.Add(1) })}
}

func TestEncodedInputsAndFallback(t *testing.T) {
	ctx := bounded(t)
	jpeg, err := os.ReadFile("../decode/testdata/tiny_7x3.jpg")
	if err != nil {
		t.Fatal(err)
	}
	// A JPEG the fake engine refuses but the CPU decoder reads: it must come out embedded
	// from its pixels, as a CPU-decoded run embeds it.
	refused := append(append([]byte{}, jpeg...), 0xD9)
	im, err := decode.Decode(refused, decode.Options{})
	if err != nil {
		t.Fatalf("the CPU decoder should read the fixture with a trailing byte: %v", err)
	}
	wantRefused := []float32{float32(im.RGB[0]), float32(im.RGB[len(im.RGB)-1]), float32(im.Width), float32(im.Height)}
	im.Release()

	fe := &fakeEncoder{}
	fails := make(chan item.Failure, 100)
	var releasedBytes atomic.Int64
	in := make(chan Input, 100)
	const n = 60
	for i := range n {
		switch {
		case i%10 == 3:
			in <- encodedInput(i, []byte("BAD not an image"), &releasedBytes)
		case i%10 == 7:
			in <- encodedInput(i, refused, &releasedBytes)
		case i%2 == 0:
			in <- encodedInput(i, []byte{byte(i), 1, 2, byte(i * 3)}, &releasedBytes)
		default:
			in <- testImage(i)
		}
	}
	close(in)
	s := Start(context.Background(), fe, in, Options{BatchSize: 8, Fails: fails})
	seen := map[int64]bool{}
	for _, b := range collectAll(t, ctx, s) {
		if b.Err != nil {
			t.Fatal(b.Err)
		}
		if len(b.Embeddings) != len(b.Items)*dim {
			t.Fatalf("%d items, %d floats", len(b.Items), len(b.Embeddings))
		}
		for i := range b.Items {
			it, emb := b.Row(i)
			if seen[it.Seq] {
				t.Fatalf("seq %d twice", it.Seq)
			}
			seen[it.Seq] = true
			seq := int(it.Seq)
			var w []float32
			switch {
			case seq%10 == 3:
				t.Fatalf("seq %d (not an image) was embedded: %v", seq, emb)
			case seq%10 == 7:
				w = wantRefused
			case seq%2 == 0:
				w = []float32{float32(byte(seq)), float32(byte(seq * 3)), 4, -1}
			default:
				w = want(seq)
			}
			for k := range w {
				if emb[k] != w[k] {
					t.Fatalf("seq %d: embedding %v, want %v", seq, emb, w)
				}
			}
		}
	}
	close(fails)
	var failed []item.Failure
	for f := range fails {
		failed = append(failed, f)
	}
	if len(failed) != n/10 {
		t.Fatalf("%d failures, want %d: %+v", len(failed), n/10, failed)
	}
	for _, f := range failed {
		if f.Seq%10 != 3 || f.Stage != "decode" || !strings.HasPrefix(f.Reason, "not an image") {
			t.Fatalf("failure %+v: want the CPU decoder's reason for seq ...3", f)
		}
	}
	if len(seen) != n-n/10 {
		t.Fatalf("%d rows out, want %d", len(seen), n-n/10)
	}
	encoded := int64(n/2 + 2*n/10) // the even ones and the two kinds the engine refuses
	st := s.Stats()
	if releasedBytes.Load() != encoded || fe.encImages.Load() != encoded || st.Encoded != encoded || st.Fallbacks != 2*n/10 {
		t.Fatalf("released %d bodies, engine got %d, stats %+v; want %d, %d, fallbacks %d", releasedBytes.Load(), fe.encImages.Load(), st, encoded, encoded, 2*n/10)
	}
	if st.Images != int64(len(seen)) || st.EncodedBusy > st.Busy || st.FallbackBusy > st.Busy {
		t.Fatalf("stats %+v", st)
	}
}

// An engine without an encoded call given a JPEG is the run's error, not a silent drop.
func TestEncodedWithoutEncoder(t *testing.T) {
	ctx := bounded(t)
	var released atomic.Int64
	in := make(chan Input, 1)
	in <- encodedInput(0, []byte{1, 2, 3}, &released)
	close(in)
	b := collectAll(t, ctx, Start(context.Background(), &fakeEngine{}, in, Options{}))
	if len(b) != 1 || b[0].Err == nil || len(b[0].Items) != 1 || released.Load() != 1 {
		t.Fatalf("got %+v (released %d), want one batch with an error", b, released.Load())
	}
}

// Several engines: each batch goes to whichever is free, every row comes out once, and the
// stats say which engine ran what.
func TestSeveralEngines(t *testing.T) {
	ctx := bounded(t)
	first := &fakeEngine{gate: make(chan struct{}), entered: make(chan int)}
	second := &fakeEngine{}
	in := make(chan Input)
	s := Start(context.Background(), first, in, Options{BatchSize: 4, Others: []Embedder{second}})
	in <- testImage(0)
	recvInt(t, ctx, first.entered) // the first engine is held busy with image 0 ...
	const n = 40
	go func() {
		for i := 1; i < n; i++ {
			in <- testImage(i)
		}
		close(in)
	}()
	// ... so the second one takes the rest until the first is let go.
	got := make(chan []Batch)
	go func() { got <- collectAll(t, ctx, s) }()
	for s.Stats().PerEngine[1].Images < n/2 {
		select {
		case <-ctx.Done():
			t.Fatal("the second engine never got batches while the first was busy")
		case <-time.After(time.Millisecond):
		}
	}
	go func() {
		for range first.entered {
		}
	}()
	close(first.gate)
	seen := map[int64]int{}
	for _, b := range <-got {
		for i := range b.Items {
			it, emb := b.Row(i)
			seen[it.Seq]++
			if w := want(int(it.Seq)); emb[0] != w[0] || emb[3] != w[3] {
				t.Fatalf("seq %d: %v, want %v", it.Seq, emb, w)
			}
		}
	}
	close(first.entered)
	if len(seen) != n {
		t.Fatalf("%d rows, want %d", len(seen), n)
	}
	for seq, c := range seen {
		if c != 1 {
			t.Fatalf("seq %d %d times", seq, c)
		}
	}
	st := s.Stats()
	if len(st.PerEngine) != 2 || st.PerEngine[0].Batches < 1 || st.PerEngine[1].Batches < 1 ||
		st.PerEngine[0].Images+st.PerEngine[1].Images != n || st.Batches != st.PerEngine[0].Batches+st.PerEngine[1].Batches {
		t.Fatalf("per-engine stats %+v", st)
	}
}
