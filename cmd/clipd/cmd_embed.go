// cmd_embed.go: `clipd embed`, the main job: its flags, and what it prints while the embed
// library (package embed) runs the pipeline.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/embed"
	"github.com/clipd/clipd/weights"
)

// defaultInput is what `clipd embed` reads when --input is not given.
const defaultInput = "openimages:validation"

// embedOptions are the settings of one `clipd embed` run; tests fill them directly.
type embedOptions struct {
	Input        string
	Weights      string // a path, hub name or URL for weights.Resolve; "" = the default model in the cache
	CacheDir     string
	Output       string
	Staging      string // an s3:// output's local staging folder; "" = one in the cache
	Limit        int64
	Shard        embed.Shard
	ShardFrom    string // where Shard came from, for the log: "--shard", "JOB_COMPLETION_INDEX", ...
	URLColumn    string
	SaveColumns  []string
	TextColumn   string        // --text-column: embed each row's text too (text_embeddings)
	URLKind      embed.URLKind // "" = the source's default
	Backend      engine.Backend
	Device       int
	Devices      []int        // --devices: one engine per device; nil = Device alone
	Decode       embed.Decode // where JPEGs are decoded
	Threads      int          // CPU backend threads; 0 = all cores
	BatchSize    int          // 0 = from the plan
	ChunkSize    int          // 0 = from the plan
	Conns        int          // 0 = from the plan
	Decoders     int          // 0 = from the plan
	HostConns    int          // 0 = the fetcher's default
	HostRate     float64      // requests/s per host; 0 = no cap
	IgnoreOptOut bool
	RobotsTxt    bool
	AllowPrivate bool   // --allow-private-networks
	UserAgent    string // "" = clipd/VERSION (+project URL)
	Timeout      time.Duration
	Retries      int // retries of a failed URL; 0 = fetch's default, negative = none
	Preprocess   embed.Preprocess
	Dtype        string // "float32" or "float16"
	Normalize    bool
	NoResume     bool
	Memory       int64    // bytes; 0 = the plan's default share of available memory
	S3           embed.S3 // how s3:// locations are reached (the global --s3-* flags)

	Quiet           bool
	Verbose         bool    // also print the memory plan
	WarnFailureRate float64 // embed.Config.WarnFailureRate
	JSON            bool    // write the stats JSON beside the output
	TTY             bool    // stderr is a terminal: draw a live line
	Logger          *slog.Logger
	Stdout          io.Writer
	Stderr          io.Writer
	LogEvery        time.Duration // progress log interval without a terminal; 0 = 10 s

	// PauseBeforeMerge holds the run this long before the final merge (the hidden flag
	// --test-pause-before-merge: the kill -9 test kills the process there).
	PauseBeforeMerge time.Duration
	// afterBatch is embed.Hooks.AfterBatch: tests interrupt a run at a chosen point with it.
	afterBatch func(rowsAdded int64)
	// EngineDecodesOnCPU is the hidden --test-engine-decodes-on-cpu: embed.Hooks'
	// EngineDecodesOnCPU (the --decode gpu path of the pipeline on a CPU-only machine).
	EngineDecodesOnCPU bool
	// S3PartSize, S3PartDelay and S3RetryFor are the hidden --test-s3-part-size,
	// --test-s3-part-delay and --test-s3-retry-for: small, slow multipart uploads to an
	// s3:// output (the test that kills the store mid-upload) and a shorter retry window.
	S3PartSize  int64
	S3PartDelay time.Duration
	S3RetryFor  time.Duration
}

func newEmbedCommand() *cli.Command {
	return &cli.Command{
		Name:  "embed",
		Usage: "download images from a list of URLs and write their CLIP embeddings to HDF5",
		Description: "Fetches every URL of --input, decodes it, embeds it with the model of --weights and writes\n" +
			"OUTPUT/Images_Embedded_<k>.h5 chunk files as it goes; at the end of the input the chunks are\n" +
			"merged into OUTPUT/Images_Embedded.h5 (urls, embeddings, image_ids, failed_urls,\n" +
			"failed_reasons; text_embeddings with --text-column). Rerunning the same command after an\n" +
			"interruption or a crash resumes it: no URL is embedded twice and none is lost; another\n" +
			"command (another input or input content,\n" +
			"--limit, --shard, --dtype, ...) on the same --output is refused (exit 2). Ctrl-C stops\n" +
			"cleanly (press it twice to stop at once). URLs that fail (404, timeouts, corrupt images, ...)\n" +
			"are listed with their reason and do not make the run fail, unless nothing at all is embedded\n" +
			"(exit 6); past --warn-failure-rate a warning names the top reasons.\n\n" +
			"--output s3://BUCKET/PREFIX writes the same names to a bucket: the run writes a local staging\n" +
			"folder (--staging) and uploads each chunk as it is finished, then the final file (visible only\n" +
			"once complete); a rerun on any machine resumes from what the bucket holds.\n\n" +
			"--input is a list (text, CSV or TSV, optionally gzipped: a path, an http(s) or s3:// URL of\n" +
			"one, or - for stdin) of http(s) URLs, s3:// objects or local files (paths, file:// URLs); a\n" +
			"parquet list (a path or s3://);\n" +
			"openimages:SPLIT (train, train-boxable, validation, test, all); a folder of image files\n" +
			"(.jpg .jpeg .png .gif .webp .bmp, recursively) or a quoted pattern of them ('photos/*.jpg');\n" +
			"or tar shards as img2dataset writes them (00000.tar, 'shards/{00000..00099}.tar', a folder\n" +
			"of .tar; or s3://b/shards/00000.tar and patterns of such objects). A local file's row is\n" +
			"its absolute path; a tar sample's is its json url.\n" +
			"--shard i/n takes a deterministic 1/n of the input; without it, a Kubernetes Indexed Job's\n" +
			"JOB_COMPLETION_INDEX (with --shard-count or CLIPD_SHARD_COUNT) or a Slurm array's\n" +
			"SLURM_ARRAY_TASK_ID (of --shard-count, or of SLURM_ARRAY_TASK_COUNT for an array 0..N-1)\n" +
			"choose the shard.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Value: defaultInput, Usage: "URL list (text/CSV/TSV/parquet; a path, an http(s) or s3:// URL or -), openimages:SPLIT, a folder or pattern of images, or tar shards (files or s3://)"},
			&cli.StringFlag{Name: "weights", Aliases: []string{"w"}, Usage: "safetensors file or directory, or a hub name in the cache (default " + weights.DefaultModel + " from the cache; see \"clipd weights fetch\")"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "OUTPUT", Usage: "output folder: FOLDER/Images_Embedded.h5, or FOLDER/shard-<i>-of-<n>/Images_Embedded.h5 for a shard (join them with clipd merge FOLDER); or an s3://BUCKET/PREFIX with the same names"},
			&cli.StringFlag{Name: "staging", Usage: "s3:// outputs: the local folder the run writes before it uploads (default: one under the cache dir named after the output)"},
			&cli.Int64Flag{Name: "limit", Usage: "embed at most this many URLs (of the shard); 0 for all"},
			&cli.StringFlag{Name: "shard", Usage: "i/n: process only shard i (0-based) of n"},
			&cli.IntFlag{Name: "shard-count", EnvVars: []string{"CLIPD_SHARD_COUNT"}, Usage: "the number of shards when the index comes from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID"},
			&cli.StringFlag{Name: "backend", Value: "auto", Usage: "auto, cpu or cuda"},
			&cli.IntFlag{Name: "device", Usage: "CUDA device ordinal"},
			&cli.StringFlag{Name: "devices", Usage: "CUDA devices to run one engine each on, e.g. 0,1,2,3 (batches go to whichever is free)"},
			&cli.StringFlag{Name: "decode", Value: "cpu", Usage: "where JPEGs are decoded: cpu (exact), auto (gpu with the CUDA backend and nvJPEG, else cpu), or gpu (nvJPEG in the engine; needs the CUDA backend)"},
			&cli.IntFlag{Name: "threads", Usage: "CPU backend threads (0: all cores)"},
			&cli.IntFlag{Name: "batch-size", Usage: "images per engine call (default: from the memory plan)"},
			&cli.IntFlag{Name: "chunk-size", Usage: "URLs per chunk file (default: from the memory plan)"},
			&cli.IntFlag{Name: "connections", Usage: "downloads in flight at once (default: from the memory plan)"},
			&cli.IntFlag{Name: "decoders", Usage: "image decoding goroutines (default: from the memory plan)"},
			durationFlag("timeout", nil, embed.DefaultTimeout, "most time one URL may take, retries included"),
			&cli.IntFlag{Name: "retries", Value: embed.DefaultRetries, Usage: "retries of a URL after timeouts, connection errors, 429 and 5xx; 0 for none"},
			&cli.StringFlag{Name: "preprocess", Value: "exact", Usage: "exact (Pillow-exact JPEG decoding) or fast (DCT-scaled JPEG decoding, not bit-exact)"},
			&cli.StringFlag{Name: "dtype", Value: "float32", Usage: "embeddings in the file: float32 or float16"},
			&cli.BoolFlag{Name: "normalize", Usage: "L2-normalise the embeddings (off: they equal model.encode_image)"},
			&cli.BoolFlag{Name: "no-resume", Usage: "start over: remove the chunks of an earlier run in --output"},
			&cli.StringFlag{Name: "memory", Usage: "memory budget, e.g. 8GiB or 50% of available (default: a safe share of available memory)"},
			&cli.StringFlag{Name: "url-column", Usage: "CSV/TSV: the column holding the URLs (default url, OriginalURL or Thumbnail300KURL)"},
			&cli.StringSliceFlag{Name: "save-columns", Usage: "input columns to store with each row, e.g. caption,key (CSV/TSV/parquet header names; tar shards: caption, key)"},
			&cli.StringFlag{Name: "text-column", Usage: "also embed each row's text with the model's text tower into text_embeddings: a CSV/TSV/parquet column, or for tar shards caption (json, else .txt) or a json field; a row without one gets the embedding of \"\""},
			&cli.StringFlag{Name: "url-kind", Usage: "openimages inputs: original, thumbnail or mirror (the CVDF S3 mirror)"},
			&cli.IntFlag{Name: "host-connections", Usage: "most connections to one host (default: 16)"},
			&cli.Float64Flag{Name: "host-rate", Usage: "most requests per second to one host (0: no cap)"},
			&cli.BoolFlag{Name: "ignore-opt-out", Usage: "also fetch images whose server says X-Robots-Tag noai, noimageai, noml, noindex or noimageindex (recorded in the output)"},
			&cli.BoolFlag{Name: "robots-txt", Usage: "obey each host's robots.txt for clipd (one more request per host)"},
			&cli.BoolFlag{Name: "allow-private-networks", Usage: "allow connections to loopback, private and link-local addresses (local mirrors; refused by default)"},
			&cli.StringFlag{Name: "user-agent", Usage: "the User-Agent header (default: clipd/VERSION (+https://github.com/clipd/clipd))"},
			&cli.BoolFlag{Name: "json", Usage: "also write the run's statistics (and the memory plan) to OUTPUT/Images_Embedded.stats.json"},
			&cli.BoolFlag{Name: "verbose", Usage: "print the memory plan before the run"},
			&cli.Float64Flag{Name: "warn-failure-rate", Value: embed.DefaultWarnFailureRate, Usage: "warn, with the top reasons, when more than this share of the URLs fails (0 to never warn)"},
			&cli.DurationFlag{Name: "test-pause-before-merge", Hidden: true},
			&cli.BoolFlag{Name: "test-engine-decodes-on-cpu", Hidden: true},
			&cli.Int64Flag{Name: "test-s3-part-size", Hidden: true},
			&cli.DurationFlag{Name: "test-s3-part-delay", Hidden: true},
			&cli.DurationFlag{Name: "test-s3-retry-for", Hidden: true},
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
		Input:        cCtx.String("input"),
		Weights:      cCtx.String("weights"),
		CacheDir:     cCtx.String("cache-dir"),
		Output:       cCtx.String("output"),
		Staging:      cCtx.String("staging"),
		Limit:        cCtx.Int64("limit"),
		URLColumn:    cCtx.String("url-column"),
		SaveColumns:  splitList(cCtx.StringSlice("save-columns")),
		TextColumn:   cCtx.String("text-column"),
		URLKind:      embed.URLKind(cCtx.String("url-kind")),
		Device:       cCtx.Int("device"),
		Threads:      cCtx.Int("threads"),
		BatchSize:    cCtx.Int("batch-size"),
		ChunkSize:    cCtx.Int("chunk-size"),
		Conns:        cCtx.Int("connections"),
		Decoders:     cCtx.Int("decoders"),
		HostConns:    cCtx.Int("host-connections"),
		HostRate:     cCtx.Float64("host-rate"),
		IgnoreOptOut: cCtx.Bool("ignore-opt-out"),
		RobotsTxt:    cCtx.Bool("robots-txt"),
		AllowPrivate: cCtx.Bool("allow-private-networks"),
		UserAgent:    cCtx.String("user-agent"),
		Timeout:      durationFrom(cCtx, "timeout"),
		Dtype:        cCtx.String("dtype"),
		Normalize:    cCtx.Bool("normalize"),
		NoResume:     cCtx.Bool("no-resume"),
		JSON:         cCtx.Bool("json"),
		Verbose:      cCtx.Bool("verbose"),
		S3:           g.s3,
		Quiet:        g.quiet,
		TTY:          g.tty,
		Logger:       g.logger,
		Stdout:       g.stdout,
		Stderr:       g.stderr,
	}
	var err error
	if o.Backend, err = engine.ParseBackend(cCtx.String("backend")); err != nil {
		return o, usageErrorf("--backend: %v", err)
	}
	if o.Preprocess, err = embed.ParsePreprocess(cCtx.String("preprocess")); err != nil {
		return o, usageErrorf("--preprocess: %v", err)
	}
	if o.Decode, err = embed.ParseDecode(cCtx.String("decode")); err != nil {
		return o, usageErrorf("--decode: %v", err)
	}
	if cCtx.IsSet("devices") {
		if o.Devices, err = embed.ParseDevices(cCtx.String("devices")); err != nil {
			return o, usageErrorf("--devices: %v", err)
		}
	}
	switch r := cCtx.Int("retries"); {
	case r < 0:
		return o, usageErrorf("--retries %d: want 0 or more", r)
	case r == 0:
		o.Retries = -1
	default:
		o.Retries = r
	}
	o.PauseBeforeMerge = cCtx.Duration("test-pause-before-merge")
	o.EngineDecodesOnCPU = cCtx.Bool("test-engine-decodes-on-cpu")
	o.S3PartSize = cCtx.Int64("test-s3-part-size")
	o.S3PartDelay = cCtx.Duration("test-s3-part-delay")
	o.S3RetryFor = cCtx.Duration("test-s3-retry-for")
	switch r := cCtx.Float64("warn-failure-rate"); {
	case !(r >= 0 && r <= 1):
		return o, usageErrorf("--warn-failure-rate %g: want a share from 0 to 1, e.g. 0.5", r)
	case r == 0:
		o.WarnFailureRate = -1
	default:
		o.WarnFailureRate = r
	}
	if s := cCtx.String("memory"); s != "" {
		if o.Memory, err = embed.ParseMemory(s); err != nil {
			return o, usageErrorf("--memory: %v", err)
		}
	}
	o.Shard, o.ShardFrom, err = resolveShard(cCtx.String("shard"), cCtx.Int("shard-count"), getenv)
	if err != nil {
		return o, err
	}
	return o, nil
}

// resolveShard picks the shard: --shard wins; else a Kubernetes Indexed Job's
// JOB_COMPLETION_INDEX with count (--shard-count / CLIPD_SHARD_COUNT); else a Slurm array's
// SLURM_ARRAY_TASK_ID, of count when given, else of SLURM_ARRAY_TASK_COUNT for an array
// 0..COUNT-1 only. It says which.
func resolveShard(flag string, count int, getenv func(string) string) (embed.Shard, string, error) {
	if flag != "" {
		s, err := embed.ParseShard(flag)
		if err != nil {
			return s, "", usageErrorf("--shard: %v", err)
		}
		return s, "--shard", nil
	}
	if idx := getenv("JOB_COMPLETION_INDEX"); idx != "" {
		if count <= 0 {
			return embed.Shard{}, "", usageErrorf("JOB_COMPLETION_INDEX=%s is set but the number of shards is not: pass --shard-count N or set CLIPD_SHARD_COUNT (the Job's completions)", idx)
		}
		s, err := embed.ParseShard(idx + "/" + strconv.Itoa(count))
		if err != nil {
			return s, "", usageErrorf("JOB_COMPLETION_INDEX with --shard-count: %v", err)
		}
		return s, "JOB_COMPLETION_INDEX", nil
	}
	if id := getenv("SLURM_ARRAY_TASK_ID"); id != "" {
		i, err := strconv.Atoi(id)
		if err != nil {
			return embed.Shard{}, "", usageErrorf("SLURM_ARRAY_TASK_ID=%q is not a number; pass --shard i/n", id)
		}
		if count > 0 { // the whole array's size is given: the task id is the shard
			s, err := embed.ParseShard(id + "/" + strconv.Itoa(count))
			if err != nil {
				return s, "", usageErrorf("SLURM_ARRAY_TASK_ID with --shard-count: %v", err)
			}
			return s, "SLURM_ARRAY_TASK_ID", nil
		}
		n := getenv("SLURM_ARRAY_TASK_COUNT")
		if n == "" {
			return embed.Shard{}, "", usageErrorf("SLURM_ARRAY_TASK_ID=%s is set without SLURM_ARRAY_TASK_COUNT; pass --shard i/n", id)
		}
		// Only an array 0..COUNT-1 says the shard by itself. Another (a resubmission of the
		// tasks that died, --array=1 or 2,5) would make shards of a different count.
		lo, hi := getenv("SLURM_ARRAY_TASK_MIN"), getenv("SLURM_ARRAY_TASK_MAX")
		if nn, err := strconv.Atoi(n); err == nil && ((lo != "" && lo != "0") || (hi != "" && hi != strconv.Itoa(nn-1))) {
			return embed.Shard{}, "", usageErrorf("this Slurm array (tasks %s-%s, %s of them) is not 0..%d, so its task ids cannot say the shard (a resubmission of some tasks?): pass --shard-count N (or set CLIPD_SHARD_COUNT) to the whole array's size, or --shard i/n",
				cmp.Or(lo, "?"), cmp.Or(hi, "?"), n, nn-1)
		}
		s, err := embed.ParseShard(strconv.Itoa(i) + "/" + n)
		if err != nil {
			return s, "", usageErrorf("Slurm array task: %v (arrays must be contiguous, e.g. --array=0-%s); or pass --shard i/n", err, n)
		}
		return s, "SLURM_ARRAY_TASK_ID", nil
	}
	return embed.Shard{}, "", nil
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

// runEmbed runs one `clipd embed`: the flags become an embed.Config, the run's events become
// the plan on stderr, the live line or log lines, and the summary on stdout.
func runEmbed(ctx context.Context, o embedOptions) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	if o.ShardFrom != "" {
		o.Logger.Info("shard", "shard", o.Shard.String(), "from", o.ShardFrom)
	}
	cfg := embed.Config{
		Input: o.Input, URLColumn: o.URLColumn, SaveColumns: o.SaveColumns, TextColumn: o.TextColumn, URLKind: o.URLKind, Limit: o.Limit, Shard: o.Shard,
		Weights: o.Weights, CacheDir: o.CacheDir,
		Backend: o.Backend, Device: o.Device, Devices: o.Devices, Decode: o.Decode, Threads: o.Threads,
		Output: o.Output, Staging: o.Staging, NoResume: o.NoResume, Dtype: o.Dtype, Normalize: o.Normalize, Preprocess: o.Preprocess,
		Memory: o.Memory, BatchSize: o.BatchSize, ChunkSize: o.ChunkSize, Connections: o.Conns, Decoders: o.Decoders,
		Timeout: o.Timeout, Retries: o.Retries, WarnFailureRate: o.WarnFailureRate,
		UserAgent: o.userAgent(), Version: version,
		HostConnections: o.HostConns, HostRate: o.HostRate, IgnoreOptOut: o.IgnoreOptOut, RobotsTxt: o.RobotsTxt,
		AllowPrivateNetworks: o.AllowPrivate, S3: o.S3,
		Hooks: embed.Hooks{AfterBatch: o.afterBatch, EngineDecodesOnCPU: o.EngineDecodesOnCPU,
			S3PartSize: o.S3PartSize, S3RetryFor: o.S3RetryFor},
	}
	if d := o.S3PartDelay; d > 0 {
		cfg.Hooks.BeforeS3Part = func(int32) { time.Sleep(d) }
	}
	if o.PauseBeforeMerge > 0 {
		cfg.Hooks.BeforeFinalize = func() { time.Sleep(o.PauseBeforeMerge) }
	}
	live := newProgressPrinter(o)
	sum, err := embed.Run(ctx, cfg, embed.Events{
		Started: func(s embed.Started) {
			if o.Verbose && !o.Quiet {
				fmt.Fprintf(o.Stderr, "plan:\n%s\n", indent(s.Plan))
			}
		},
		Progress: live.update,
		Log: func(level slog.Level, msg string, args ...any) {
			o.Logger.Log(context.Background(), level, msg, args...)
		},
	})
	live.clear()
	switch {
	case sum.AlreadyComplete:
		fmt.Fprintf(o.Stderr, "clipd: run already complete: %s is complete; use --no-resume to run again, or another --output\n", sum.Output)
		fmt.Fprintln(o.Stdout, sum.Output)
		return nil
	case err == nil || errors.Is(err, embed.ErrInterrupted) || errors.Is(err, embed.ErrNothingEmbedded):
		report(o, sum)
	}
	if sum.Warning != "" {
		fmt.Fprintf(o.Stderr, "clipd: warning: %s\n", sum.Warning)
	}
	return err
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}

// splitList reads a repeated or comma-separated list flag ("caption,key" or twice).
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
	}
	return out
}

// userAgent is --user-agent, or one that names clipd, its version and the project.
func (o embedOptions) userAgent() string {
	if o.UserAgent != "" {
		return o.UserAgent
	}
	return "clipd/" + version + " (+https://github.com/clipd/clipd)"
}
