// decode_test.go: where JPEGs are decoded (Config.Decode) and how many engines run
// (Config.Devices): the engine-decodes path, forced on the CPU backend by a test hook, and
// several CPU engines give files equal dataset by dataset to the plain CPU-decoded run, also
// after an interruption and resume; impossible settings are refused before anything starts.
package embed_test

import (
	"context"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/embed"
)

const decodeFixtures = "../internal/pipeline/decode/testdata" // made by tests/reference/make_images.py

// variedFolder fills a folder with JPEGs of every kind the decoders know (4:2:0, 4:2:2,
// 4:4:4, grayscale, CMYK, progressive, restart markers, EXIF-rotated, 1x1 and odd sizes, a
// 1024x768 photo), other formats (PNG, GIF, WebP, BMP), and bad files: a corrupt JPEG, a
// truncated one, an HTML page named .jpg and a decompression bomb. It returns the folder and
// the names of the bad files.
func variedFolder(t *testing.T) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	copyTo := func(src, name string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ents, err := os.ReadDir(decodeFixtures)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range ents {
		// Twice each, in two folders, so batches mix kinds and formats.
		copyTo(filepath.Join(decodeFixtures, e.Name()), filepath.Join("a", e.Name()))
		copyTo(filepath.Join(decodeFixtures, e.Name()), filepath.Join("b", string(rune('a'+i%26))+e.Name()))
	}
	for _, n := range []string{"img_00.jpg", "img_07.jpg", "img_24.png"} {
		copyTo(filepath.Join(imagesDir, n), n)
	}
	bad := []string{"corrupt.jpg", "truncated.jpg", "page.jpg", "bomb.png"}
	copyTo(filepath.Join(imagesDir, "corrupt.jpg"), "corrupt.jpg")
	copyTo(filepath.Join(imagesDir, "truncated.jpg"), "truncated.jpg")
	copyTo(filepath.Join(imagesDir, "page.html"), "page.jpg")
	copyTo(filepath.Join(imagesDir, "bomb.png"), "bomb.png")
	return dir, bad
}

// sameFiles runs tests/reference/compare_outputs.py: every dataset (urls, embeddings,
// widths, heights, lines, failed_*) and every attribute but the run's time and version equal.
func sameFiles(t *testing.T, what, a, b string) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("needs Debian's /usr/bin/python3 with h5py")
	}
	out, err := exec.CommandContext(testCtx(t), "/usr/bin/python3", "../tests/reference/compare_outputs.py", a, b).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: the files differ (%v):\n%s", what, err, out)
	}
	t.Logf("%s: %s", what, strings.TrimSpace(string(out)))
}

// closeFiles is sameFiles with the embeddings compared within float32 rounding of a
// different batching (the CPU backend's sums depend on how many images share a call): every
// other dataset equal, each embedding value within 1e-5 relative.
func closeFiles(t *testing.T, what, a, b string) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("needs Debian's /usr/bin/python3 with h5py")
	}
	const py = `
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
assert sorted(a) == sorted(b), (sorted(a), sorted(b))
for k in a:
    x, y = a[k][()], b[k][()]
    assert x.shape == y.shape and x.dtype == y.dtype, (k, x.shape, y.shape)
    if k == "embeddings":
        assert np.all(np.abs(x - y) <= 1e-5 * (1 + np.abs(x))), (k, float(np.abs(x - y).max()))
    else:
        assert (x == y).all() if x.dtype.kind != "O" else list(x) == list(y), k
print("close:", ", ".join(sorted(a)))
`
	out, err := exec.CommandContext(testCtx(t), "/usr/bin/python3", "-c", py, a, b).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: the files differ (%v):\n%s", what, err, out)
	}
	t.Logf("%s: %s", what, strings.TrimSpace(string(out)))
}

// failedNames are the base names of a final file's failed rows.
func failedNames(t *testing.T, path string) []string {
	var out []string
	for _, u := range readFinal(t, path).Failed {
		out = append(out, filepath.Base(u))
	}
	return out
}

// The engine-decodes path (what --decode gpu does on CUDA, forced here on the CPU backend,
// whose encoded call decodes with the same libjpeg-turbo settings as the CPU decoders) writes
// the same file as --decode cpu: every dataset byte for byte (one image per engine call, so
// the CPU backend's sums cannot differ by batching), the bad files failed alone with the
// same reasons; with batches of 4 that mix JPEGs and other formats, and interrupted and
// resumed, the same within float32 rounding.
func TestEngineDecodeEqualsCPUDecode(t *testing.T) {
	dir, bad := variedFolder(t)
	cpuCfg := config(dir, t.TempDir())
	cpuCfg.Decode = embed.DecodeCPU
	cpuCfg.BatchSize = 1
	cpu, err := embed.Run(testCtx(t), cpuCfg, embed.Events{})
	if err != nil {
		t.Fatal(err)
	}
	if got := failedNames(t, cpu.Output); strings.Join(got, ",") != strings.Join(sortedCopy(bad), ",") {
		t.Fatalf("cpu decode failed %v, want %v", got, sortedCopy(bad))
	}
	if cpu.Stages.Decode != "cpu" || cpu.Stages.EngineDecoded != 0 {
		t.Fatalf("cpu decode: stages %+v", cpu.Stages)
	}

	engCfg := config(dir, t.TempDir())
	engCfg.Hooks.EngineDecodesOnCPU = true
	engCfg.BatchSize = 1
	eng, err := embed.Run(testCtx(t), engCfg, embed.Events{})
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, "engine decode vs cpu decode", cpu.Output, eng.Output)
	// The JPEGs went to the engine; the decoders saw only the other formats.
	jpegs := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if b, _ := os.ReadFile(p); len(b) > 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF {
			jpegs++
		}
		return nil
	})
	g := eng.Stages
	if g.Decode != "engine (cpu)" || g.EngineDecoded != int64(jpegs-1) || g.EngineDecodeBusy <= 0 || g.EngineDecodeBusy > g.EngineBusy {
		// corrupt.jpg fails at its header, before the engine: jpegs-1 reach it.
		t.Fatalf("engine decode: %d JPEGs in the folder, stages %+v", jpegs, g)
	}
	if g.EngineRefused != 1 { // truncated.jpg: the engine fails it, the CPU decoder gives the reason
		t.Errorf("engine decode: %d JPEGs retried on the CPU, want 1 (truncated.jpg)", g.EngineRefused)
	}
	if g.EngineCPUDecoded != g.EngineDecoded-1 || g.EngineDeviceDecoded != 0 || g.EngineCPUFallbacks != 0 {
		t.Errorf("engine decode: the CPU backend's counters %+v: want every JPEG but the truncated one decoded by its CPU decoder", g)
	}
	if math.Abs(eng.MBytes-cpu.MBytes) > 1e-9 || eng.Rows != cpu.Rows || eng.Failures != cpu.Failures {
		t.Errorf("engine decode: %d rows %d failures %.3f MB; cpu decode %d, %d, %.3f MB", eng.Rows, eng.Failures, eng.MBytes, cpu.Rows, cpu.Failures, cpu.MBytes)
	}

	// Interrupted after a few batches, then resumed: still the same file.
	resCfg := config(dir, t.TempDir())
	resCfg.Hooks.EngineDecodesOnCPU = true
	stopCtx, stop := context.WithCancel(testCtx(t))
	resCfg.Hooks.AfterBatch = func(rows int64) {
		if rows >= 12 {
			stop()
		}
	}
	part, err := embed.Run(stopCtx, resCfg, embed.Events{})
	if !errors.Is(err, embed.ErrInterrupted) || part.Rows < 12 {
		t.Fatalf("interrupted run: %+v, %v", part, err)
	}
	resCfg.Hooks.AfterBatch = nil
	rest, err := embed.Run(testCtx(t), resCfg, embed.Events{})
	if err != nil || rest.ResumedRows < 12 || rest.ResumedRows+rest.Rows != cpu.Rows {
		t.Fatalf("resumed run: %+v, %v", rest, err)
	}
	closeFiles(t, "interrupted and resumed engine decode, batches of 4, vs cpu decode", cpu.Output, rest.Output)
}

func sortedCopy(s []string) []string {
	c := append([]string{}, s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return c
}

// Two CPU engines of one thread each (what --devices does with GPUs) behind one pipeline:
// both get batches and the file equals the one-engine run's, byte for byte with one image
// per call; with batches of 4 (composed as the engines come free), within float32 rounding.
func TestSeveralEnginesEqualOne(t *testing.T) {
	dir, _ := variedFolder(t)
	oneCfg := config(dir, t.TempDir())
	oneCfg.BatchSize = 1
	one, err := embed.Run(testCtx(t), oneCfg, embed.Events{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config(dir, t.TempDir())
	cfg.Hooks.CPUEngines = 2
	cfg.BatchSize = 1
	two, err := embed.Run(testCtx(t), cfg, embed.Events{})
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, "two engines vs one", one.Output, two.Output)
	cfg4 := config(dir, t.TempDir())
	cfg4.Hooks.CPUEngines = 2
	four, err := embed.Run(testCtx(t), cfg4, embed.Events{})
	if err != nil {
		t.Fatal(err)
	}
	closeFiles(t, "two engines, batches of 4, vs one", one.Output, four.Output)
	es := two.Stages.Engines
	if len(es) != 2 || es[0].Batches == 0 || es[1].Batches == 0 || es[0].Images+es[1].Images != two.Rows {
		t.Fatalf("engines %+v for %d rows: want both to have run batches", es, two.Rows)
	}
	if len(one.Stages.Engines) != 1 || one.Stages.Engines[0].Images != one.Rows {
		t.Fatalf("one engine: %+v", one.Stages.Engines)
	}
}

// Settings the backend cannot serve are refused before anything is created, as ErrConfig
// with a line saying why.
func TestDecodeAndDevicesRefused(t *testing.T) {
	if b, _, _, err := engine.ResolveBackend(engine.BackendAuto, 0); err == nil && b == engine.BackendCUDA {
		t.Skip("a CUDA device is here: --decode gpu and --devices 0 are valid")
	}
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		set  func(*embed.Config)
		want string
	}{
		{"gpu decode on cpu", func(c *embed.Config) { c.Backend = engine.BackendAuto; c.Decode = embed.DecodeGPU }, "--decode gpu needs the CUDA backend"},
		{"gpu decode, backend cpu", func(c *embed.Config) { c.Decode = embed.DecodeGPU }, "which this run does not use (--backend cpu was asked for)"},
		{"gpu decode, fast", func(c *embed.Config) { c.Decode = embed.DecodeGPU; c.Preprocess = embed.Fast }, "--preprocess fast"},
		{"bad decode", func(c *embed.Config) { c.Decode = "tpu" }, `--decode "tpu"`},
		{"devices twice", func(c *embed.Config) { c.Devices = []int{0, 1, 0} }, "device 0 is listed twice"},
		{"negative device", func(c *embed.Config) { c.Devices = []int{-1} }, "device -1 is negative"},
		{"device and devices", func(c *embed.Config) { c.Device, c.Devices = 1, []int{2} }, "give one of them"},
		{"devices on cpu", func(c *embed.Config) { c.Backend = engine.BackendAuto; c.Devices = []int{0, 1} }, "--devices 0,1: the cpu backend"},
		{"devices, backend cuda", func(c *embed.Config) { c.Backend = engine.BackendCUDA; c.Devices = []int{3, 1} }, "--devices 3,1: device 3: "},
	} {
		cfg := config(dir, filepath.Join(t.TempDir(), "out"))
		c.set(&cfg)
		_, err := embed.Run(testCtx(t), cfg, embed.Events{})
		if !errors.Is(err, embed.ErrConfig) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want an ErrConfig line containing %q", c.name, err, c.want)
		}
		if _, err := os.Stat(cfg.Output); err == nil {
			t.Errorf("%s: the output folder was created", c.name)
		}
	}
}
