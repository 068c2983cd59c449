// decode_fuzz_test.go: fuzz targets for the decoders — every format through Decode (JPEG
// through libjpeg-turbo, PNG, GIF, WebP and BMP through Go's), and the EXIF orientation
// reader — seeded with the fixtures in testdata and the end-to-end test's images. `make fuzz`
// runs them.

package decode

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// fuzzSeeds are the fixture images (small ones whole, and cut short), and the end-to-end
// test's images (a decompression bomb and a corrupt JPEG among them).
func fuzzSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, dir := range []string{"testdata", filepath.Join("..", "..", "..", "cmd", "clipd", "testdata", "e2e")} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			f.Fatal(err)
		}
		for _, e := range ents {
			if !e.Type().IsRegular() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				f.Fatal(err)
			}
			if len(b) > 64<<10 || sniff(b) == "" {
				continue // keep the seed corpus quick
			}
			seeds = append(seeds, b, b[:len(b)*2/3])
		}
	}
	return seeds
}

func FuzzDecode(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		opt := Options{MaxPixels: 1 << 18, ApplyEXIFOrientation: len(data)%3 == 0}
		if len(data)%2 == 1 {
			opt.Mode = Fast
			opt.MinSide = 16
		}
		im, err := Decode(data, opt)
		if err != nil {
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if im.Width <= 0 || im.Height <= 0 || len(im.RGB) != im.Width*im.Height*3 || int64(im.OrigWidth)*int64(im.OrigHeight) > opt.MaxPixels {
			t.Fatalf("%dx%d (encoded %dx%d) with %d bytes", im.Width, im.Height, im.OrigWidth, im.OrigHeight, len(im.RGB))
		}
		im.Release()
	})
}

// FuzzEXIFOrientation reads the orientation of arbitrary bytes as a JPEG's EXIF would be.
func FuzzEXIFOrientation(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		if sniff(b) == "jpeg" {
			f.Add(b[:min(len(b), 4096)])
		}
	}
	// A minimal APP1 with orientation 6, big- and little-endian.
	f.Add([]byte("\xff\xd8\xff\xe1\x00\x22Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00\x00\x00\x00\x00\xff\xd9"))
	f.Add([]byte("\xff\xd8\xff\xe1\x00\x22Exif\x00\x00II\x2a\x00\x08\x00\x00\x00\x01\x00\x12\x01\x04\x00\x01\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\xff\xd9"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if o := jpegOrientation(data); o < 0 || o > 8 {
			t.Fatalf("orientation %d", o)
		}
	})
}
