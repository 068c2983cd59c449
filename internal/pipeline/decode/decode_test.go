// decode_test.go: decoding behaviour that needs no Pillow: bombs refused before allocating,
// non-images and corrupt data as reasons, the Fast mode's sizes, the buffer pool, the stage,
// and a fuzz target (seeded with the fixtures; run longer with go test -fuzz=FuzzDecode).
package decode

import (
	"context"
	"encoding/binary"
	"errors"
	"github.com/clipd/clipd/internal/pipeline/item"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("%v (make it: /usr/bin/python3 tests/reference/make_images.py fixtures internal/pipeline/decode/testdata)", err)
	}
	return b
}

// withJPEGSize rewrites the SOF0 marker's height and width.
func withJPEGSize(t *testing.T, b []byte, w, h int) []byte {
	b = append([]byte(nil), b...)
	for i := 2; i+9 < len(b); i++ {
		if b[i] == 0xFF && b[i+1] == 0xC0 {
			binary.BigEndian.PutUint16(b[i+5:], uint16(h))
			binary.BigEndian.PutUint16(b[i+7:], uint16(w))
			return b
		}
	}
	t.Fatal("no SOF0 marker")
	return nil
}

// withPNGSize rewrites IHDR's width and height and its CRC.
func withPNGSize(b []byte, w, h int) []byte {
	b = append([]byte(nil), b...)
	binary.BigEndian.PutUint32(b[16:], uint32(w))
	binary.BigEndian.PutUint32(b[20:], uint32(h))
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

func TestBombsRefusedBeforeAllocating(t *testing.T) {
	cases := map[string][]byte{
		"jpeg": withJPEGSize(t, readFixture(t, "tiny_7x3.jpg"), 30000, 30000),
		"png":  withPNGSize(readFixture(t, "rgb.png"), 30000, 30000),
	}
	for format, data := range cases {
		var err error
		n := allocated(func() { _, err = Decode(data, Options{}) })
		if !errors.Is(err, ErrTooManyPixels) || err.Error() != "too many pixels (30000x30000)" {
			t.Errorf("%s: %v, want too many pixels (30000x30000)", format, err)
		}
		if n > 1<<20 {
			t.Errorf("%s: allocated %d bytes before refusing", format, n)
		}
	}
	// A lower limit applies to every format; a negative one disables the check.
	for _, name := range []string{"s420.jpg", "rgb.png", "anim.gif", "lossy.webp", "rgb.bmp"} {
		data := readFixture(t, name)
		if _, err := Decode(data, Options{MaxPixels: 100}); !errors.Is(err, ErrTooManyPixels) {
			t.Errorf("%s with MaxPixels 100: %v", name, err)
		}
		im, err := Decode(data, Options{MaxPixels: -1})
		if err != nil {
			t.Errorf("%s with no limit: %v", name, err)
		}
		im.Release()
	}
}

func TestReasons(t *testing.T) {
	jpg := readFixture(t, "s420.jpg")
	garbled := append([]byte(nil), jpg...)
	for i := 300; i < 1200; i++ { // through the headers into the scan
		garbled[i] = byte(i * 7)
	}
	cases := []struct {
		name string
		data []byte
		kind error
		text string
	}{
		{"empty", nil, ErrNotImage, "not an image (empty body)"},
		{"html", []byte("<!DOCTYPE html>\n<html>404</html>"), ErrNotImage, `not an image (starts with "<!DOCTYPE html>")`},
		{"soi only", []byte{0xFF, 0xD8, 0xFF}, ErrCorrupt, "corrupt jpeg"},
		{"garbled jpeg", garbled, ErrCorrupt, "corrupt jpeg: "},
		{"zero-size png", withPNGSize(readFixture(t, "rgb.png"), 0, 10), ErrCorrupt, "corrupt png"},
		{"bad png crc", func() []byte { b := append([]byte(nil), readFixture(t, "rgb.png")...); b[20] ^= 1; return b }(), ErrCorrupt, "corrupt png"},
	}
	for _, c := range cases {
		im, err := Decode(c.data, Options{})
		if err == nil {
			t.Errorf("%s: decoded %dx%d", c.name, im.Width, im.Height)
			continue
		}
		var de *Error
		if !errors.As(err, &de) || !errors.Is(err, c.kind) || !strings.HasPrefix(err.Error(), c.text) {
			t.Errorf("%s: %v (%T), want %q", c.name, err, err, c.text)
		}
	}
}

func TestFastSizes(t *testing.T) {
	cases := []struct {
		name         string
		minSide      int
		wantW, wantH int
	}{
		{"photo_1024x768_q90.jpg", 224, 384, 288}, // 3/8: 288 >= 224 > 192 (1/4)
		{"photo_1024x768_q90.jpg", 100, 256, 192}, // 1/4
		{"photo_1024x768_q90.jpg", 0, 384, 288},   // 0 = DefaultMinSide
		{"photo_1024x768_q90.jpg", 1000, 1024, 768},
		{"s420.jpg", 224, 333, 251}, // 7/8 gives 220: no scale keeps 224, so full size
		{"rgb.png", 10, 97, 61},     // not a JPEG: decoded as in Exact
	}
	for _, c := range cases {
		data := readFixture(t, c.name)
		im, err := Decode(data, Options{Mode: Fast, MinSide: c.minSide})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if im.Width != c.wantW || im.Height != c.wantH {
			t.Errorf("%s fast min %d: %dx%d, want %dx%d", c.name, c.minSide, im.Width, im.Height, c.wantW, c.wantH)
		}
		ex, _ := Decode(data, Options{})
		if ex.Width == im.Width && string(ex.RGB) != string(im.RGB) {
			t.Errorf("%s: unscaled fast decode differs from exact", c.name)
		}
		ex.Release()
		im.Release()
	}
	if m, err := ParseMode("fast"); err != nil || m != Fast || m.String() != "fast" {
		t.Errorf("ParseMode(fast) = %v, %v", m, err)
	}
	if _, err := ParseMode("quick"); err == nil {
		t.Error("ParseMode(quick): no error")
	}
}

func TestPoolClasses(t *testing.T) {
	prev := 0
	for _, n := range []int{1, 4096, 4097, 5000, 1 << 20, 1<<20 + 1, 1024 * 768 * 3, 1 << 30} {
		idx, size := classOf(n)
		if size < n || size > n+n/4+4096 {
			t.Errorf("classOf(%d) = %d bytes", n, size)
		}
		if idx < prev || idx >= len(bufPools) {
			t.Errorf("classOf(%d) index %d", n, idx)
		}
		prev = idx
		if i2, s2 := classOf(size); i2 != idx || s2 != size {
			t.Errorf("class of a class size %d moved: %d/%d vs %d/%d", size, i2, s2, idx, size)
		}
	}
	im := newImage(10, 10)
	im.Release()
	im.Release() // harmless
	if im.RGB != nil {
		t.Error("released image keeps its pixels")
	}
}

// Every fixture comes out of the stage once: an image of the right size, or (the HTML page)
// a failure saying it is not an image; every body is released.
func TestStage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ents, _ := os.ReadDir("testdata")
	in := make(chan *item.Encoded)
	var released atomic.Int64
	go func() {
		defer close(in)
		for _, e := range ents {
			in <- item.NewEncoded(item.Item{URL: e.Name()}, readFixture(t, e.Name()), func() { released.Add(1) })
		}
		in <- item.NewEncoded(item.Item{URL: "html"}, []byte("<html>"), func() { released.Add(1) })
	}()
	fails := make(chan item.Failure, len(ents)+1)
	s := Start(ctx, in, fails, StageOptions{Workers: 3})
	got := map[string]bool{}
	for r := range s.Out() {
		if got[r.Item.URL] {
			t.Errorf("%s twice", r.Item.URL)
		}
		got[r.Item.URL] = true
		if len(r.Image.RGB) != r.Image.Width*r.Image.Height*3 {
			t.Errorf("%s: %d bytes for %dx%d", r.Item.URL, len(r.Image.RGB), r.Image.Width, r.Image.Height)
		}
		r.Image.Release()
	}
	close(fails)
	for f := range fails {
		if got[f.URL] {
			t.Errorf("%s twice", f.URL)
		}
		got[f.URL] = true
		if f.URL != "html" || f.Stage != "decode" || !strings.Contains(f.Reason, ErrNotImage.Error()) {
			t.Errorf("%s failed in %s: %s", f.URL, f.Stage, f.Reason)
		}
	}
	if len(got) != len(ents)+1 || released.Load() != int64(len(ents)+1) {
		t.Errorf("%d results, %d bodies released, want %d", len(got), released.Load(), len(ents)+1)
	}
}

// After ctx ends the stage drains its input without decoding and closes its output once the
// input is closed; nothing read after the cancellation is judged.
func TestStageCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	in := make(chan *item.Encoded)
	fails := make(chan item.Failure, 8)
	s := Start(ctx, in, fails, StageOptions{Workers: 2})
	in <- item.NewEncoded(item.Item{URL: "a"}, readFixture(t, "s420.jpg"), nil)
	cancel()
	go func() {
		defer close(in)
		for range 5 {
			in <- item.NewEncoded(item.Item{URL: "late"}, []byte("<html>"), nil)
		}
	}()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case r, ok := <-s.Out():
			if !ok {
				if len(fails) != 0 {
					t.Errorf("%d failures judged after the cancellation", len(fails))
				}
				return
			}
			r.Image.Release()
		case <-deadline:
			t.Fatal("output not closed after cancel and close(in)")
		}
	}
}
