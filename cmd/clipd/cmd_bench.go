// cmd_bench.go: `clipd bench`: the engine's images/s on synthetic input (preprocessed pixels,
// or 1024x768 RGB8 images so the engine's preprocessing is timed too) for one or more batch
// sizes, and with --pipeline DIR the decode + preprocess + engine throughput on local files,
// with the time each stage took. A table, or --json.
package main

import (
	"context"
	"encoding/json"

	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/internal/pipeline/decode"
	"github.com/clipd/clipd/weights"
)

// benchOptions are the settings of `clipd bench`.
type benchOptions struct {
	Weights       string // a file, a directory, or a cached name ("" = weights.DefaultModel)
	CacheDir      string
	Backend       engine.Backend
	Device        int
	BatchSizes    []int
	Precision     engine.Precision
	Threads       int           // CPU backend threads; 0 = all cores
	Duration      time.Duration // timed per configuration, after one warm-up batch
	Input         string        // "pixels" or "images" (engine-only runs)
	PipelineDir   string        // decode + engine on the image files here instead
	DecodeWorkers int           // --pipeline: decoding goroutines
	Preprocess    decode.Mode   // --pipeline: exact or fast JPEG decoding
	JSON          bool
	Stdout        io.Writer
	Logger        *slog.Logger
}

func newBenchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure the engine's images/s (and decode + engine with --pipeline DIR)",
		Description: "Engine only: random preprocessed pixels (--input pixels) or random 1024x768 RGB8 images\n" +
			"(--input images, so the engine's resize/crop/normalize is timed too), for each --batch-size.\n" +
			"--pipeline DIR: the image files in DIR (read into memory once) are decoded by --decode-workers\n" +
			"goroutines feeding batches to the engine, round and round, for --duration; the table then\n" +
			"gives the end-to-end images/s and where the time went (decode per image, engine per batch).\n" +
			"GFLOP/s counts the ViT's multiply-adds for the loaded model's shapes (8.82 GFLOP per\n" +
			"B/32 image) and leaves preprocessing out.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "weights", Aliases: []string{"w"}, Usage: "weights: a .safetensors file, a directory, or a name in the cache (default " + weights.DefaultModel + ")"},
			cacheDirFlag(),
			&cli.StringFlag{Name: "backend", Value: "auto", Usage: "auto, cpu or cuda"},
			&cli.IntFlag{Name: "device", Usage: "CUDA device ordinal"},
			&cli.StringSliceFlag{Name: "batch-size", Aliases: []string{"b"}, Value: cli.NewStringSlice("8", "32"), Usage: "images per engine call; repeat the flag or give a comma list (8,32)"},
			&cli.StringFlag{Name: "precision", Value: "auto", Usage: "auto, fp32, fp16 or bf16 (auto: fp16 on CUDA, fp32 on the CPU)"},
			&cli.IntFlag{Name: "threads", Usage: "CPU backend threads (0: all cores)"},
			&cli.Float64Flag{Name: "duration", Aliases: []string{"d"}, Value: 10, Usage: "seconds timed per configuration, after a warm-up batch"},
			&cli.StringFlag{Name: "input", Value: "pixels", Usage: "engine-only input: pixels (preprocessed) or images (1024x768 RGB8)"},
			&cli.StringFlag{Name: "pipeline", Usage: "directory of image files: time decode + preprocess + engine on them"},
			&cli.IntFlag{Name: "decode-workers", Value: 1, Usage: "--pipeline: decoding goroutines"},
			&cli.StringFlag{Name: "preprocess", Value: "exact", Usage: "--pipeline: exact (Pillow-identical) or fast (DCT-scaled JPEG decoding)"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: func(cCtx *cli.Context) error {
			if err := checkArgs(cCtx, 0, 0); err != nil {
				return err
			}
			g := globalsFrom(cCtx)
			o := benchOptions{
				Weights: cCtx.String("weights"), CacheDir: cCtx.String("cache-dir"), Device: cCtx.Int("device"),
				Threads: cCtx.Int("threads"), Input: cCtx.String("input"), PipelineDir: cCtx.String("pipeline"),
				DecodeWorkers: cCtx.Int("decode-workers"), JSON: cCtx.Bool("json"), Stdout: g.stdout, Logger: g.logger,
			}
			var err error
			if o.Backend, err = engine.ParseBackend(cCtx.String("backend")); err != nil {
				return usageErrorf("--backend: %v", err)
			}
			if o.Precision, err = parsePrecision(cCtx.String("precision")); err != nil {
				return err
			}
			if o.Preprocess, err = decode.ParseMode(cCtx.String("preprocess")); err != nil {
				return usageErrorf("--preprocess: %v", err)
			}
			if o.BatchSizes, err = parseBatchSizes(cCtx.StringSlice("batch-size")); err != nil {
				return err
			}
			d := cCtx.Float64("duration")
			if !(d > 0) || d > 24*3600 {
				return usageErrorf("--duration %g: want seconds, more than 0", d)
			}
			o.Duration = time.Duration(d * float64(time.Second))
			return runBench(cCtx.Context, o)
		},
	}
}

func parsePrecision(s string) (engine.Precision, error) {
	switch strings.ToLower(s) {
	case "auto", "":
		return engine.PrecisionAuto, nil
	case "fp32", "f32", "float32":
		return engine.PrecisionFP32, nil
	case "fp16", "f16", "float16":
		return engine.PrecisionFP16, nil
	case "bf16", "bfloat16":
		return engine.PrecisionBF16, nil
	}
	return 0, usageErrorf("--precision %q: want auto, fp32, fp16 or bf16", s)
}

// parseBatchSizes reads the repeated or comma-separated --batch-size values.
func parseBatchSizes(vals []string) ([]int, error) {
	var out []int
	for _, v := range vals {
		for _, f := range strings.Split(v, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 || n > 65536 {
				return nil, usageErrorf("--batch-size %q: want whole numbers from 1, e.g. 8,32", f)
			}
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, usageErrorf("--batch-size: give at least one size")
	}
	return out, nil
}

// benchReport is what `clipd bench --json` prints.
type benchReport struct {
	Weights   string         `json:"weights"`
	Engine    string         `json:"engine"` // the engine's backend name
	Model     modelConfig    `json:"model"`
	GFLOP     float64        `json:"gflop_per_image"`
	Cores     int            `json:"cores"`
	LoadAvg   string         `json:"load_average,omitempty"` // /proc/loadavg's 1, 5, 15 minute loads at the start
	Results   []benchResult  `json:"results"`
	Pipeline  *pipelineSetup `json:"pipeline,omitempty"`
	StartedAt time.Time      `json:"started_at"`
}

type pipelineSetup struct {
	Dir           string `json:"dir"`
	Files         int    `json:"files"`
	Bytes         int64  `json:"bytes"`
	DecodeWorkers int    `json:"decode_workers"`
	Preprocess    string `json:"preprocess"`
}

// benchResult is one configuration's measurement.
type benchResult struct {
	Config       string  `json:"config"` // "pixels", "images" or "pipeline exact 2 workers"
	Batch        int     `json:"batch"`
	Images       int64   `json:"images"`
	Seconds      float64 `json:"seconds"`
	ImagesPerSec float64 `json:"images_per_s"`
	MsPerBatch   float64 `json:"ms_per_batch"` // wall time per batch (engine-only: the engine call)
	GFLOPPerSec  float64 `json:"gflop_per_s"`
	// --pipeline only: time per stage. Decode is summed over workers (CPU time of decoding);
	// engine busy is the share of the wall time the engine was inside a call.
	DecodeMsPerImage float64 `json:"decode_ms_per_image,omitempty"`
	EngineMsPerBatch float64 `json:"engine_ms_per_batch,omitempty"`
	EngineBusy       float64 `json:"engine_busy,omitempty"`
}

// runBench opens the engine once (sized for the largest batch) and measures each batch size.
func runBench(ctx context.Context, o benchOptions) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if len(o.BatchSizes) == 0 {
		o.BatchSizes = []int{8}
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Input == "" {
		o.Input = "pixels"
	}
	if o.Input != "pixels" && o.Input != "images" {
		return usageErrorf("--input %q: want pixels or images", o.Input)
	}
	p, err := weights.Resolve(o.Weights, o.CacheDir)
	if err != nil {
		return err
	}
	var files [][]byte
	var setup *pipelineSetup
	if o.PipelineDir != "" {
		if files, setup, err = loadBenchImages(o); err != nil {
			return err
		}
	}
	maxBatch := 0
	for _, b := range o.BatchSizes {
		maxBatch = max(maxBatch, b)
	}
	e, err := engine.Open(engine.Options{WeightsPath: p, Backend: o.Backend, Device: o.Device, MaxBatch: maxBatch, Precision: o.Precision, Threads: o.Threads})
	if err != nil {
		return err
	}
	defer e.Close()
	info := e.Info()
	rep := &benchReport{
		Weights: p, Engine: e.BackendName(), GFLOP: vitGFLOP(info), Cores: runtime.NumCPU(),
		LoadAvg: loadAverage(), Pipeline: setup, StartedAt: time.Now().UTC().Truncate(time.Second),
		Model: modelConfig{
			ImageSize: info.ImageSize, PatchSize: info.PatchSize, Width: info.Width, Layers: info.Layers,
			Heads: info.Heads, MLPWidth: info.MLPWidth, EmbedDim: info.EmbedDim, GELU: "erf",
		},
	}
	if info.QuickGELU {
		rep.Model.GELU = "quick"
	}
	o.Logger.Info("bench", "engine", rep.Engine, "weights", p, "load_average", rep.LoadAvg)
	for _, b := range o.BatchSizes {
		var r benchResult
		if files != nil {
			r, err = benchPipeline(ctx, e, files, b, o)
		} else {
			r, err = benchEngine(ctx, e, b, o)
		}
		if err != nil {
			return err
		}
		if r.Seconds > 0 {
			r.GFLOPPerSec = r.ImagesPerSec * rep.GFLOP
		}
		rep.Results = append(rep.Results, r)
	}
	if o.JSON {
		enc := json.NewEncoder(o.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printBench(o.Stdout, rep)
	return nil
}

// benchEngine times EmbedPixels or EmbedImages on random input of batch n.
func benchEngine(ctx context.Context, e *engine.Engine, n int, o benchOptions) (benchResult, error) {
	info := e.Info()
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	out := make([]float32, n*info.EmbedDim)
	var call func() error
	if o.Input == "images" {
		const w, h = 1024, 768
		images := make([]engine.Image, n)
		for i := range images {
			rgb := make([]byte, w*h*3)
			for j := range rgb {
				rgb[j] = byte(rng.Uint32())
			}
			images[i] = engine.Image{RGB: rgb, Width: w, Height: h}
		}
		call = func() error { return e.EmbedImages(images, out) }
	} else {
		s := info.ImageSize
		pixels := make([]float32, n*3*s*s)
		for j := range pixels {
			pixels[j] = float32(rng.NormFloat64()) // about what CLIP's normalization gives
		}
		call = func() error { return e.EmbedPixels(pixels, n, out) }
	}
	if err := call(); err != nil { // warm-up: first-touch of scratch, kernel selection
		return benchResult{}, err
	}
	var batches int64
	start := time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return benchResult{}, err
		}
		if err := call(); err != nil {
			return benchResult{}, err
		}
		batches++
		if time.Since(start) >= o.Duration {
			break
		}
	}
	secs := time.Since(start).Seconds()
	return benchResult{
		Config: o.Input, Batch: n, Images: batches * int64(n), Seconds: secs,
		ImagesPerSec: float64(batches*int64(n)) / secs, MsPerBatch: secs * 1000 / float64(batches),
	}, nil
}

// benchFile is one encoded image on its way through the decode stage; the stage's bytesOf and
// done hooks bracket the decode, which times it.
type benchFile struct {
	data  []byte
	start time.Time
}

// benchPipeline runs decode workers on files, round and round, feeding batches of n to the
// engine; it times from the end of a warm-up batch for o.Duration.
func benchPipeline(ctx context.Context, e *engine.Engine, files [][]byte, n int, o benchOptions) (benchResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := max(o.DecodeWorkers, 1)
	in := make(chan *benchFile, workers)
	go func() {
		defer close(in)
		for i := 0; ; i++ {
			select {
			case in <- &benchFile{data: files[i%len(files)]}:
			case <-ctx.Done():
				return
			}
		}
	}()
	var decodeNanos, decoded atomic.Int64
	timing := atomic.Bool{} // decode time counts only inside the timed window
	bytesOf := func(f *benchFile) []byte { f.start = time.Now(); return f.data }
	done := func(f *benchFile) {
		if timing.Load() {
			decodeNanos.Add(int64(time.Since(f.start)))
			decoded.Add(1)
		}
	}
	results := decode.Run(ctx, in, workers, decode.Options{Mode: o.Preprocess}, bytesOf, done)
	var drain sync.WaitGroup
	defer func() {
		cancel()
		drain.Add(1)
		go func() { // release whatever is still in flight
			defer drain.Done()
			for r := range results {
				r.Image.Release()
			}
		}()
		drain.Wait()
	}()

	out := make([]float32, n*e.Info().EmbedDim)
	batch := make([]*decode.Image, 0, n)
	images := make([]engine.Image, n)
	var engineTime time.Duration
	var batches int64
	var start time.Time
	for warm := true; ; {
		batch = batch[:0]
		for len(batch) < n {
			select {
			case r, ok := <-results:
				if !ok {
					return benchResult{}, ctx.Err()
				}
				if r.Err != nil {
					return benchResult{}, fmt.Errorf("bench: decoding failed: %w", r.Err)
				}
				batch = append(batch, r.Image)
			case <-ctx.Done():
				return benchResult{}, ctx.Err()
			}
		}
		for i, im := range batch {
			images[i] = engine.Image{RGB: im.RGB, Width: im.Width, Height: im.Height}
		}
		t0 := time.Now()
		err := e.EmbedImages(images, out)
		dt := time.Since(t0)
		for _, im := range batch {
			im.Release()
		}
		if err != nil {
			return benchResult{}, err
		}
		if warm {
			warm = false
			start = time.Now()
			timing.Store(true)
			continue
		}
		engineTime += dt
		batches++
		if time.Since(start) >= o.Duration {
			break
		}
	}
	timing.Store(false)
	secs := time.Since(start).Seconds()
	imgs := batches * int64(n)
	r := benchResult{
		Config: fmt.Sprintf("pipeline %s %d worker", o.Preprocess, workers), Batch: n, Images: imgs, Seconds: secs,
		ImagesPerSec: float64(imgs) / secs, MsPerBatch: secs * 1000 / float64(batches),
		EngineMsPerBatch: engineTime.Seconds() * 1000 / float64(batches), EngineBusy: engineTime.Seconds() / secs,
	}
	if workers > 1 {
		r.Config += "s"
	}
	if d := decoded.Load(); d > 0 {
		r.DecodeMsPerImage = float64(decodeNanos.Load()) / 1e6 / float64(d)
	}
	return r, nil
}

// loadBenchImages reads the image files of o.PipelineDir into memory and keeps those that
// decode, so a bad file does not end the run halfway.
func loadBenchImages(o benchOptions) ([][]byte, *pipelineSetup, error) {
	entries, err := os.ReadDir(o.PipelineDir)
	if err != nil {
		return nil, nil, &inputError{fmt.Sprintf("--pipeline: cannot read the directory: %v", err)}
	}
	var names []string
	for _, en := range entries {
		switch strings.ToLower(filepath.Ext(en.Name())) {
		case ".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp":
			if en.Type().IsRegular() {
				names = append(names, en.Name())
			}
		}
	}
	sort.Strings(names)
	setup := &pipelineSetup{Dir: o.PipelineDir, DecodeWorkers: max(o.DecodeWorkers, 1), Preprocess: o.Preprocess.String()}
	var files [][]byte
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(o.PipelineDir, name))
		if err != nil {
			return nil, nil, &inputError{fmt.Sprintf("--pipeline: %v", err)}
		}
		im, err := decode.Decode(b, decode.Options{Mode: o.Preprocess})
		if err != nil {
			o.Logger.Warn("bench: skipping a file that does not decode", "file", name, "reason", err)
			continue
		}
		im.Release()
		files = append(files, b)
		setup.Bytes += int64(len(b))
	}
	if len(files) == 0 {
		return nil, nil, &inputError{fmt.Sprintf("--pipeline %s: no decodable .jpg/.png/.gif/.webp/.bmp files there", o.PipelineDir)}
	}
	setup.Files = len(files)
	return files, setup, nil
}

// inputError is a bad --pipeline directory (exit code: bad input).
type inputError struct{ msg string }

func (e *inputError) Error() string        { return e.msg }
func (e *inputError) Is(target error) bool { return target == weights.ErrMissing }

// vitGFLOP is the forward pass's floating-point operations per image (2 per multiply-add) for
// the model's shapes: patch embedding, per layer QKV, attention (QK^T and AV), output
// projection and the MLP, and the final projection. ViT-B/32: 8.82 GFLOP, the figure
// open_clip's model profile gives.
func vitGFLOP(m engine.ModelInfo) float64 {
	if m.PatchSize <= 0 {
		return 0
	}
	grid := float64(m.ImageSize / m.PatchSize)
	t, w, mlp := grid*grid+1, float64(m.Width), float64(m.MLPWidth)
	patch := 2 * grid * grid * 3 * float64(m.PatchSize*m.PatchSize) * w
	layer := 2*t*w*3*w + 2*2*t*t*w + 2*t*w*w + 2*2*t*w*mlp
	return (patch + float64(m.Layers)*layer + 2*w*float64(m.EmbedDim)) / 1e9
}

// loadAverage is /proc/loadavg's first three fields, "" where there is none.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func printBench(w io.Writer, r *benchReport) {
	m := r.Model
	fmt.Fprintf(w, "weights: %s (image %d, patch %d, width %d, layers %d, embed %d; %.3g GFLOP/image)\n",
		r.Weights, m.ImageSize, m.PatchSize, m.Width, m.Layers, m.EmbedDim, r.GFLOP)
	fmt.Fprintf(w, "engine:  %s\n", r.Engine)
	load := r.LoadAvg
	if load == "" {
		load = "unknown"
	}
	fmt.Fprintf(w, "machine: %d cores, load average %s at the start\n", r.Cores, load)
	if p := r.Pipeline; p != nil {
		fmt.Fprintf(w, "input:   %d files from %s (%s, in memory), %s decoding, %d worker(s)\n",
			p.Files, p.Dir, humanBytes(p.Bytes), p.Preprocess, p.DecodeWorkers)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "config\tbatch\timages/s\tms/batch\tGFLOP/s\t")
	for _, x := range r.Results {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.1f\t%.1f\t\n", x.Config, x.Batch, x.ImagesPerSec, x.MsPerBatch, x.GFLOPPerSec)
	}
	tw.Flush()
	for _, x := range r.Results {
		if strings.HasPrefix(x.Config, "pipeline") {
			fmt.Fprintf(w, "batch %d: decode %.2f ms/image (summed over workers), engine %.1f ms/batch, engine busy %.0f%% of the wall time\n",
				x.Batch, x.DecodeMsPerImage, x.EngineMsPerBatch, 100*x.EngineBusy)
		}
	}
}
