// pillow_test.go: the decoder against Pillow. /usr/bin/python3 decodes every fixture (and
// truncated and re-oriented variants made here) with Image.open(f).convert('RGB') and writes
// raw RGB; the Go decoder must produce the same bytes, for every format.
package decode

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

const pillowDump = `
import os, sys
from PIL import Image, ImageOps
out = sys.argv[1]
for path in sys.argv[2:]:
    name = os.path.basename(path)
    try:
        im = Image.open(path)
        if name.startswith("orient_"):
            im = ImageOps.exif_transpose(im)
        rgb = im.convert("RGB")
        with open(os.path.join(out, name + ".rgb"), "wb") as f:
            f.write(rgb.tobytes())
        print(name, rgb.size[0], rgb.size[1])
    except Exception as e:
        print(name, "ERR", str(e).replace("\n", " "))
`

const python = "/usr/bin/python3"

type pillowResult struct {
	w, h int
	rgb  []byte
	err  string
}

var (
	pillowOnce sync.Once
	pillowDir  string
	pillowOut  map[string]pillowResult
	pillowErr  error
)

// variants: files derived from the fixtures, written next to Pillow's outputs.
func variants(t *testing.T) map[string][]byte {
	v := map[string][]byte{}
	rd := func(n string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, c := range []struct {
		name string
		frac float64
	}{{"photo_1024x768_q90.jpg", 0.5}, {"s420.jpg", 0.6}, {"progressive.jpg", 0.6}, {"gray.jpg", 0.9}, {"rgba.png", 0.7}, {"anim.gif", 0.3}} {
		b := rd(c.name)
		v["trunc_"+c.name] = b[:int(float64(len(b))*c.frac)]
	}
	ex := rd("exif6.jpg")
	at := orientationOffset(ex)
	if at < 0 {
		t.Fatal("exif6.jpg: no orientation tag found")
	}
	for o := 1; o <= 8; o++ {
		b := bytes.Clone(ex)
		b[at] = byte(o) // the low byte of a SHORT in either byte order sits at at
		v[fmt.Sprintf("orient_%d.jpg", o)] = b
	}
	return v
}

// orientationOffset finds the byte holding the orientation value of exif6.jpg.
func orientationOffset(b []byte) int {
	for _, pat := range [][]byte{{0x12, 0x01, 3, 0, 1, 0, 0, 0, 6}, {0x01, 0x12, 0, 3, 0, 0, 0, 1, 0}} {
		if i := bytes.Index(b, pat); i >= 0 {
			if pat[0] == 0x12 {
				return i + 8
			}
			return i + 9
		}
	}
	return -1
}

func pillow(t *testing.T) (map[string]pillowResult, string) {
	t.Helper()
	pillowOnce.Do(func() {
		if _, err := os.Stat(python); err != nil {
			pillowErr = err
			return
		}
		dir, err := os.MkdirTemp("", "decode-pillow")
		if err != nil {
			pillowErr = err
			return
		}
		pillowDir = dir
		var files []string
		ents, _ := os.ReadDir("testdata")
		for _, e := range ents {
			files = append(files, filepath.Join("testdata", e.Name()))
		}
		for n, b := range variants(t) {
			p := filepath.Join(dir, n)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				pillowErr = err
				return
			}
			files = append(files, p)
		}
		cmd := exec.Command(python, append([]string{"-c", pillowDump, dir}, files...)...)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			pillowErr = fmt.Errorf("pillow dump: %v", err)
			return
		}
		pillowOut = map[string]pillowResult{}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			f := strings.SplitN(sc.Text(), " ", 3)
			if len(f) < 2 {
				continue
			}
			if f[1] == "ERR" {
				pillowOut[f[0]] = pillowResult{err: f[2]}
				continue
			}
			w, _ := strconv.Atoi(f[1])
			h, _ := strconv.Atoi(f[2])
			rgb, err := os.ReadFile(filepath.Join(dir, f[0]+".rgb"))
			if err != nil {
				pillowErr = err
				return
			}
			pillowOut[f[0]] = pillowResult{w: w, h: h, rgb: rgb}
		}
	})
	if pillowErr != nil {
		t.Skipf("Pillow reference unavailable: %v", pillowErr)
	}
	return pillowOut, pillowDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pillowDir != "" {
		os.RemoveAll(pillowDir)
	}
	os.Exit(code)
}

// diff returns the largest and mean absolute difference, and the first differing index.
func diff(a, b []byte) (maxd int, mean float64, first int) {
	first = -1
	sum := 0
	for i := range a {
		d := int(a[i]) - int(b[i])
		if d < 0 {
			d = -d
		}
		if d > 0 && first < 0 {
			first = i
		}
		maxd = max(maxd, d)
		sum += d
	}
	return maxd, float64(sum) / float64(max(len(a), 1)), first
}

func TestMatchesPillow(t *testing.T) {
	ref, _ := pillow(t)
	ents, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range ents {
		name := e.Name()
		want, ok := ref[name]
		if !ok {
			t.Errorf("%s: no Pillow result", name)
			continue
		}
		seen[filepath.Ext(name)] = true
		data, _ := os.ReadFile(filepath.Join("testdata", name))
		im, err := Decode(data, Options{})
		if want.err != "" {
			t.Errorf("%s: Pillow failed (%s)", name, want.err)
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if im.Width != want.w || im.Height != want.h || len(im.RGB) != len(want.rgb) {
			t.Errorf("%s: %dx%d, Pillow %dx%d", name, im.Width, im.Height, want.w, want.h)
			im.Release()
			continue
		}
		maxd, mean, first := diff(im.RGB, want.rgb)
		if maxd != 0 {
			px := first / 3
			t.Errorf("%s: differs from Pillow: max %d, mean %.4f, first at pixel (%d,%d): got %v want %v",
				name, maxd, mean, px%im.Width, px/im.Width, im.RGB[px*3:px*3+3], want.rgb[px*3:px*3+3])
		}
		im.Release()
	}
	for _, ext := range []string{".jpg", ".png", ".gif", ".webp", ".bmp"} {
		if !seen[ext] {
			t.Errorf("no %s fixture checked (regenerate testdata with tests/reference/make_images.py fixtures)", ext)
		}
	}
}

func TestOrientationMatchesPillow(t *testing.T) {
	ref, dir := pillow(t)
	for o := 1; o <= 8; o++ {
		name := fmt.Sprintf("orient_%d.jpg", o)
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := jpegOrientation(data); got != o {
			t.Errorf("%s: orientation %d", name, got)
		}
		want := ref[name]
		im, err := Decode(data, Options{ApplyEXIFOrientation: true})
		if err != nil || want.err != "" {
			t.Fatalf("%s: %v / Pillow %s", name, err, want.err)
		}
		if im.Width != want.w || im.Height != want.h || !bytes.Equal(im.RGB, want.rgb) {
			t.Errorf("%s: %dx%d differs from Pillow's exif_transpose (%dx%d)", name, im.Width, im.Height, want.w, want.h)
		}
		im.Release()
		// Ignored by default: the stored pixels, as CLIP's preprocessing sees them.
		im, _ = Decode(data, Options{})
		if o >= 5 && (im.Width != want.h || im.Height != want.w) {
			t.Errorf("%s without the option: %dx%d, want the stored %dx%d", name, im.Width, im.Height, want.h, want.w)
		}
		im.Release()
	}
}

func TestTruncatedFailsLikePillow(t *testing.T) {
	ref, dir := pillow(t)
	for _, n := range []string{"photo_1024x768_q90.jpg", "s420.jpg", "progressive.jpg", "gray.jpg", "rgba.png", "anim.gif"} {
		name := "trunc_" + n
		if ref[name].err == "" {
			t.Errorf("%s: Pillow decoded it; the fixture does not test truncation", name)
		}
		data, _ := os.ReadFile(filepath.Join(dir, name))
		im, err := Decode(data, Options{})
		if err == nil {
			t.Errorf("%s: decoded %dx%d, want a failure (Pillow: %s)", name, im.Width, im.Height, ref[name].err)
			continue
		}
		var de *Error
		if !errors.As(err, &de) {
			t.Errorf("%s: %T %v, want *Error", name, err, err)
		}
		if !errors.Is(err, ErrTruncated) {
			t.Errorf("%s: %v, want truncated", name, err)
		}
		t.Logf("%s: %v (Pillow: %s)", name, err, ref[name].err)
	}
}
