// cmd_embed.go: `clipd embed`, the main job: URLs from a source are fetched, decoded, embedded
// in batches and written to HDF5 chunk files by overlapping stages joined by bounded channels;
// a rerun resumes where a killed or interrupted run stopped, and the end of the input merges
// the chunks into OUTPUT/Images_Embedded.h5.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/internal/pipeline/batch"
	"github.com/clipd/clipd/internal/pipeline/decode"
	"github.com/clipd/clipd/internal/pipeline/fetch"
	"github.com/clipd/clipd/internal/pipeline/item"
	"github.com/clipd/clipd/internal/pipeline/plan"
	"github.com/clipd/clipd/internal/pipeline/sink"
	"github.com/clipd/clipd/internal/pipeline/source"
	"github.com/clipd/clipd/weights"
)

// defaultInput is what `clipd embed` reads when --input is not given.
const defaultInput = "openimages:validation"

// embedOptions are the settings of one `clipd embed` run; tests fill them directly.
type embedOptions struct {
	Input      string
	Weights    string // a path, hub name or URL for weights.Resolve; "" = the default model in the cache
	CacheDir   string
	Output     string
	Limit      int64
	Shard      source.Shard
	ShardFrom  string // where Shard came from, for the log: "--shard", "JOB_COMPLETION_INDEX", ...
	URLColumn  string
	URLKind    source.URLKind // "" = the source's default
	Backend    engine.Backend
	Device     int
	Threads    int // CPU backend threads; 0 = all cores
	BatchSize  int // 0 = from the plan
	ChunkSize  int // 0 = from the plan
	Conns      int // 0 = from the plan
	Timeout    time.Duration
	Retries    int // retries of a failed URL; 0 = fetch's default, negative = none
	Preprocess decode.Mode
	Dtype      string // "float32" or "float16"
	Normalize  bool
	NoResume   bool
	Memory     int64 // bytes; 0 = the plan's default share of available memory

	Quiet    bool
	JSON     bool // write the stats JSON beside the output
	TTY      bool // stderr is a terminal: draw a live line
	Logger   *slog.Logger
	Stdout   io.Writer
	Stderr   io.Writer
	LogEvery time.Duration // progress log interval without a terminal; 0 = 10 s

	// afterBatch, when set, is called (from the writer goroutine) after each batch's rows have
	// been handed to the sink, with the rows this run has handed over; tests use it to
	// interrupt a run at a chosen point.
	afterBatch func(rowsAdded int64)
}

func newEmbedCommand() *cli.Command {
	return &cli.Command{
		Name:  "embed",
		Usage: "download images from a list of URLs and write their CLIP embeddings to HDF5",
		Description: "Fetches every URL of --input, decodes it, embeds it with the model of --weights and writes\n" +
			"OUTPUT/Images_Embedded_<k>.h5 chunk files as it goes; at the end of the input the chunks are\n" +
			"merged into OUTPUT/Images_Embedded.h5 (urls, embeddings, image_ids, failed_urls,\n" +
			"failed_reasons). Rerunning the same command after an interruption or a crash resumes it:\n" +
			"no URL is embedded twice and none is lost. Ctrl-C stops cleanly (press it twice to stop at\n" +
			"once). URLs that fail (404, timeouts, corrupt images, ...) are listed with their reason and\n" +
			"do not make the run fail.\n\n" +
			"--input is a file of URLs (text, CSV or TSV, optionally gzipped), an http(s) URL of one,\n" +
			"- for stdin, or openimages:SPLIT (train, train-boxable, validation, test, all).\n" +
			"--shard i/n takes a deterministic 1/n of the input; without it, a Kubernetes Indexed Job's\n" +
			"JOB_COMPLETION_INDEX (with --shard-count or CLIPD_SHARD_COUNT) or a Slurm array's\n" +
			"SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT choose the shard.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Value: defaultInput, Usage: "URL list: a path, an http(s) URL, - (stdin) or openimages:SPLIT"},
			&cli.StringFlag{Name: "weights", Aliases: []string{"w"}, Usage: "safetensors file or directory, or a hub name in the cache (default " + weights.DefaultModel + " from the cache; see \"clipd weights fetch\")"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "OUTPUT", Usage: "output directory"},
			&cli.Int64Flag{Name: "limit", Usage: "embed at most this many URLs (of the shard); 0 for all"},
			&cli.StringFlag{Name: "shard", Usage: "i/n: process only shard i (0-based) of n"},
			&cli.IntFlag{Name: "shard-count", EnvVars: []string{"CLIPD_SHARD_COUNT"}, Usage: "the number of shards when the index comes from JOB_COMPLETION_INDEX"},
			&cli.StringFlag{Name: "backend", Value: "auto", Usage: "auto, cpu or cuda"},
			&cli.IntFlag{Name: "device", Usage: "CUDA device ordinal"},
			&cli.IntFlag{Name: "threads", Usage: "CPU backend threads (0: all cores)"},
			&cli.IntFlag{Name: "batch-size", Usage: "images per engine call (default: from the memory plan)"},
			&cli.IntFlag{Name: "chunk-size", Usage: "URLs per chunk file (default: from the memory plan)"},
			&cli.IntFlag{Name: "connections", Usage: "downloads in flight at once (default: from the memory plan)"},
			&cli.DurationFlag{Name: "timeout", Value: fetch.DefaultTimeout, Usage: "most time one URL may take, retries included"},
			&cli.IntFlag{Name: "retries", Value: fetch.DefaultRetries, Usage: "retries of a URL after timeouts, connection errors, 429 and 5xx; 0 for none"},
			&cli.StringFlag{Name: "preprocess", Value: "exact", Usage: "exact (Pillow-exact JPEG decoding) or fast (DCT-scaled JPEG decoding, not bit-exact)"},
			&cli.StringFlag{Name: "dtype", Value: "float32", Usage: "embeddings in the file: float32 or float16"},
			&cli.BoolFlag{Name: "normalize", Usage: "L2-normalise the embeddings (off: they equal model.encode_image)"},
			&cli.BoolFlag{Name: "no-resume", Usage: "start over: remove the chunks of an earlier run in --output"},
			&cli.StringFlag{Name: "memory", Usage: "memory budget, e.g. 8GiB or 50% of available (default: a safe share of available memory)"},
			&cli.StringFlag{Name: "url-column", Usage: "CSV/TSV: the column holding the URLs (default url, OriginalURL or Thumbnail300KURL)"},
			&cli.StringFlag{Name: "url-kind", Usage: "openimages inputs: original, thumbnail or mirror (the CVDF S3 mirror)"},
			&cli.BoolFlag{Name: "json", Usage: "also write the run's statistics to OUTPUT/Images_Embedded.stats.json"},
			cacheDirFlag(),
		},
		Action: func(cCtx *cli.Context) error {
			if err := checkArgs(cCtx, 0, 0); err != nil {
				return err
			}
			g := globalsFrom(cCtx)
			o, err := embedOptionsFrom(cCtx, g, os.Getenv)
			if err != nil {
				return err
			}
			stop := exitOnSecondSignal(g.stderr)
			defer stop()
			return runEmbed(cCtx.Context, o)
		},
	}
}

// embedOptionsFrom reads and checks the flags; getenv supplies the scheduler's variables.
func embedOptionsFrom(cCtx *cli.Context, g globals, getenv func(string) string) (embedOptions, error) {
	o := embedOptions{
		Input:     cCtx.String("input"),
		Weights:   cCtx.String("weights"),
		CacheDir:  cCtx.String("cache-dir"),
		Output:    cCtx.String("output"),
		Limit:     cCtx.Int64("limit"),
		URLColumn: cCtx.String("url-column"),
		URLKind:   source.URLKind(cCtx.String("url-kind")),
		Device:    cCtx.Int("device"),
		Threads:   cCtx.Int("threads"),
		BatchSize: cCtx.Int("batch-size"),
		ChunkSize: cCtx.Int("chunk-size"),
		Conns:     cCtx.Int("connections"),
		Timeout:   cCtx.Duration("timeout"),
		Dtype:     cCtx.String("dtype"),
		Normalize: cCtx.Bool("normalize"),
		NoResume:  cCtx.Bool("no-resume"),
		JSON:      cCtx.Bool("json"),
		Quiet:     g.quiet,
		TTY:       g.tty,
		Logger:    g.logger,
		Stdout:    g.stdout,
		Stderr:    g.stderr,
	}
	var err error
	if o.Backend, err = engine.ParseBackend(cCtx.String("backend")); err != nil {
		return o, usageErrorf("--backend: %v", err)
	}
	if o.Preprocess, err = decode.ParseMode(cCtx.String("preprocess")); err != nil {
		return o, usageErrorf("--preprocess: %v", err)
	}
	switch r := cCtx.Int("retries"); {
	case r < 0:
		return o, usageErrorf("--retries %d: want 0 or more", r)
	case r == 0:
		o.Retries = -1
	default:
		o.Retries = r
	}
	if s := cCtx.String("memory"); s != "" {
		avail, _, _ := plan.Available()
		if o.Memory, err = plan.ParseMemory(s, avail); err != nil {
			return o, usageErrorf("--memory: %v", err)
		}
	}
	o.Shard, o.ShardFrom, err = resolveShard(cCtx.String("shard"), cCtx.Int("shard-count"), getenv)
	if err != nil {
		return o, err
	}
	return o, o.check()
}

// check rejects impossible settings with a usage error.
func (o *embedOptions) check() error {
	switch {
	case o.Input == "":
		return usageErrorf("--input is empty: give a file of URLs, an http(s) URL, - or openimages:SPLIT")
	case o.Output == "":
		return usageErrorf("--output is empty: give a directory")
	case o.Limit < 0:
		return usageErrorf("--limit %d: want 0 (no limit) or more", o.Limit)
	case o.BatchSize < 0 || o.ChunkSize < 0 || o.Conns < 0 || o.Threads < 0 || o.Device < 0:
		return usageErrorf("--batch-size, --chunk-size, --connections, --threads and --device must not be negative")
	case o.Timeout < 0:
		return usageErrorf("--timeout %v: want a positive duration such as 30s", o.Timeout)
	case o.Dtype != "float32" && o.Dtype != "float16":
		return usageErrorf("--dtype %q: want float32 or float16", o.Dtype)
	}
	switch o.URLKind {
	case "", source.OriginalURL, source.ThumbnailURL, source.MirrorURL:
	default:
		return usageErrorf("--url-kind %q: want original, thumbnail or mirror", o.URLKind)
	}
	if o.URLKind != "" && o.URLKind != source.OriginalURL && !strings.HasPrefix(strings.ToLower(o.Input), "openimages:") {
		return usageErrorf("--url-kind %s applies only to openimages:SPLIT inputs", o.URLKind)
	}
	return nil
}

// resolveShard picks the shard: --shard wins; else a Kubernetes Indexed Job's
// JOB_COMPLETION_INDEX with count (--shard-count / CLIPD_SHARD_COUNT); else a Slurm array's
// SLURM_ARRAY_TASK_ID (minus SLURM_ARRAY_TASK_MIN) of SLURM_ARRAY_TASK_COUNT. It says which.
func resolveShard(flag string, count int, getenv func(string) string) (source.Shard, string, error) {
	if flag != "" {
		s, err := source.ParseShard(flag)
		if err != nil {
			return s, "", usageErrorf("--shard: %v", err)
		}
		return s, "--shard", nil
	}
	if idx := getenv("JOB_COMPLETION_INDEX"); idx != "" {
		if count <= 0 {
			return source.Shard{}, "", usageErrorf("JOB_COMPLETION_INDEX=%s is set but the number of shards is not: pass --shard-count N or set CLIPD_SHARD_COUNT (the Job's completions)", idx)
		}
		s, err := source.ParseShard(idx + "/" + strconv.Itoa(count))
		if err != nil {
			return s, "", usageErrorf("JOB_COMPLETION_INDEX with --shard-count: %v", err)
		}
		return s, "JOB_COMPLETION_INDEX", nil
	}
	if id := getenv("SLURM_ARRAY_TASK_ID"); id != "" {
		n := getenv("SLURM_ARRAY_TASK_COUNT")
		if n == "" {
			return source.Shard{}, "", usageErrorf("SLURM_ARRAY_TASK_ID=%s is set without SLURM_ARRAY_TASK_COUNT; pass --shard i/n", id)
		}
		i, err := strconv.Atoi(id)
		if err != nil {
			return source.Shard{}, "", usageErrorf("SLURM_ARRAY_TASK_ID=%q is not a number; pass --shard i/n", id)
		}
		if m := getenv("SLURM_ARRAY_TASK_MIN"); m != "" {
			if lo, err := strconv.Atoi(m); err == nil {
				i -= lo
			}
		}
		s, err := source.ParseShard(strconv.Itoa(i) + "/" + n)
		if err != nil {
			return s, "", usageErrorf("Slurm array task: %v (arrays must be contiguous, e.g. --array=0-%s); or pass --shard i/n", err, n)
		}
		return s, "SLURM_ARRAY_TASK_ID", nil
	}
	return source.Shard{}, "", nil
}

// exitOnSecondSignal makes a second Ctrl-C (or SIGTERM) end the process at once; the first
// one cancels the run's context (main's signal.NotifyContext) and lets it finish cleanly.
// Chunk files are written to a temporary name and renamed, so what is on disk stays valid.
func exitOnSecondSignal(stderr io.Writer) (stop func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		n := 0
		for {
			select {
			case <-done:
				return
			case <-sigs:
				n++
				if n == 1 {
					fmt.Fprintln(stderr, "\nclipd: stopping: finishing the work in flight and writing the chunk (press Ctrl-C again to quit at once)")
					continue
				}
				fmt.Fprintln(stderr, "\nclipd: quit at once; the chunks on disk are intact: rerun the same command to resume")
				os.Exit(exitInterrupted)
			}
		}
	}()
	return func() { signal.Stop(sigs); close(done) }
}

// runEmbed runs one `clipd embed`.
func runEmbed(ctx context.Context, o embedOptions) error {
	if err := o.check(); err != nil {
		return err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	log := o.Logger
	started := time.Now()

	// Weights, before anything is downloaded or created.
	wpath, err := weights.Resolve(o.Weights, o.CacheDir)
	if err != nil {
		return err
	}
	wfile, err := weights.WeightsFile(wpath)
	if err != nil {
		return err
	}
	dims, err := modelDims(wfile)
	if err != nil {
		return err
	}

	// The memory plan, then the engine with the plan's batch size. With --backend auto the
	// plan is made for the CPU first and remade if the engine turns out to run on CUDA.
	in := plan.Inputs{
		MemoryBudget:  o.Memory,
		EmbedDim:      dims.embedDim,
		ImageSize:     dims.imageSize,
		WeightsParams: dims.params,
		Backend:       backendName(o.Backend),
		BatchSize:     o.BatchSize,
		ChunkSize:     o.ChunkSize,
		Connections:   o.Conns,
	}
	p, err := plan.Make(in)
	if err != nil {
		return usageErrorf("memory plan: %v", err)
	}
	eng, err := engine.Open(engine.Options{WeightsPath: wpath, Backend: o.Backend, Device: o.Device, MaxBatch: p.BatchSize, Threads: o.Threads})
	if err != nil {
		return fmt.Errorf("weights %s: %w", wpath, err)
	}
	if o.Backend == engine.BackendAuto && strings.HasPrefix(eng.BackendName(), "cuda") {
		in.Backend = eng.BackendName()
		if p, err = plan.Make(in); err != nil {
			eng.Close()
			return usageErrorf("memory plan: %v", err)
		}
		eng.Close()
		if eng, err = engine.Open(engine.Options{WeightsPath: wpath, Backend: engine.BackendCUDA, Device: o.Device, MaxBatch: p.BatchSize, Threads: o.Threads}); err != nil {
			return fmt.Errorf("weights %s: %w", wpath, err)
		}
	}
	defer eng.Close()
	info := eng.Info()
	if o.ShardFrom != "" {
		log.Info("shard", "shard", o.Shard.String(), "from", o.ShardFrom)
	}
	if !o.Quiet {
		fmt.Fprintf(o.Stderr, "plan:\n%s\n", indent(p.String()))
	}
	log.Info("engine", "backend", eng.BackendName(), "image_size", info.ImageSize, "embed_dim", info.EmbedDim)

	sum, err := weightsSHA256(wfile)
	if err != nil {
		return err
	}

	// The source: a bad path, URL or header fails here.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	src, err := source.Open(runCtx, o.Input, source.Options{
		URLColumn:     o.URLColumn,
		Limit:         o.Limit,
		Shard:         o.Shard,
		OpenImagesURL: o.URLKind,
		CacheDir:      o.CacheDir,
	})
	if err != nil {
		if ctx.Err() != nil {
			return interrupted(0)
		}
		return withExitCode(exitInput, err)
	}
	defer src.Close()

	attrs := sink.Attrs{
		Model:         modelName(wpath),
		WeightsSHA256: sum,
		Preprocess:    o.Preprocess.String(),
		Version:       version,
		Input:         o.Input,
		EmbedDim:      info.EmbedDim,
		Normalized:    o.Normalize,
		Dtype:         o.Dtype,
	}
	w, err := sink.Open(sink.Options{
		Dir:       o.Output,
		ChunkSize: p.ChunkSize,
		Attrs:     attrs,
		Key: sink.RunKey{
			Input: o.Input, Shard: o.Shard.String(), Limit: o.Limit, URLKind: string(o.URLKind),
			WeightsSHA256: sum, Preprocess: o.Preprocess.String(), Dtype: o.Dtype, Normalized: o.Normalize,
		},
		HasImageIDs: src.Info().IDColumn != "",
		NoResume:    o.NoResume,
		Logger:      log,
	})
	switch {
	case errors.Is(err, sink.ErrAlreadyComplete):
		// The same command after a finished run (or a crash after the merge): nothing to do.
		fmt.Fprintf(o.Stderr, "clipd: %v\n", err)
		fmt.Fprintln(o.Stdout, filepath.Join(o.Output, sink.FinalName))
		return nil
	case errors.Is(err, sink.ErrRunMismatch):
		return usageErrorf("%v", err)
	case err != nil:
		return withExitCode(exitOutput, err)
	}

	r := &embedRun{o: o, p: p, w: w, src: src, stats: newRunStats(started), imageSize: info.ImageSize}
	runErr := r.pipeline(runCtx, stopRun, eng)
	closeStart := time.Now()
	closeErr := w.Close()
	r.stats.writeBusy.Add(int64(time.Since(closeStart)))
	r.stopProgress()

	switch {
	case runErr != nil:
		return runErr
	case closeErr != nil:
		return withExitCode(exitOutput, closeErr)
	case ctx.Err() != nil:
		rows, fails, _ := w.Stats()
		r.report(false, "")
		return interrupted(rows + fails)
	}
	if err := src.Err(); err != nil {
		return withExitCode(exitInput, fmt.Errorf("reading %s: %w; the URLs read so far are saved: rerun the same command to resume", o.Input, err))
	}

	if d := os.Getenv("CLIPD_TEST_SLEEP_BEFORE_MERGE"); d != "" { // crash tests kill the process here
		if dur, err := time.ParseDuration(d); err == nil {
			time.Sleep(dur)
		}
	}
	mergeStart := time.Now()
	final, err := sink.Finalize(o.Output, attrs)
	r.stats.mergeTime = time.Since(mergeStart)
	if err != nil {
		return withExitCode(exitOutput, fmt.Errorf("merging the chunks of %s: %w; the chunks are intact: rerun the same command to finish", o.Output, err))
	}
	r.report(true, final)
	return nil
}

// interrupted is the error of a run stopped by Ctrl-C, SIGTERM or its context.
func interrupted(done int64) error {
	return withExitCode(exitInterrupted, fmt.Errorf("interrupted: %d done, rerun the same command to resume", done))
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}

func backendName(b engine.Backend) string {
	switch b {
	case engine.BackendCPU:
		return "cpu"
	case engine.BackendCUDA:
		return "cuda"
	}
	return "auto"
}

// modelName is what the file's "model" attribute says: the cached manifest's name when the
// weights came from `clipd weights fetch`, else the weights path.
func modelName(wpath string) string {
	dir := wpath
	if st, err := os.Stat(wpath); err == nil && !st.IsDir() {
		dir = filepath.Dir(wpath)
	}
	if m, err := weights.ReadManifest(dir); err == nil && m.Name != "" {
		return m.Name
	}
	abs, err := filepath.Abs(wpath)
	if err != nil {
		return wpath
	}
	return abs
}

// weightsSHA256 is the recorded sha256 of the weights file, or computes it.
func weightsSHA256(file string) (string, error) {
	if s := weights.RecordedSHA256(file); s != "" {
		return s, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return "", withExitCode(exitInput, fmt.Errorf("weights: %w", err))
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", withExitCode(exitInput, fmt.Errorf("weights: reading %s: %w", file, err))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

type modelShape struct {
	embedDim, imageSize int
	params              int64
}

// modelDims reads the embedding size and input size from the weights' header (so the plan
// can be made before the engine, which needs the plan's batch size, is created).
func modelDims(file string) (modelShape, error) {
	h, err := weights.ReadHeader(file)
	if err != nil {
		return modelShape{}, err
	}
	d := modelShape{embedDim: 512, imageSize: 224, params: h.Params()}
	var patch, positions int64
	for _, t := range h.Tensors {
		switch {
		case strings.HasSuffix(t.Name, "visual.proj") && len(t.Shape) == 2:
			d.embedDim = int(t.Shape[1])
		case strings.HasSuffix(t.Name, "visual_projection.weight") && len(t.Shape) == 2:
			d.embedDim = int(t.Shape[0])
		case (strings.HasSuffix(t.Name, "visual.conv1.weight") || strings.HasSuffix(t.Name, "embeddings.patch_embedding.weight")) && len(t.Shape) == 4:
			patch = t.Shape[3]
		case (strings.HasSuffix(t.Name, "visual.positional_embedding") || strings.HasSuffix(t.Name, "embeddings.position_embedding.weight")) && len(t.Shape) == 2:
			positions = t.Shape[0]
		}
	}
	if patch > 0 && positions > 1 {
		if side := int64(math.Round(math.Sqrt(float64(positions - 1)))); side*side == positions-1 {
			d.imageSize = int(side * patch)
		}
	}
	return d, nil
}

// embedRun is one run's moving parts.
type embedRun struct {
	o     embedOptions
	p     plan.Plan
	w     *sink.Writer
	src   *source.Source
	stats *runStats

	imageSize int // the model's input size: what Fast decoding keeps of the shorter side

	fetcher *fetch.Fetcher
	stage   *batch.Stage
	budget  *batch.Budget

	progressDone chan struct{}
	progressWG   sync.WaitGroup

	errOnce sync.Once
	err     error
}

// fail records the run's first fatal error and stops the run.
func (r *embedRun) fail(stop context.CancelFunc, err error) {
	r.errOnce.Do(func() { r.err = err })
	stop()
}

// decodeJob carries a fetched body through the decoders and times its decode.
type decodeJob struct {
	res   *fetch.Result
	start time.Time
}

// pipeline runs source -> fetch -> decode -> batch -> sink until the input ends or ctx is
// cancelled (stop cancels it: a fatal error does). Every goroutine it starts has ended when
// it returns.
func (r *embedRun) pipeline(ctx context.Context, stop context.CancelFunc, eng batch.Embedder) error {
	o, p, w, st := r.o, r.p, r.w, r.stats

	r.fetcher = fetch.New(fetch.Options{
		Concurrency:     p.Connections,
		MaxConnsPerHost: p.Connections,
		Retries:         o.Retries,
		Timeout:         o.Timeout,
		MaxBodyBytes:    p.MaxBodyBytes,
		UserAgent:       "clipd/" + version,
		OutputBuffer:    max(p.FetchQueue, 1),
	})
	r.budget = batch.NewBudget(p.DecodedBudget)
	r.startProgress()

	var wg sync.WaitGroup
	addFailure := func(f item.Failure) {
		st.failed(f.Reason)
		if err := w.AddFailure(f); err != nil {
			r.fail(stop, withExitCode(exitOutput, err))
		}
	}

	// Source -> items: skip what an earlier run did; malformed rows are failures.
	items := make(chan item.Item, max(p.FetchQueue, 1))
	wg.Go(func() {
		defer close(items)
		for rec := range r.src.Records() {
			seq := rec.Item.Seq
			if rec.Failure != nil {
				seq = rec.Failure.Seq
			}
			if w.Done(seq) {
				st.skipped.Add(1)
				continue
			}
			if rec.Failure != nil {
				addFailure(*rec.Failure)
				continue
			}
			select {
			case items <- rec.Item:
				st.queued.Add(1)
			case <-ctx.Done():
				return
			}
		}
	})

	// Fetch -> bodies; fetch failures go to the sink, except "canceled" ones: those items
	// were never judged and belong to the next run.
	results := r.fetcher.Run(ctx, items)
	bodies := make(chan *decodeJob, max(p.DecodeWorkers, 1))
	wg.Go(func() {
		defer close(bodies)
		for res := range results {
			if res.Failure != nil {
				if res.Failure.Reason != fetch.ReasonCanceled {
					addFailure(*res.Failure)
				}
				res.Release()
				continue
			}
			bodies <- &decodeJob{res: res}
		}
	})

	// Decode: its context is not ctx, so that it drains what was fetched; the batch stage
	// drops what arrives after a cancellation.
	decOpt := decode.Options{Mode: o.Preprocess, MaxPixels: p.MaxPixels, MinSide: r.imageSize}
	decoded := decode.Run(context.Background(), bodies, p.DecodeWorkers, decOpt,
		func(j *decodeJob) []byte { j.start = time.Now(); return j.res.Body },
		func(j *decodeJob) {
			st.decodeBusy.Add(int64(time.Since(j.start)))
			st.bytes.Add(int64(len(j.res.Body)))
			j.res.Release()
		})
	toEngine := make(chan batch.Input, max(p.DecodeQueue, 1))
	wg.Go(func() {
		defer close(toEngine)
		for d := range decoded {
			it := d.Item.res.Item
			if d.Err != nil {
				addFailure(item.Failure{Item: it, Stage: "decode", Reason: d.Err.Error()})
				continue
			}
			st.decoded.Add(1)
			r.budget.Acquire(context.Background(), int64(len(d.Image.RGB))) // never fails: no deadline
			toEngine <- batch.Input{Item: it, Image: d.Image}
		}
	})

	// Engine -> rows -> sink, here.
	r.stage = batch.Run(ctx, eng, toEngine, batch.Options{BatchSize: p.BatchSize, Normalize: o.Normalize, Released: r.budget.Release})
	for b := range r.stage.Out() {
		if b.Err != nil {
			r.fail(stop, fmt.Errorf("%w (the rows written so far are saved: rerun to resume)", b.Err))
			continue
		}
		t := time.Now()
		for i := range b.Items {
			it, emb := b.Row(i)
			if err := w.Add(sink.Row{Item: it, Embedding: emb}); err != nil {
				r.fail(stop, withExitCode(exitOutput, err))
				break
			}
		}
		st.writeBusy.Add(int64(time.Since(t)))
		rows := st.rows.Add(int64(len(b.Items)))
		if o.afterBatch != nil {
			o.afterBatch(rows)
		}
	}
	wg.Wait()
	return r.err
}
