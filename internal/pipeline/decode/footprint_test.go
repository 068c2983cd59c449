package decode

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/clipd/clipd/internal/pipeline/budget"
	"github.com/clipd/clipd/internal/pipeline/item"
)

// encodePNG16 is a w x h 16-bit RGBA PNG (Go decodes it to NRGBA64: 8 B/px).
func encodePNG16(t testing.TB, w, h int) []byte {
	m := image.NewNRGBA64(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.SetNRGBA64(x, y, color.NRGBA64{R: uint16(x * 77), G: uint16(y * 131), B: uint16(x ^ y), A: 0xfff0})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// The modelled footprint per format and bit depth, and that it bounds what decoding
// allocates on the Go heap (the intermediate image, the output, the decoder's scratch).
func TestFootprintBoundsTheDecode(t *testing.T) {
	d, err := NewDecoder(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	big16 := encodePNG16(t, 600, 400)
	cases := []struct {
		name     string
		data     []byte
		perPixel float64 // the intermediate's bytes per pixel, beside the 3 of the output
	}{
		{"rgba16 600x400", big16, 8},
		{"rgba16.png", readFixture(t, "rgba16.png"), 8},
		{"rgb16.png", readFixture(t, "rgb16.png"), 8},
		{"gray16.png", readFixture(t, "gray16.png"), 2},
		{"rgba.png", readFixture(t, "rgba.png"), 4},
		{"rgb.png", readFixture(t, "rgb.png"), 4},
		{"la.png", readFixture(t, "la.png"), 4},
		{"gray.png", readFixture(t, "gray.png"), 1},
		{"palette.png", readFixture(t, "palette.png"), 1},
		{"anim.gif", readFixture(t, "anim.gif"), 2},
		{"lossless.webp", readFixture(t, "lossless.webp"), 12},
		{"lossy.webp", readFixture(t, "lossy.webp"), 2.5},
		{"rgb.bmp", readFixture(t, "rgb.bmp"), 4},
		{"photo jpeg", readFixture(t, "photo_1024x768_q90.jpg"), 0},
	}
	for _, c := range cases {
		fp, err := d.Footprint(c.data)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		im, err := d.Decode(c.data)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		px := float64(im.Width * im.Height)
		if fp.Kept != im.Held() {
			t.Errorf("%s: modelled kept %d, the image holds %d", c.name, fp.Kept, im.Held())
		}
		im.Release()
		intermediate := fp.Peak - fp.Kept
		if c.name != "photo jpeg" && float64(intermediate) != px*c.perPixel {
			t.Errorf("%s: intermediate %d bytes, want %.0f (%.1f B/px)", c.name, intermediate, px*c.perPixel, c.perPixel)
		}
		// What the decode allocates on the Go heap, beyond a fixed 64 KiB of the decoders'
		// tables and row buffers, stays within the footprint.
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		im, _ = d.Decode(c.data)
		runtime.ReadMemStats(&after)
		im.Release()
		if alloc := int64(after.TotalAlloc - before.TotalAlloc); alloc > fp.Peak+64<<10+int64(len(c.data)) {
			t.Errorf("%s: decoding allocated %d bytes, the footprint is %d", c.name, alloc, fp.Peak)
		}
	}
	// A progressive JPEG keeps its coefficients (2 B per sample); a baseline one does not.
	prog, base := readFixture(t, "progressive.jpg"), readFixture(t, "s420.jpg")
	if !jpegProgressive(prog) || jpegProgressive(base) {
		t.Errorf("progressive detection: %v %v", jpegProgressive(prog), jpegProgressive(base))
	}
	pf, _ := d.Footprint(prog)
	if pf.Peak-pf.Kept < pf.Kept/3 {
		t.Errorf("progressive JPEG: footprint %+v lacks its coefficients", pf)
	}
}

// The decode stage takes each footprint from its budget: a 16-bit PNG's 8 B/px intermediate
// is counted, what it holds afterwards is the image's buffer, and an image whose decode needs
// more than the whole budget fails "too large for --memory" undecoded.
func TestStageBudgetsTheFootprint(t *testing.T) {
	small, big := encodePNG16(t, 64, 64), encodePNG16(t, 400, 300)
	b := budget.New("decoding", 1<<20) // 400x300x11 = 1.3 MB does not fit; 64x64x11 does
	in := make(chan *item.Encoded)
	fails := make(chan item.Failure, 4)
	s := Start(context.Background(), in, fails, StageOptions{Workers: 2, Budget: b})
	var released atomic.Int64
	go func() {
		defer close(in)
		for i, body := range [][]byte{small, big, small} {
			in <- item.NewEncoded(item.Item{Seq: int64(i)}, body, func() { released.Add(1) })
		}
	}()
	var held int64
	n := 0
	for o := range s.Out() {
		n++
		held += o.Image.Held()
	}
	close(fails)
	if n != 2 || b.Held() != held || held != 2*heldSize(64*64*3) {
		t.Errorf("%d images holding %d; the budget holds %d", n, held, b.Held())
	}
	if b.Peak() < 64*64*11 {
		t.Errorf("peak %d: the intermediate was not counted", b.Peak())
	}
	f, ok := <-fails
	if !ok || f.Seq != 1 || !strings.HasPrefix(f.Reason, "too large for --memory (decoding needs 2 MiB, over the 1 MiB") {
		t.Errorf("failure %+v", f)
	}
	if released.Load() != 3 {
		t.Errorf("%d bodies released, want 3", released.Load())
	}
}
