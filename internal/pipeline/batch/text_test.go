// text_test.go: the batch stage with Options.Texts (a fake text tower): each row's text
// embedding is its own text's, also when JPEGs the engine refused are dropped or retried
// (rows compacted), one text call per batch on the batch's own engine and never while that
// engine runs another call, normalisation, non-finite text embeddings, errors and counters.
package batch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/internal/pipeline/item"
)

// fakeTextEngine is an engine with a text tower: a text embeds as (length, first byte,
// engine id, 1), and texts over 10 bytes count as truncated. active counts the calls in
// progress on this engine, image and text alike: more than one at once is a violation.
type fakeTextEngine struct {
	fakeEncoder
	id                    float32
	active                atomic.Int32
	violations, textCalls atomic.Int64
	textErr               error
	nan                   string // a text that embeds to NaN
}

func (f *fakeTextEngine) enter() func() {
	if f.active.Add(1) > 1 {
		f.violations.Add(1)
	}
	return func() { f.active.Add(-1) }
}

func (f *fakeTextEngine) EmbedImages(images []engine.Image, out []float32) error {
	defer f.enter()()
	return f.fakeEngine.EmbedImages(images, out)
}

func (f *fakeTextEngine) EmbedEncoded(data [][]byte, out []float32, failed []error) error {
	defer f.enter()()
	return f.fakeEncoder.EmbedEncoded(data, out, failed)
}

func (f *fakeTextEngine) EmbedTexts(texts []string, out []float32) (int, error) {
	defer f.enter()()
	f.textCalls.Add(1)
	if f.textErr != nil {
		return 0, f.textErr
	}
	truncated := 0
	for i, s := range texts {
		copy(out[i*dim:], wantText(s, f.id))
		if s == f.nan && s != "" {
			out[i*dim] = float32(math.NaN())
		}
		if len(s) > 10 {
			truncated++
		}
	}
	return truncated, nil
}

func wantText(s string, id float32) []float32 {
	first := float32(0)
	if s != "" {
		first = float32(s[0])
	}
	return []float32{float32(len(s)), first, id, 1}
}

// textOf is the test text of seq: empty for every fifth, long for every third.
func textOf(seq int) string {
	switch {
	case seq%5 == 0:
		return ""
	case seq%3 == 0:
		return fmt.Sprintf("a long caption of row %d", seq)
	}
	return fmt.Sprintf("r%d", seq)
}

// textInputs are n inputs with texts: decoded images, JPEGs for the engine, JPEGs it refuses
// and the CPU decoder cannot read either (failed, so the batch's rows compact).
func textInputs(n int, released *atomic.Int64) chan Input {
	in := make(chan Input, n)
	for i := range n {
		var x Input
		switch {
		case i%7 == 3:
			x = encodedInput(i, []byte("BAD not an image"), released)
		case i%2 == 0:
			x = encodedInput(i, []byte{byte(i), 1, 2, byte(i * 3)}, released)
		default:
			x = testImage(i)
		}
		x.Item.Text = textOf(i)
		if x.Encoded != nil {
			x.Encoded.Item.Text = x.Item.Text
		}
		in <- x
	}
	close(in)
	return in
}

func TestTextsAlignedWithRows(t *testing.T) {
	ctx := bounded(t)
	const n = 90
	e0, e1 := &fakeTextEngine{id: 10}, &fakeTextEngine{id: 11}
	var released atomic.Int64
	fails := make(chan item.Failure, n)
	s := Start(context.Background(), e0, textInputs(n, &released), Options{BatchSize: 8, Fails: fails,
		Others: []Embedder{e1}, Texts: []TextEmbedder{e0, e1}})
	seen := map[int64]bool{}
	batches := 0
	wantTrunc, wantEmpty := 0, 0
	for _, b := range collectAll(t, ctx, s) {
		if b.Err != nil {
			t.Fatal(b.Err)
		}
		if len(b.Items) > 0 { // a batch of JPEGs that all failed has no text call
			batches++
		}
		if len(b.TextEmbeddings) != len(b.Items)*dim {
			t.Fatalf("%d text values for %d rows", len(b.TextEmbeddings), len(b.Items))
		}
		id := float32(10 + b.Engine)
		for i := range b.Items {
			it, _ := b.Row(i)
			seen[it.Seq] = true
			text := textOf(int(it.Seq))
			if it.Text != text {
				t.Errorf("seq %d carries text %q, want %q", it.Seq, it.Text, text)
			}
			if got, w := b.TextRow(i), wantText(text, id); fmt.Sprint(got) != fmt.Sprint(w) {
				t.Errorf("seq %d: text embedding %v, want %v (its own text's, from engine %d)", it.Seq, got, w, b.Engine)
			}
			if len(text) > 10 {
				wantTrunc++
			}
			if text == "" {
				wantEmpty++
			}
		}
	}
	close(fails)
	nf := 0
	for f := range fails {
		if int(f.Seq)%7 != 3 {
			t.Errorf("failure %+v", f)
		}
		nf++
	}
	if len(seen)+nf != n {
		t.Fatalf("%d rows + %d failures, want %d", len(seen), nf, n)
	}
	if v := e0.violations.Load() + e1.violations.Load(); v != 0 {
		t.Errorf("%d calls overlapped another call on the same engine", v)
	}
	if calls := e0.textCalls.Load() + e1.textCalls.Load(); calls != int64(batches) {
		t.Errorf("%d text calls for %d batches, want one each", calls, batches)
	}
	st := s.Stats()
	if st.Texts != int64(len(seen)) || st.TextTruncated != int64(wantTrunc) || st.TextEmpty != int64(wantEmpty) || wantTrunc == 0 || wantEmpty == 0 {
		t.Errorf("stats: %d texts, %d truncated, %d empty; want %d, %d, %d", st.Texts, st.TextTruncated, st.TextEmpty, len(seen), wantTrunc, wantEmpty)
	}
}

// Normalize scales the text embeddings as it does the image ones; a text embedding that is
// not finite marks its row NonFinite (and is left as it is).
func TestTextsNormalizedAndNonFinite(t *testing.T) {
	ctx := bounded(t)
	e := &fakeTextEngine{id: 3, nan: textOf(7)}
	in := make(chan Input, 20)
	for i := 1; i < 20; i++ {
		x := testImage(i)
		x.Item.Text = textOf(i)
		in <- x
	}
	close(in)
	s := Start(context.Background(), e, in, Options{BatchSize: 4, Normalize: true, Texts: []TextEmbedder{e}})
	for _, b := range collectAll(t, ctx, s) {
		for i := range b.Items {
			it, emb := b.Row(i)
			text := b.TextRow(i)
			if it.Seq == 7 {
				if b.Finite(i) || !math.IsNaN(float64(text[0])) {
					t.Errorf("seq 7 (NaN text embedding): finite %v, %v", b.Finite(i), text)
				}
				continue
			}
			if !b.Finite(i) {
				t.Errorf("seq %d not finite", it.Seq)
			}
			for _, v := range [][]float32{emb, text} {
				var ss float64
				for _, x := range v {
					ss += float64(x) * float64(x)
				}
				if math.Abs(ss-1) > 1e-5 {
					t.Errorf("seq %d: norm^2 %v, want 1", it.Seq, ss)
				}
			}
			w := wantText(textOf(int(it.Seq)), 3)
			Normalize(w)
			if fmt.Sprint(text) != fmt.Sprint(w) {
				t.Errorf("seq %d: %v, want %v", it.Seq, text, w)
			}
		}
	}
	if st := s.Stats(); st.NonFinite != 1 {
		t.Errorf("NonFinite %d, want 1", st.NonFinite)
	}
}

// A text tower's error is the batch's error, as an image call's is: the run stops.
func TestTextError(t *testing.T) {
	ctx := bounded(t)
	e := &fakeTextEngine{textErr: errors.New("out of memory")}
	in := make(chan Input, 3)
	for i := range 3 {
		in <- testImage(i)
	}
	close(in)
	s := Start(context.Background(), e, in, Options{BatchSize: 8, Texts: []TextEmbedder{e}})
	bs := collectAll(t, ctx, s)
	if len(bs) == 0 || bs[0].Err == nil || !strings.Contains(bs[0].Err.Error(), "text tower: out of memory") || bs[0].TextEmbeddings != nil {
		t.Fatalf("batches %+v", bs)
	}
}
