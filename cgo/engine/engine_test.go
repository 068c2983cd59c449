// engine_test.go: the Go binding against the real library on the committed tiny golden
// models (testdata/golden, made by tests/reference/make_golden.py).

package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/clipd/clipd/internal/vecmath"
	"github.com/clipd/clipd/weights"
)

const goldenRoot = "../../testdata/golden"

// npyPayload reads a little-endian .npy file (C order) written by numpy whose dtype is descr
// ("<f4", "<i4"): its data bytes and shape.
func npyPayload(t *testing.T, path, descr string) ([]byte, []int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 10 || string(b[1:6]) != "NUMPY" {
		t.Fatalf("%s: not an npy file", path)
	}
	var hlen, off int
	if b[6] == 1 {
		hlen, off = int(binary.LittleEndian.Uint16(b[8:10])), 10
	} else {
		hlen, off = int(binary.LittleEndian.Uint32(b[8:12])), 12
	}
	header := string(b[off : off+hlen])
	if !strings.Contains(header, "'descr': '"+descr+"'") || strings.Contains(header, "'fortran_order': True") {
		t.Fatalf("%s: want %s C order, header %s", path, descr, header)
	}
	m := regexp.MustCompile(`'shape': \(([^)]*)\)`).FindStringSubmatch(header)
	var shape []int
	count := 1
	for _, f := range strings.Split(m[1], ",") {
		if f = strings.TrimSpace(f); f != "" {
			v, _ := strconv.Atoi(f)
			shape = append(shape, v)
			count *= v
		}
	}
	data := b[off+hlen:]
	if len(data) < 4*count {
		t.Fatalf("%s: %d data bytes for shape %v", path, len(data), shape)
	}
	return data[:4*count], shape
}

// readNPY reads a little-endian float32 .npy file (C order) written by numpy.
func readNPY(t *testing.T, path string) ([]float32, []int) {
	t.Helper()
	data, shape := npyPayload(t, path, "<f4")
	out := make([]float32, len(data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
	}
	return out, shape
}

// readNPYInt32 reads a little-endian int32 .npy file (C order) written by numpy.
func readNPYInt32(t *testing.T, path string) ([]int32, []int) {
	t.Helper()
	data, shape := npyPayload(t, path, "<i4")
	out := make([]int32, len(data)/4)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(data[4*i:]))
	}
	return out, shape
}

func goldens(t *testing.T) []string {
	dirs, _ := filepath.Glob(filepath.Join(goldenRoot, "*", "expected.npy"))
	if len(dirs) == 0 {
		t.Fatalf("no golden models under %s (run tests/reference/make_golden.py)", goldenRoot)
	}
	for i := range dirs {
		dirs[i] = filepath.Dir(dirs[i])
	}
	return dirs
}

func TestEmbedPixelsMatchesGolden(t *testing.T) {
	for _, dir := range goldens(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			pixels, pshape := readNPY(t, filepath.Join(dir, "pixels.npy"))
			want, wshape := readNPY(t, filepath.Join(dir, "expected.npy"))
			n := pshape[0]
			e, err := Open(Options{WeightsPath: dir, Backend: BackendCPU, Threads: 2, MaxBatch: n})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			info := e.Info()
			if info.ImageSize != pshape[2] || info.EmbedDim != wshape[1] {
				t.Fatalf("info %+v does not fit pixels %v / expected %v", info, pshape, wshape)
			}
			got := make([]float32, n*info.EmbedDim)
			if err := e.EmbedPixels(pixels, n, got); err != nil {
				t.Fatal(err)
			}
			if c, i := vecmath.MinCosine(got, want[:n*info.EmbedDim], info.EmbedDim); !(c >= 0.99999) {
				t.Errorf("image %d: cosine %.7f < 0.99999", i, c)
			}
		})
	}
}

// synthImage makes a deterministic, non-flat RGB8 image.
func synthImage(w, h, seed int) Image {
	rgb := make([]byte, w*h*3)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := (y*w + x) * 3
			rgb[i] = byte((x*7 + y*3 + seed*31) % 256)
			rgb[i+1] = byte((x*x/5 + y + seed) % 256)
			rgb[i+2] = byte(((x ^ y) * 13) % 256)
		}
	}
	return Image{RGB: rgb, Width: w, Height: h}
}

func TestEmbedImagesEqualsPreprocessThenPixels(t *testing.T) {
	dir := goldens(t)[0]
	e, err := Open(Options{WeightsPath: dir, Backend: BackendCPU, Threads: 2, MaxBatch: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	info := e.Info()
	S, D := info.ImageSize, info.EmbedDim
	imgs := []Image{synthImage(97, 61, 1), synthImage(40, 200, 2), synthImage(S, S, 3)}
	// a padded stride must give the same embedding as the packed image
	padded := synthImage(50, 30, 4)
	stride := 50*3 + 11
	buf := make([]byte, stride*30)
	for y := 0; y < 30; y++ {
		copy(buf[y*stride:], padded.RGB[y*150:(y+1)*150])
	}
	imgs = append(imgs, Image{RGB: buf, Width: 50, Height: 30, Stride: stride})
	got := make([]float32, len(imgs)*D)
	if err := e.EmbedImages(imgs, got); err != nil {
		t.Fatal(err)
	}
	mean := [3]float32{0.48145466, 0.4578275, 0.40821073}
	std := [3]float32{0.26862954, 0.26130258, 0.27577711}
	for i, im := range imgs {
		crop, err := PreprocessU8(im, S)
		if err != nil {
			t.Fatal(err)
		}
		px := make([]float32, 3*S*S)
		for c := 0; c < 3; c++ {
			for p := 0; p < S*S; p++ {
				px[c*S*S+p] = (float32(crop[p*3+c])/255 - mean[c]) / std[c]
			}
		}
		one := make([]float32, D)
		if err := e.EmbedPixels(px, 1, one); err != nil {
			t.Fatal(err)
		}
		if c := vecmath.Cosine(one, got[i*D:(i+1)*D]); c < 0.999999 {
			t.Errorf("image %d: EmbedImages vs PreprocessU8+EmbedPixels cosine %.7f", i, c)
		}
	}
}

func TestErrorsAreTyped(t *testing.T) {
	_, err := Open(Options{WeightsPath: filepath.Join(t.TempDir(), "missing.safetensors"), Backend: BackendCPU})
	if !errors.Is(err, ErrIO) {
		t.Fatalf("missing file: got %v, want ErrIO", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.safetensors")
	os.WriteFile(bad, []byte("\x10\x00\x00\x00\x00\x00\x00\x00{not json at all"), 0o644)
	_, err = Open(Options{WeightsPath: bad, Backend: BackendCPU})
	if !errors.Is(err, ErrBadWeights) || !strings.Contains(err.Error(), "bad.safetensors") && !strings.Contains(strings.ToLower(err.Error()), "json") {
		t.Fatalf("bad header: got %v, want ErrBadWeights naming the problem", err)
	}
	dir := goldens(t)[0]
	e, err := Open(Options{WeightsPath: dir, Backend: BackendCPU, MaxBatch: 2})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, 3*e.Info().EmbedDim)
	imgs := []Image{synthImage(8, 8, 0), synthImage(8, 8, 1), synthImage(8, 8, 2)}
	if err := e.EmbedImages(imgs, out); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "max_batch") {
		t.Fatalf("batch over max_batch: got %v", err)
	}
	if err := e.EmbedImages([]Image{{RGB: make([]byte, 10), Width: 8, Height: 8}}, out); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("short pixel buffer: got %v", err)
	}
	e.Close()
	if err := e.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if err := e.EmbedImages(imgs[:1], out); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: got %v", err)
	}
}

func TestConcurrentCallsAreSerialized(t *testing.T) {
	dir := goldens(t)[0]
	e, err := Open(Options{WeightsPath: dir, Backend: BackendCPU, Threads: 1, MaxBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	D := e.Info().EmbedDim
	im := synthImage(33, 47, 9)
	ref := make([]float32, D)
	if err := e.EmbedImages([]Image{im}, ref); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]float32, D)
			for k := 0; k < 5; k++ {
				if err := e.EmbedImages([]Image{im}, out); err != nil {
					errs <- err
					return
				}
				for i := range out {
					if out[i] != ref[i] {
						errs <- fmt.Errorf("concurrent call gave a different embedding at %d", i)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestProbeMatchesOpen(t *testing.T) {
	for _, dir := range goldens(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			file := filepath.Join(dir, "model.safetensors")
			for _, path := range []string{dir, file} {
				probed, err := Probe(path)
				if err != nil {
					t.Fatal(err)
				}
				e, err := Open(Options{WeightsPath: path, Backend: BackendCPU, Threads: 1})
				if err != nil {
					t.Fatal(err)
				}
				if got := e.Info(); got != probed {
					t.Errorf("%s: Probe %+v, Open's engine %+v", path, probed, got)
				}
				e.Close()
			}
			// The golden files hold the vision tower only, so every tensor counts.
			h, err := weights.ReadHeader(file)
			if err != nil {
				t.Fatal(err)
			}
			info, _ := Probe(dir)
			if got, want := info.Params(), h.Params(); got != want {
				t.Errorf("Params() = %d, the file holds %d elements", got, want)
			}
		})
	}
}

func TestProbeErrorsLikeOpen(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.safetensors")
	if _, err := Probe(missing); !errors.Is(err, ErrIO) {
		t.Fatalf("missing file: got %v, want ErrIO", err)
	}
	// A golden model whose first tensor's shape is rewritten in the header (same length).
	src, err := os.ReadFile(filepath.Join(goldens(t)[0], "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	hlen := binary.LittleEndian.Uint64(src[:8])
	header := string(src[8 : 8+hlen])
	m := regexp.MustCompile(`"shape":\s*\[(\d+),\s*(\d+)\]`).FindStringSubmatchIndex(header)
	if m == nil {
		t.Fatalf("no 2-d tensor in %.200s", header)
	}
	a, b := header[m[2]:m[3]], header[m[4]:m[5]]
	if a == b {
		t.Skip("first 2-d tensor is square")
	}
	swapped := header[:m[2]] + b + header[m[3]:m[4]] + a + header[m[5]:]
	bad := filepath.Join(t.TempDir(), "model.safetensors")
	if err := os.WriteFile(bad, append(append(append([]byte{}, src[:8]...), swapped...), src[8+hlen:]...), 0o644); err != nil {
		t.Fatal(err)
	}
	_, perr := Probe(bad)
	_, oerr := Open(Options{WeightsPath: bad, Backend: BackendCPU})
	if !errors.Is(perr, ErrBadWeights) || !strings.Contains(perr.Error(), "has shape") {
		t.Fatalf("misshaped tensor: Probe gave %v", perr)
	}
	var pe, oe *Error
	if !errors.As(perr, &pe) || !errors.As(oerr, &oe) || pe.Msg != oe.Msg || pe.Status != oe.Status {
		t.Fatalf("Probe says %v, Open says %v", perr, oerr)
	}
}

func TestResolveBackend(t *testing.T) {
	b, name, mem, err := ResolveBackend(BackendCPU, 0)
	if err != nil || b != BackendCPU || name != "cpu" || mem != 0 {
		t.Fatalf("cpu: %v %q %d %v", b, name, mem, err)
	}
	auto, autoName, _, err := ResolveBackend(BackendAuto, 0)
	if err != nil {
		t.Fatalf("auto: %v", err)
	}
	cuda, cudaName, cudaMem, cerr := ResolveBackend(BackendCUDA, 0)
	t.Logf("auto -> %v %q; cuda -> %v %q %d %v", auto, autoName, cuda, cudaName, cudaMem, cerr)
	if cerr == nil {
		if cuda != BackendCUDA || auto != BackendCUDA || cudaName == "" || cudaMem <= 0 {
			t.Fatalf("with a device: auto %v, cuda %v %q %d", auto, cuda, cudaName, cudaMem)
		}
	} else {
		if !errors.Is(cerr, ErrUnsupported) || auto != BackendCPU || autoName != "cpu" {
			t.Fatalf("without a device: cuda gave %v, auto %v %q", cerr, auto, autoName)
		}
		// Open with BackendCUDA fails with the same message.
		_, oerr := Open(Options{WeightsPath: goldens(t)[0], Backend: BackendCUDA})
		var re, oe *Error
		if !errors.As(cerr, &re) || !errors.As(oerr, &oe) || re.Msg != oe.Msg {
			t.Fatalf("ResolveBackend says %v, Open says %v", cerr, oerr)
		}
	}
	if _, _, _, err := ResolveBackend(BackendCPU, -1); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("negative device: %v", err)
	}
}
