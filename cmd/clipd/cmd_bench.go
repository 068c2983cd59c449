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
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/embed"
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
	DecodeWorkers int           // --pipeline: decoding goroutines; 0 = the memory plan's
	Preprocess    decode.Mode   // --pipeline: exact or fast JPEG decoding
	Decode        embed.Decode  // --pipeline: where JPEGs are decoded (auto, cpu, gpu)
	// EngineDecodesOnCPU is the hidden --test-engine-decodes-on-cpu: embed.Hooks'
	// EngineDecodesOnCPU, so the encoded path's cost can be measured on a CPU-only machine.
	EngineDecodesOnCPU bool
	JSON               bool
	Stdout             io.Writer
	Logger             *slog.Logger
}

func newBenchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure the engine's images/s (and decode + engine with --pipeline DIR)",
		Description: "Engine only: random preprocessed pixels (--input pixels) or random 1024x768 RGB8 images\n" +
			"(--input images, so the engine's resize/crop/normalize is timed too), for each --batch-size.\n" +
			"--pipeline DIR: `clipd embed` itself (every stage: read, decode, batch, engine, chunk files,\n" +
			"merge) on a folder holding DIR's image files over and over: one warm-up pass over the files,\n" +
			"then a run sized to last about --duration; the table gives the end-to-end images/s and where\n" +
			"the time went (decode per image, engine per batch).\n" +
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
			durationFlag("duration", []string{"d"}, 10*time.Second, "time per configuration, after a warm-up batch"),
			&cli.StringFlag{Name: "input", Value: "pixels", Usage: "engine-only input: pixels (preprocessed) or images (1024x768 RGB8)"},
			&cli.StringFlag{Name: "pipeline", Usage: "directory of image files: time decode + preprocess + engine on them"},
			&cli.IntFlag{Name: "decode-workers", Usage: "--pipeline: decoding goroutines (0: from the memory plan, as embed chooses)"},
			&cli.StringFlag{Name: "preprocess", Value: "exact", Usage: "--pipeline: exact (Pillow-identical) or fast (DCT-scaled JPEG decoding)"},
			&cli.StringFlag{Name: "decode", Value: "cpu", Usage: "--pipeline: where JPEGs are decoded: cpu, auto or gpu (as clipd embed --decode)"},
			&cli.BoolFlag{Name: "test-engine-decodes-on-cpu", Hidden: true},
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
				EngineDecodesOnCPU: cCtx.Bool("test-engine-decodes-on-cpu"),
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
			if o.Decode, err = embed.ParseDecode(cCtx.String("decode")); err != nil {
				return usageErrorf("--decode: %v", err)
			}
			if o.BatchSizes, err = parseBatchSizes(cCtx.StringSlice("batch-size")); err != nil {
				return err
			}
			if o.Duration = durationFrom(cCtx, "duration"); o.Duration > 24*time.Hour {
				return usageErrorf("--duration %v: want at most 24h", o.Duration)
			}
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
	// --pipeline only: time per stage. Decode is summed over workers (CPU time of decoding)
	// per image the CPU decoders decoded; engine busy is the share of the wall time the engine
	// was inside a call. With JPEGs decoded by the engine (Decode "gpu" or "engine (cpu)"),
	// their decoding is inside the engine's calls, so inside EngineMsPerBatch and EngineBusy;
	// EngineDecoded counts them and DecodeMsPerImage covers only the other images.
	DecodeMsPerImage float64 `json:"decode_ms_per_image,omitempty"`
	EngineMsPerBatch float64 `json:"engine_ms_per_batch,omitempty"`
	EngineBusy       float64 `json:"engine_busy,omitempty"`
	Decoders         int     `json:"decoders,omitempty"`
	Decode           string  `json:"decode,omitempty"`
	EngineDecoded    int64   `json:"engine_decoded,omitempty"`
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
	var files []string
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
	// Engine-only runs share one engine sized for the largest batch; each pipeline run opens
	// its own, as embed does, so here the model is only probed.
	var e *engine.Engine
	var info engine.ModelInfo
	name := "per run"
	if files == nil {
		if e, err = engine.Open(engine.Options{WeightsPath: p, Backend: o.Backend, Device: o.Device, MaxBatch: maxBatch, Precision: o.Precision, Threads: o.Threads}); err != nil {
			return err
		}
		defer e.Close()
		info, name = e.Info(), e.BackendName()
	} else if info, err = engine.Probe(p); err != nil {
		return err
	}
	rep := &benchReport{
		Weights: p, Engine: name, GFLOP: vitGFLOP(info), Cores: runtime.NumCPU(),
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
			r, err = benchPipeline(ctx, files, b, o, &rep.Engine)
		} else {
			r, err = benchEngine(ctx, e, b, o)
		}
		if err != nil {
			return err
		}
		if r.Seconds > 0 {
			r.GFLOPPerSec = r.ImagesPerSec * rep.GFLOP
		}
		if setup != nil {
			setup.DecodeWorkers = r.Decoders
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

// benchPipeline times `clipd embed` itself (embed.Run, every stage, the final merge) on a
// folder that holds the files of --pipeline DIR over and over (symbolic links): first one
// pass over the files as a warm-up that also measures the rate, then a run sized to last
// about o.Duration at that rate.
func benchPipeline(ctx context.Context, files []string, n int, o benchOptions, engineName *string) (benchResult, error) {
	tmp, err := os.MkdirTemp("", "clipd-bench-")
	if err != nil {
		return benchResult{}, err
	}
	defer os.RemoveAll(tmp)
	runOnce := func(name string, images int) (embed.Summary, error) {
		dir := filepath.Join(tmp, name)
		if err := linkImages(filepath.Join(dir, "in"), files, images); err != nil {
			return embed.Summary{}, err
		}
		return embed.Run(ctx, embed.Config{
			Input: filepath.Join(dir, "in"), Output: filepath.Join(dir, "out"),
			Weights: o.Weights, CacheDir: o.CacheDir, Backend: o.Backend, Device: o.Device, Threads: o.Threads,
			Precision: o.Precision, BatchSize: n, Decoders: o.DecodeWorkers, Preprocess: o.Preprocess, Version: version,
			Decode: o.Decode, Hooks: embed.Hooks{EngineDecodesOnCPU: o.EngineDecodesOnCPU},
		}, embed.Events{Started: func(s embed.Started) { *engineName = s.Backend }})
	}
	warm, err := runOnce("warm-up", max(len(files), 2*n))
	if err != nil {
		return benchResult{}, err
	}
	images := int(min(max(warm.ImagesPerSecond*o.Duration.Seconds(), float64(len(files)), float64(2*n)), maxBenchImages))
	s, err := runOnce("timed", images)
	if err != nil {
		return benchResult{}, err
	}
	g := s.Stages
	r := benchResult{
		Config: fmt.Sprintf("pipeline %s %d decoder", o.Preprocess, g.DecodeWorkers), Batch: n,
		Images: s.Rows, Seconds: s.ElapsedSeconds, ImagesPerSec: s.ImagesPerSecond, Decoders: g.DecodeWorkers,
		Decode: g.Decode, EngineDecoded: g.EngineDecoded,
	}
	if g.DecodeWorkers > 1 {
		r.Config += "s"
	}
	if g.Decode != "cpu" {
		r.Config += ", JPEGs in the engine"
	}
	if g.EngineBatches > 0 {
		r.MsPerBatch = s.ElapsedSeconds * 1000 / float64(g.EngineBatches)
		r.EngineMsPerBatch = g.EngineBusy * 1000 / float64(g.EngineBatches)
		r.EngineBusy = g.EngineBusy / s.ElapsedSeconds
	}
	if cpuDecoded := s.Rows + s.Failures - g.EngineDecoded + g.EngineRefused; cpuDecoded > 0 {
		r.DecodeMsPerImage = (g.DecodeBusy + g.EngineRefusedBusy) * 1000 / float64(cpuDecoded)
	}
	if s.Failures > 0 {
		return r, fmt.Errorf("bench: %d of %d images failed (%s)", s.Failures, s.Rows+s.Failures, formatReasons(s.FailureReasons, 3))
	}
	return r, nil
}

// maxBenchImages bounds the timed run's folder.
const maxBenchImages = 200_000

// linkImages fills dir with n symbolic links to files, round and round, named so the folder's
// order is the links' order.
func linkImages(dir string, files []string, n int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := range n {
		f := files[i%len(files)]
		if err := os.Symlink(f, filepath.Join(dir, fmt.Sprintf("%07d_%s", i, filepath.Base(f)))); err != nil {
			return err
		}
	}
	return nil
}

// loadBenchImages lists the image files of o.PipelineDir and keeps those that decode, so a
// bad file does not end the run halfway; it returns their absolute paths.
func loadBenchImages(o benchOptions) ([]string, *pipelineSetup, error) {
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
	setup := &pipelineSetup{Dir: o.PipelineDir, DecodeWorkers: o.DecodeWorkers, Preprocess: o.Preprocess.String()}
	var files []string
	for _, name := range names {
		p, err := filepath.Abs(filepath.Join(o.PipelineDir, name))
		if err != nil {
			return nil, nil, &inputError{fmt.Sprintf("--pipeline: %v", err)}
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, &inputError{fmt.Sprintf("--pipeline: %v", err)}
		}
		im, err := decode.Decode(b, decode.Options{Mode: o.Preprocess})
		if err != nil {
			o.Logger.Warn("bench: skipping a file that does not decode", "file", name, "reason", err)
			continue
		}
		im.Release()
		files = append(files, p)
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
		fmt.Fprintf(w, "input:   %d files from %s (%s), read from disk over and over by clipd embed's pipeline, %s decoding, %d decoder(s)\n",
			p.Files, p.Dir, humanBytes(p.Bytes), p.Preprocess, p.DecodeWorkers)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "config\tbatch\timages/s\tms/batch\tGFLOP/s\t")
	for _, x := range r.Results {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.1f\t%.1f\t\n", x.Config, x.Batch, x.ImagesPerSec, x.MsPerBatch, x.GFLOPPerSec)
	}
	tw.Flush()
	for _, x := range r.Results {
		if !strings.HasPrefix(x.Config, "pipeline") {
			continue
		}
		if x.EngineDecoded > 0 {
			fmt.Fprintf(w, "batch %d: %d JPEGs decoded inside the engine (%s), its calls %.1f ms/batch decode and forward together, engine busy %.0f%% of the wall time",
				x.Batch, x.EngineDecoded, x.Decode, x.EngineMsPerBatch, 100*x.EngineBusy)
			if x.DecodeMsPerImage > 0 {
				fmt.Fprintf(w, "; CPU decode %.2f ms/image for the other images", x.DecodeMsPerImage)
			}
			fmt.Fprintln(w)
			continue
		}
		fmt.Fprintf(w, "batch %d: decode %.2f ms/image (summed over workers), engine %.1f ms/batch, engine busy %.0f%% of the wall time\n",
			x.Batch, x.DecodeMsPerImage, x.EngineMsPerBatch, 100*x.EngineBusy)
	}
}
