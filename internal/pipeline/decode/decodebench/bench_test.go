// bench_test.go: decode (+ CPU CLIP preprocessing through libclipengine) benchmarks on 20
// photo-like 1024x768 q90 JPEGs, one goroutine, so img/s is per core. The images come from
// $CLIPD_DECODE_BENCH_DIR, else tests/reference/make_images.py bench makes them (fixed seed).
//
//	go test -run '^$' -bench . -benchtime 3s ./pipeline/decode/decodebench
package decodebench

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/internal/pipeline/decode"
)

var (
	once    sync.Once
	files   [][]byte
	loadErr error
)

func loadImages() ([][]byte, error) {
	dir := os.Getenv("CLIPD_DECODE_BENCH_DIR")
	if dir == "" {
		tmp, err := os.MkdirTemp("", "decode-bench")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		script := filepath.Join("..", "..", "..", "..", "tests", "reference", "make_images.py")
		if out, err := exec.Command("/usr/bin/python3", script, "bench", tmp, "20").CombinedOutput(); err != nil {
			return nil, &os.PathError{Op: "make_images.py bench", Path: tmp, Err: &scriptError{string(out)}}
		}
		dir = tmp
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*.jpg"))
	sort.Strings(names)
	var out [][]byte
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

type scriptError struct{ out string }

func (e *scriptError) Error() string { return e.out }

func images(b *testing.B) [][]byte {
	once.Do(func() { files, loadErr = loadImages() })
	if loadErr != nil || len(files) == 0 {
		b.Skipf("no benchmark images: %v", loadErr)
	}
	return files
}

// CLIP's normalization constants (openai/CLIP clip.py).
var (
	mean = [3]float32{0.48145466, 0.4578275, 0.40821073}
	std  = [3]float32{0.26862954, 0.26130258, 0.27577711}
)

// toCHW is ToTensor + Normalize on the engine's uint8 crop.
func toCHW(crop []byte, size int, out []float32) {
	n := size * size
	for c := 0; c < 3; c++ {
		s, m := 1/(255*std[c]), mean[c]/std[c]
		o := out[c*n : (c+1)*n]
		for i := range o {
			o[i] = float32(crop[i*3+c])*s - m
		}
	}
}

func run(b *testing.B, opt decode.Options, preprocess bool) {
	files := images(b)
	d, err := decode.NewDecoder(opt)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	const size = 224
	pixels := make([]float32, 3*size*size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		im, err := d.Decode(files[i%len(files)])
		if err != nil {
			b.Fatal(err)
		}
		if preprocess {
			crop, err := engine.PreprocessU8(engine.Image{RGB: im.RGB, Width: im.Width, Height: im.Height}, size)
			if err != nil {
				b.Fatal(err)
			}
			toCHW(crop, size, pixels)
		}
		im.Release()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "img/s")
}

func BenchmarkDecodeExact(b *testing.B)           { run(b, decode.Options{}, false) }
func BenchmarkDecodeFast(b *testing.B)            { run(b, decode.Options{Mode: decode.Fast}, false) }
func BenchmarkDecodePreprocessExact(b *testing.B) { run(b, decode.Options{}, true) }
func BenchmarkDecodePreprocessFast(b *testing.B) {
	run(b, decode.Options{Mode: decode.Fast}, true)
}
