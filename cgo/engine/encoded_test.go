// encoded_test.go: EmbedEncoded (the library's own JPEG decoder) against the Go decoder
// (internal/pipeline/decode) then EmbedImages, on every decode fixture: the committed ones
// (internal/pipeline/decode/testdata, cmd/clipd/testdata/e2e) and the JPEGs that
// tests/reference/make_images.py makes at run time (the preprocess and bench sets). Embeddings
// must be equal bit for bit, failures must fail alike (same kind, same reason text), and a bad
// image must fail alone.

package engine

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/pipeline/decode"
	"github.com/clipd/clipd/internal/vecmath"
)

// writeTinyModel writes a random (fixed seed) OpenAI-named vision tower with CLIP's input
// geometry (224 px, patch 32) but a narrow width, so the resize from the decoded image
// matters as in B/32 while the forward stays cheap.
func writeTinyModel(t *testing.T) string { return writeTinyModelTB(t) }

func writeTinyModelB(b *testing.B) string { return writeTinyModelTB(b) }

func writeTinyModelTB(t testing.TB) string {
	t.Helper()
	const S, P, W, L, M, E = 224, 32, 64, 1, 128, 16
	T := (S/P)*(S/P) + 1
	rng := rand.New(rand.NewSource(20261130))
	type tensor struct {
		name  string
		shape []int
		mean  float64
		std   float64
	}
	ts := []tensor{
		{"visual.conv1.weight", []int{W, 3, P, P}, 0, 1 / math.Sqrt(3*P*P)},
		{"visual.class_embedding", []int{W}, 0, 0.1},
		{"visual.positional_embedding", []int{T, W}, 0, 0.1},
		{"visual.ln_pre.weight", []int{W}, 1, 0.1},
		{"visual.ln_pre.bias", []int{W}, 0, 0.05},
	}
	for l := 0; l < L; l++ {
		b := fmt.Sprintf("visual.transformer.resblocks.%d.", l)
		ts = append(ts,
			tensor{b + "ln_1.weight", []int{W}, 1, 0.1}, tensor{b + "ln_1.bias", []int{W}, 0, 0.05},
			tensor{b + "attn.in_proj_weight", []int{3 * W, W}, 0, 1 / math.Sqrt(W)},
			tensor{b + "attn.in_proj_bias", []int{3 * W}, 0, 0.05},
			tensor{b + "attn.out_proj.weight", []int{W, W}, 0, 0.5 / math.Sqrt(W)},
			tensor{b + "attn.out_proj.bias", []int{W}, 0, 0.05},
			tensor{b + "ln_2.weight", []int{W}, 1, 0.1}, tensor{b + "ln_2.bias", []int{W}, 0, 0.05},
			tensor{b + "mlp.c_fc.weight", []int{M, W}, 0, 1 / math.Sqrt(W)},
			tensor{b + "mlp.c_fc.bias", []int{M}, 0, 0.05},
			tensor{b + "mlp.c_proj.weight", []int{W, M}, 0, 0.5 / math.Sqrt(M)},
			tensor{b + "mlp.c_proj.bias", []int{W}, 0, 0.05})
	}
	ts = append(ts,
		tensor{"visual.ln_post.weight", []int{W}, 1, 0.1}, tensor{"visual.ln_post.bias", []int{W}, 0, 0.05},
		tensor{"visual.proj", []int{W, E}, 0, 1 / math.Sqrt(W)})
	header := map[string]any{}
	var data bytes.Buffer
	for _, x := range ts {
		n := 1
		for _, d := range x.shape {
			n *= d
		}
		start := data.Len()
		for i := 0; i < n; i++ {
			binary.Write(&data, binary.LittleEndian, float32(x.mean+x.std*rng.NormFloat64()))
		}
		header[x.name] = map[string]any{"dtype": "F32", "shape": x.shape, "data_offsets": []int{start, data.Len()}}
	}
	h, _ := json.Marshal(header)
	var f bytes.Buffer
	binary.Write(&f, binary.LittleEndian, uint64(len(h)))
	f.Write(h)
	f.Write(data.Bytes())
	path := filepath.Join(t.TempDir(), "model.safetensors")
	if err := os.WriteFile(path, f.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type fixture struct {
	name string
	data []byte
}

// decodeFixtures reads every file of the committed decode fixtures and, with Debian's
// Python, the JPEGs make_images.py writes at run time.
func decodeFixtures(t *testing.T) []fixture {
	t.Helper()
	var out []fixture
	add := func(pattern string) {
		paths, _ := filepath.Glob(pattern)
		sort.Strings(paths)
		for _, p := range paths {
			if st, err := os.Stat(p); err != nil || st.IsDir() {
				continue
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fixture{name: p, data: b})
		}
	}
	add("../../internal/pipeline/decode/testdata/*")
	add("../../cmd/clipd/testdata/e2e/*")
	if len(out) < 40 {
		t.Fatalf("only %d committed fixtures found", len(out))
	}
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Logf("no /usr/bin/python3: the make_images.py run-time sets are not checked")
		return out
	}
	dir := t.TempDir()
	script := "../../tests/reference/make_images.py"
	for _, args := range [][]string{{"preprocess", filepath.Join(dir, "pre")}, {"bench", filepath.Join(dir, "bench"), "3"}} {
		cmd := exec.Command("/usr/bin/python3", append([]string{script}, args...)...)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make_images.py %s: %v\n%s", args[0], err, b)
		}
	}
	add(filepath.Join(dir, "pre", "*"))
	add(filepath.Join(dir, "bench", "*"))
	return out
}

// damagedJPEGs derives broken files from good JPEGs, one per branch of the decoders' error
// handling: a warning libjpeg recovers from with the end marker present (accepted), damaged
// entropy-coded data, premature ends with and without an end marker, padding after the end
// marker, a broken marker length, a header cut short.
func damagedJPEGs(t *testing.T, fixtures []fixture) []fixture {
	t.Helper()
	var out []fixture
	for _, f := range fixtures {
		base := filepath.Base(f.name)
		if base != "s420.jpg" && base != "progressive.jpg" && base != "photo_1024x768_q90.jpg" && base != "gray.jpg" && base != "cmyk.jpg" {
			continue
		}
		d := f.data
		n := len(d)
		mut := func(name string, b []byte) { out = append(out, fixture{name: f.name + "#" + name, data: b}) }
		// Three stray bytes before the second marker: "extraneous bytes before marker".
		if m := 2 + 2 + int(d[4])<<8 | int(d[5]); m+2 < n {
			mut("extraneous", append(append(append([]byte{}, d[:m]...), 0, 0, 0), d[m:]...))
		}
		zeroed := append([]byte{}, d...)
		for i := n * 6 / 10; i < n*6/10+64 && i < n-2; i++ {
			zeroed[i] = 0
		}
		mut("zeroed-scan", zeroed)
		flipped := append([]byte{}, d...)
		for i := n / 2; i < n-2; i += 97 {
			flipped[i] ^= 0x5A
		}
		mut("flipped-scan", flipped)
		mut("cut-70-with-eoi", append(append([]byte{}, d[:n*7/10]...), 0xFF, 0xD9))
		mut("cut-50", append([]byte{}, d[:n/2]...))
		mut("cut-header", append([]byte{}, d[:min(n, 40)]...))
		mut("padded", append(append([]byte{}, d...), bytes.Repeat([]byte{0x20}, 100)...))
		badLen := append([]byte{}, d...)
		badLen[4], badLen[5] = 0, 1 // APP0 length 1
		mut("bad-length", badLen)
	}
	if len(out) < 30 {
		t.Fatalf("only %d damaged variants", len(out))
	}
	return out
}

func isJPEG(b []byte) bool { return len(b) >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF }

// sameKind: the library's per-image failure matches the Go decoder's.
func sameKind(goErr, cErr error) bool {
	switch {
	case errors.Is(goErr, decode.ErrTruncated):
		return errors.Is(cErr, ErrImageTruncated)
	case errors.Is(goErr, decode.ErrCorrupt):
		return errors.Is(cErr, ErrImageCorrupt)
	case errors.Is(goErr, decode.ErrTooManyPixels):
		return errors.Is(cErr, ErrImageTooLarge)
	}
	return false
}

func TestEmbedEncodedMatchesGoDecoder(t *testing.T) {
	weights := writeTinyModel(t)
	fixtures := decodeFixtures(t)
	fixtures = append(fixtures, damagedJPEGs(t, fixtures)...)
	const maxBatch = 24
	e, err := Open(Options{WeightsPath: weights, Backend: BackendCPU, Threads: 2, MaxBatch: maxBatch})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	D := e.Info().EmbedDim
	jpegs := 0
	for _, f := range fixtures {
		if isJPEG(f.data) {
			jpegs++
		}
	}
	t.Logf("%d fixtures, %d of them JPEG", len(fixtures), jpegs)

	for _, opt := range []decode.Options{
		{},
		{ApplyEXIFOrientation: true},
		{MaxPixels: 200 * 200}, // fails the larger fixtures as too many pixels
	} {
		t.Run(fmt.Sprintf("exif=%v,maxpixels=%d", opt.ApplyEXIFOrientation, opt.MaxPixels), func(t *testing.T) {
			if err := e.SetDecodeOptions(DecodeOptions{MaxPixels: opt.MaxPixels, ApplyEXIFOrientation: opt.ApplyEXIFOrientation}); err != nil {
				t.Fatal(err)
			}
			good, failedAlike := 0, 0
			// Batches of the fixtures in order, JPEG or not, good or bad mixed.
			for b0 := 0; b0 < len(fixtures); b0 += maxBatch {
				batch := fixtures[b0:min(b0+maxBatch, len(fixtures))]
				blobs := make([][]byte, len(batch))
				for i, f := range batch {
					blobs[i] = f.data
				}
				got := make([]float32, len(batch)*D)
				failed, err := e.EmbedEncoded(blobs, got)
				if err != nil {
					t.Fatal(err)
				}
				// The Go decoder on the same bytes; its good images through EmbedImages, in
				// the batch's order (the CPU forward's rounding can depend on the batch).
				var imgs []Image
				var rows []int
				for i, f := range batch {
					im, goErr := decode.Decode(f.data, opt)
					cErr := failed[i]
					switch {
					case !isJPEG(f.data):
						if !errors.Is(cErr, ErrUnsupported) || !strings.HasPrefix(cErr.Error(), "not a jpeg (") {
							t.Errorf("%s (not a JPEG): got %v, want an unsupported-format failure", f.name, cErr)
						}
					case goErr != nil:
						if cErr == nil || !sameKind(goErr, cErr) || cErr.Error() != goErr.Error() {
							t.Errorf("%s: Go decoder fails with %q, EmbedEncoded with %v", f.name, goErr, cErr)
						} else {
							failedAlike++
						}
					case cErr != nil:
						t.Errorf("%s: Go decoder decodes it (%dx%d), EmbedEncoded fails: %v", f.name, im.Width, im.Height, cErr)
					default:
						imgs = append(imgs, Image{RGB: im.RGB, Width: im.Width, Height: im.Height})
						rows = append(rows, i)
					}
					if cErr != nil && !allZero(got[i*D:(i+1)*D]) {
						t.Errorf("%s: failed image's row is not zeros", f.name)
					}
				}
				if len(imgs) == 0 {
					continue
				}
				want := make([]float32, len(imgs)*D)
				if err := e.EmbedImages(imgs, want); err != nil {
					t.Fatal(err)
				}
				for k, i := range rows {
					g, w := got[i*D:(i+1)*D], want[k*D:(k+1)*D]
					if !equalBits(g, w) {
						t.Errorf("%s: EmbedEncoded differs from Go decode + EmbedImages (cosine %.9f)", batch[i].name, vecmath.Cosine(g, w))
					} else {
						good++
					}
				}
			}
			t.Logf("%d JPEGs embedded bit-identically, %d failed alike", good, failedAlike)
			if good < 20 {
				t.Errorf("only %d JPEGs compared", good)
			}
			if opt.MaxPixels > 0 && failedAlike < 5 {
				t.Errorf("max pixels %d: only %d images refused alike", opt.MaxPixels, failedAlike)
			}
		})
	}
}

// A mixed batch (corrupt, truncated, empty, PNG, HTML and good JPEGs): the bad ones fail with
// their own status, the good ones get the rows a batch of only them gets (bit for bit) and,
// up to the CPU GEMM's batch-size rounding, what each gets alone.
func TestEmbedEncodedIsolatesFailures(t *testing.T) {
	weights := writeTinyModel(t)
	e, err := Open(Options{WeightsPath: weights, Backend: BackendCPU, Threads: 2, MaxBatch: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.SetDecodeOptions(DecodeOptions{}); err != nil {
		t.Fatal(err)
	}
	D := e.Info().EmbedDim
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	const dec, e2e = "../../internal/pipeline/decode/testdata/", "../../cmd/clipd/testdata/e2e/"
	photo := read(dec + "photo_1024x768_q90.jpg")
	items := []struct {
		data []byte
		want error // nil: good
	}{
		{read(dec + "s422.jpg"), nil},
		{read(e2e + "corrupt.jpg"), ErrImageCorrupt},
		{photo, nil},
		{photo[:len(photo)/2], ErrImageTruncated},
		{nil, ErrUnsupported},
		{read(dec + "rgb.png"), ErrUnsupported},
		{read(dec + "cmyk.jpg"), nil},
		{read(e2e + "page.html"), ErrUnsupported},
		{read(dec + "progressive.jpg"), nil},
		{read(e2e + "truncated.jpg"), ErrImageTruncated},
		{read(dec + "gray.jpg"), nil},
	}
	blobs := make([][]byte, len(items))
	for i, it := range items {
		blobs[i] = it.data
	}
	before, _ := e.DecodeStats()
	got := make([]float32, len(items)*D)
	failed, err := e.EmbedEncoded(blobs, got)
	if err != nil {
		t.Fatal(err)
	}
	var goodBlobs [][]byte
	var goodRows []int
	for i, it := range items {
		switch {
		case it.want == nil && failed[i] != nil:
			t.Errorf("item %d: good JPEG failed: %v", i, failed[i])
		case it.want != nil && !errors.Is(failed[i], it.want):
			t.Errorf("item %d: got %v, want %v", i, failed[i], it.want)
		case it.want != nil:
			var ie *ImageError
			if !errors.As(failed[i], &ie) || ie.Index != i || ie.Reason == "" {
				t.Errorf("item %d: failure %#v lacks its index or reason", i, failed[i])
			}
			if !allZero(got[i*D : (i+1)*D]) {
				t.Errorf("item %d: failed image's row is not zeros", i)
			}
		default:
			goodBlobs = append(goodBlobs, it.data)
			goodRows = append(goodRows, i)
		}
	}
	after, _ := e.DecodeStats()
	if d := after.CPUDecoded - before.CPUDecoded; d != int64(len(goodRows)) {
		t.Errorf("CPUDecoded grew by %d, want %d", d, len(goodRows))
	}
	if d := after.Failed - before.Failed; d != int64(len(items)-len(goodRows)) {
		t.Errorf("Failed grew by %d, want %d", d, len(items)-len(goodRows))
	}
	only := make([]float32, len(goodBlobs)*D)
	if f, err := e.EmbedEncoded(goodBlobs, only); err != nil || f[0] != nil {
		t.Fatal(err, f)
	}
	for k, i := range goodRows {
		row := got[i*D : (i+1)*D]
		if !equalBits(row, only[k*D:(k+1)*D]) {
			t.Errorf("item %d: row in the mixed batch differs from the good-only batch", i)
		}
		solo := make([]float32, D)
		if f, err := e.EmbedEncoded([][]byte{items[i].data}, solo); err != nil || f[0] != nil {
			t.Fatal(err, f)
		}
		if c := vecmath.Cosine(solo, row); c < 0.99999 {
			t.Errorf("item %d: alone vs in the batch cosine %.9f", i, c)
		}
	}
	// Arguments: more than MaxBatch, a closed engine.
	if _, err := e.EmbedEncoded(make([][]byte, 17), make([]float32, 17*D)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("17 images with MaxBatch 16: %v", err)
	}
	// The device memory of JPEG decoding: 0 without the CUDA backend, else growing with the
	// batch (the arena), never negative; a negative batch is refused.
	small, err1 := DecodeDeviceBytes(64)
	large, err2 := DecodeDeviceBytes(1024)
	if err1 != nil || err2 != nil || small < 0 || large < small {
		t.Errorf("DecodeDeviceBytes: 64 -> %d (%v), 1024 -> %d (%v)", small, err1, large, err2)
	}
	if _, err := DecodeDeviceBytes(-1); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("DecodeDeviceBytes(-1): %v", err)
	}
	e.Close()
	if _, err := e.EmbedEncoded(blobs, got); !errors.Is(err, ErrClosed) {
		t.Errorf("closed engine: %v", err)
	}
}

func allZero(v []float32) bool {
	for _, x := range v {
		if x != 0 {
			return false
		}
	}
	return true
}

func equalBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// benchPhotos makes n photo-like 1024x768 q90 JPEGs with make_images.py (skips without
// Debian's Python).
func benchPhotos(b *testing.B, n int) [][]byte {
	b.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		b.Skip("needs /usr/bin/python3 with PIL and numpy")
	}
	dir := b.TempDir()
	if out, err := exec.Command("/usr/bin/python3", "../../tests/reference/make_images.py", "bench", dir, fmt.Sprint(n)).CombinedOutput(); err != nil {
		b.Fatalf("make_images.py: %v\n%s", err, out)
	}
	paths, _ := filepath.Glob(filepath.Join(dir, "*.jpg"))
	var blobs [][]byte
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		blobs = append(blobs, data)
	}
	return blobs
}

// The CPU backend's decode path against the Go decoder + EmbedImages on the same photos
// (one thread each, the tiny model, so decoding and preprocessing dominate).
func BenchmarkEmbedEncodedCPU(b *testing.B) {
	photos := benchPhotos(b, 8)
	e, err := Open(Options{WeightsPath: writeTinyModelB(b), Backend: BackendCPU, Threads: 1, MaxBatch: len(photos)})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	out := make([]float32, len(photos)*e.Info().EmbedDim)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := e.EmbedEncoded(photos, out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(photos))/b.Elapsed().Seconds(), "images/s")
}

func BenchmarkGoDecodeThenEmbedImages(b *testing.B) {
	photos := benchPhotos(b, 8)
	e, err := Open(Options{WeightsPath: writeTinyModelB(b), Backend: BackendCPU, Threads: 1, MaxBatch: len(photos)})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	out := make([]float32, len(photos)*e.Info().EmbedDim)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		imgs := make([]Image, len(photos))
		decoded := make([]*decode.Image, len(photos))
		for k, p := range photos {
			im, err := decode.Decode(p, decode.Options{})
			if err != nil {
				b.Fatal(err)
			}
			decoded[k] = im
			imgs[k] = Image{RGB: im.RGB, Width: im.Width, Height: im.Height}
		}
		if err := e.EmbedImages(imgs, out); err != nil {
			b.Fatal(err)
		}
		for _, im := range decoded {
			im.Release()
		}
	}
	b.ReportMetric(float64(b.N*len(photos))/b.Elapsed().Seconds(), "images/s")
}
