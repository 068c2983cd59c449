// turbojpeg_test.go: checks the wrapper against the decoder's JPEG fixtures
// (internal/pipeline/decode/testdata, made by tests/reference/make_images.py fixtures).
package turbojpeg

import (
	"errors"
	"os"
	"testing"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../../pipeline/decode/testdata/" + name)
	if err != nil {
		t.Fatalf("%v (make it: /usr/bin/python3 tests/reference/make_images.py fixtures internal/pipeline/decode/testdata)", err)
	}
	return b
}

func TestHeaderAndDecode(t *testing.T) {
	d, err := NewDecompressor()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cases := []struct {
		name string
		w, h int
		samp int
		cs   Colorspace
	}{
		{"photo_1024x768_q90.jpg", 1024, 768, Samp420, ColorspaceYCbCr},
		{"s444.jpg", 333, 251, Samp444, ColorspaceYCbCr},
		{"s422.jpg", 333, 251, Samp422, ColorspaceYCbCr},
		{"gray.jpg", 333, 251, SampGray, ColorspaceGray},
		{"cmyk.jpg", 333, 251, -1, ColorspaceCMYK},
		{"tiny_7x3.jpg", 7, 3, Samp420, ColorspaceYCbCr},
	}
	for _, c := range cases {
		data := fixture(t, c.name)
		h, err := d.Header(data)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if h.Width != c.w || h.Height != c.h || h.Colorspace != c.cs || (c.samp >= 0 && h.Subsampling != c.samp) {
			t.Errorf("%s: header %+v, want %dx%d samp %d cs %d", c.name, h, c.w, c.h, c.samp, c.cs)
		}
		pf := PixelRGB
		if c.cs == ColorspaceCMYK {
			pf = PixelCMYK
		}
		buf := make([]byte, h.Width*h.Height*pf.BytesPerPixel())
		if err := d.Decompress(data, buf, h.Width, h.Width*pf.BytesPerPixel(), h.Height, pf, 0); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		nonzero := 0
		for _, v := range buf {
			if v != 0 {
				nonzero++
			}
		}
		if nonzero == 0 {
			t.Errorf("%s: decoded all zeros", c.name)
		}
	}
}

func TestScaledDecode(t *testing.T) {
	fs := ScalingFactors()
	var half ScalingFactor
	for _, f := range fs {
		if f.Num*2 == f.Denom {
			half = f
		}
	}
	if half.Denom == 0 {
		t.Fatalf("no 1/2 factor among %v", fs)
	}
	d, _ := NewDecompressor()
	defer d.Close()
	data := fixture(t, "photo_1024x768_q90.jpg")
	w, h := half.Scaled(1024), half.Scaled(768)
	if w != 512 || h != 384 {
		t.Fatalf("scaled size %dx%d", w, h)
	}
	buf := make([]byte, w*h*3)
	if err := d.Decompress(data, buf, w, w*3, h, PixelRGB, 0); err != nil {
		t.Fatal(err)
	}
}

func TestErrors(t *testing.T) {
	d, _ := NewDecompressor()
	if _, err := d.Header([]byte("<html>not a jpeg</html>")); err == nil {
		t.Error("header of HTML: no error")
	}
	data := fixture(t, "s420.jpg")
	h, _ := d.Header(data)
	buf := make([]byte, h.Width*h.Height*3)
	err := d.Decompress(data[:len(data)/2], buf, h.Width, h.Width*3, h.Height, PixelRGB, 0)
	var te *Error
	if !errors.As(err, &te) || !te.Warning {
		t.Errorf("truncated decode: %v, want a warning", err)
	}
	// A failed call must not spoil the handle for the next, good, file.
	if _, err := d.Header([]byte{0xFF, 0xD8, 0xFF}); err == nil {
		t.Error("header of a bare SOI: no error")
	}
	garbled := append([]byte(nil), data...)
	for i := 300; i < 1200; i++ {
		garbled[i] = byte(i * 7)
	}
	if _, err := d.Header(garbled); err == nil {
		if err := d.Decompress(garbled, buf, h.Width, h.Width*3, h.Height, PixelRGB, 0); err == nil {
			t.Error("garbled file decoded without error")
		}
	}
	if err := d.Decompress(data, buf, h.Width, h.Width*3, h.Height, PixelRGB, 0); err != nil {
		t.Errorf("good file after failed calls: %v", err)
	}
	if err := d.Decompress(data, buf[:10], h.Width, h.Width*3, h.Height, PixelRGB, 0); err == nil {
		t.Error("short dst: no error")
	}
	d.Close()
	d.Close()
	if _, err := d.Header(data); err != ErrClosed {
		t.Errorf("closed: %v", err)
	}
}
