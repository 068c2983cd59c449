package decode

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/clipd/clipd/internal/pipeline/item"
)

// The split stage: JPEGs pass undecoded with the size the decoders would record; JPEGs whose
// header Decode refuses fail with Decode's own reason; everything else goes to Others unread;
// every body is released exactly once by whoever ends up owning it.
func TestSplit(t *testing.T) {
	jpeg, png := readFixture(t, "s420.jpg"), readFixture(t, "rgb.png")
	bigJPEG := readFixture(t, "photo_1024x768_q90.jpg")
	corrupt := append([]byte{0xFF, 0xD8, 0xFF}, []byte("garbage that is no JPEG header at all")...)
	html := []byte("<html>not an image</html>")
	opt := Options{MaxPixels: 1000 * 700} // the 1024x768 photo is over it
	bodies := map[string][]byte{"jpeg": jpeg, "png": png, "big": bigJPEG, "corrupt": corrupt, "html": html}
	order := []string{"jpeg", "png", "big", "corrupt", "html", "jpeg"}

	var released atomic.Int64
	in := make(chan *item.Encoded)
	fails := make(chan item.Failure, 8)
	s := StartSplit(context.Background(), in, fails, SplitOptions{Options: opt})
	go func() {
		defer close(in)
		for i, name := range order {
			in <- item.NewEncoded(item.Item{Seq: int64(i), URL: name}, bodies[name], func() { released.Add(1) })
		}
	}()
	var jpegs []Output
	var others []*item.Encoded
	var wg sync.WaitGroup
	wg.Go(func() {
		for o := range s.JPEGs() {
			jpegs = append(jpegs, o)
		}
	})
	wg.Go(func() {
		for e := range s.Others() {
			others = append(others, e)
		}
	})
	wg.Wait()
	close(fails)

	im, err := Decode(jpeg, opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(jpegs) != 2 {
		t.Fatalf("%d JPEGs passed, want 2", len(jpegs))
	}
	for _, o := range jpegs {
		if o.Image != nil || o.Encoded == nil || string(o.Encoded.Body) != string(jpeg) {
			t.Fatalf("seq %d: want the undecoded bytes, got image %v", o.Item.Seq, o.Image)
		}
		if o.Item.Width != im.OrigWidth || o.Item.Height != im.OrigHeight || o.Encoded.Item.Width != im.OrigWidth {
			t.Fatalf("seq %d: size %dx%d, the decoder records %dx%d", o.Item.Seq, o.Item.Width, o.Item.Height, im.OrigWidth, im.OrigHeight)
		}
		o.Encoded.Release()
	}
	im.Release()
	if len(others) != 2 || others[0].URL != "png" || others[1].URL != "html" {
		t.Fatalf("others %v, want png and html", others)
	}
	for _, e := range others {
		e.Release()
	}
	n := 0
	for f := range fails {
		n++
		_, want := Decode(bodies[f.URL], opt)
		if want == nil || f.Stage != "decode" || f.Reason != want.Error() || f.Width != 0 {
			t.Errorf("%s failed with %+v, want stage decode and Decode's reason %v", f.URL, f, want)
		}
	}
	if n != 2 || released.Load() != int64(len(order)) {
		t.Fatalf("%d failures, %d bodies released; want 2 and %d", n, released.Load(), len(order))
	}
	if st := s.Stats(); st.JPEGs != 2 || st.Others != 2 || st.Failed != 2 || st.Bytes != int64(2*len(jpeg)+len(bigJPEG)+len(corrupt)) {
		t.Fatalf("stats %+v", st)
	}
}
