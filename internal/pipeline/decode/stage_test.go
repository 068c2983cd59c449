package decode

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/clipd/clipd/internal/pipeline/item"
)

// countingBudget admits everything and counts what is held.
type countingBudget struct{ bytes atomic.Int64 }

func (b *countingBudget) Acquire(_ context.Context, n int64) error { b.bytes.Add(n); return nil }
func (b *countingBudget) Release(n int64)                          { b.bytes.Add(-n) }
func (b *countingBudget) Limit() int64                             { return 1 << 40 }

// The stage contract: images out, undecodable bodies to fails with stage "decode", every body
// released once.
func TestStart(t *testing.T) {
	good, bad := readFixture(t, "s420.jpg"), []byte("<html>not an image</html>")
	var released atomic.Int64
	in := make(chan *item.Encoded)
	fails := make(chan item.Failure, 8)
	budget := &countingBudget{}
	s := Start(context.Background(), in, fails, StageOptions{Workers: 3, Budget: budget})
	go func() {
		defer close(in)
		for i := range 10 {
			body := good
			if i%5 == 4 {
				body = bad
			}
			in <- item.NewEncoded(item.Item{Seq: int64(i), URL: "u"}, body, func() { released.Add(1) })
		}
	}()
	var images, pixels int64
	for o := range s.Out() {
		if o.Image == nil || o.Item.Seq%5 == 4 {
			t.Errorf("item %d: image %v", o.Item.Seq, o.Image)
			continue
		}
		images++
		pixels += o.Image.Held()
		o.Image.Release()
	}
	close(fails)
	var failed int
	for f := range fails {
		if f.Stage != "decode" || f.Seq%5 != 4 || f.Reason == "" {
			t.Errorf("failure %+v", f)
		}
		failed++
	}
	if images != 8 || failed != 2 || released.Load() != 10 {
		t.Errorf("%d images, %d failures, %d bodies released; want 8, 2, 10", images, failed, released.Load())
	}
	if st := s.Stats(); st.OK != 8 || st.Failed != 2 || st.Bytes != int64(8*len(good)+2*len(bad)) || st.Busy <= 0 {
		t.Errorf("stats %+v", st)
	}
	if budget.bytes.Load() != pixels {
		t.Errorf("the budget holds %d bytes, the images %d", budget.bytes.Load(), pixels)
	}
}
