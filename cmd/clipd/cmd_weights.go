// cmd_weights.go: `clipd weights fetch` (download weights into the cache, resumable and
// sha256-verified) and `clipd weights inspect` (naming scheme, model config, tensor summary).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/weights"
)

// cacheDirFlag is the --cache-dir flag every command that reads the cache shares.
func cacheDirFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "cache-dir",
		EnvVars: []string{"CLIPD_CACHE"},
		Usage:   "clipd's cache directory; weights live in its weights/ (default $XDG_CACHE_HOME/clipd or ~/.cache/clipd)",
	}
}

func newWeightsCommand() *cli.Command {
	return &cli.Command{
		Name:  "weights",
		Usage: "download and inspect model weights",
		Subcommands: []*cli.Command{
			newWeightsFetchCommand(),
			newWeightsInspectCommand(),
		},
		Action: func(cCtx *cli.Context) error {
			if cCtx.Args().Present() {
				return usageErrorf("unknown command \"weights %s\"; run \"clipd weights --help\"", cCtx.Args().First())
			}
			cli.ShowSubcommandHelp(cCtx)
			return usageErrorf("weights needs a command: fetch or inspect")
		},
	}
}

// weightsFetchOptions are the settings of `clipd weights fetch`: what to download and how
// (weights.FetchOptions; its Retries: 0 is the default, -1 none) and where to print the
// directory.
type weightsFetchOptions struct {
	weights.FetchOptions
	Stdout io.Writer
}

func newWeightsFetchCommand() *cli.Command {
	return &cli.Command{
		Name:      "fetch",
		Usage:     "download weights (model.safetensors and its config) into the cache",
		ArgsUsage: "[NAME]",
		Description: "NAME is a Hugging Face hub repository (default " + weights.DefaultModel + ") or an https:// URL of a\n" +
			".safetensors file. The weights go to CACHE/weights/NAME/ (printed on stdout), are resumed\n" +
			"when a download was interrupted, and are verified against --sha256 or the sha256 the\n" +
			"hub gives. " + weights.DefaultModel + " has no model.safetensors on its main branch, so\n" +
			"its default revision is " + weights.DefaultRevision(weights.DefaultModel) + " (refs/pr/66, a safetensors conversion).\n" +
			"HF_TOKEN, when set, is sent to the hub (gated repositories).\n\n" +
			"Without a network: copy model.safetensors and its config.json into CACHE/weights/NAME/ by\n" +
			"hand; fetch and every command that reads the cache adopt it (check it is a CLIP checkpoint,\n" +
			"record its sha256 in a manifest) with no network access. Or give clipd embed --weights PATH.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "revision", Aliases: []string{"r"}, Usage: "hub revision: branch, tag or commit (default: a pinned commit with model.safetensors for known repositories, else main)"},
			&cli.StringFlag{Name: "file", Usage: "weights file in the hub repository", Value: weights.DefaultFile},
			&cli.StringFlag{Name: "sha256", Usage: "expected sha256 of the weights file (hex)"},
			&cli.StringFlag{Name: "name", Usage: "name to cache the weights under (default: NAME, or derived from the URL)"},
			cacheDirFlag(),
			&cli.StringFlag{Name: "hf-endpoint", EnvVars: []string{"CLIPD_HF_ENDPOINT", "HF_ENDPOINT"}, Value: weights.DefaultEndpoint, Usage: "Hugging Face hub base URL (a mirror)"},
			&cli.BoolFlag{Name: "force", Usage: "download again even when the cache holds the weights"},
			&cli.IntFlag{Name: "retries", Value: 4, Usage: "retries of a failed request (timeouts, dropped connections, 5xx); a host that cannot be reached gets at most 2 quick ones; 0 for none"},
		},
		Action: func(cCtx *cli.Context) error {
			if err := checkArgs(cCtx, 0, 1); err != nil {
				return err
			}
			g := globalsFrom(cCtx)
			if cCtx.Int("retries") < 0 {
				return usageErrorf("--retries %d: want 0 or more", cCtx.Int("retries"))
			}
			retries := cCtx.Int("retries")
			if retries == 0 {
				retries = -1
			}
			o := weightsFetchOptions{Stdout: g.stdout, FetchOptions: weights.FetchOptions{
				Name:      cCtx.Args().First(),
				Revision:  cCtx.String("revision"),
				File:      cCtx.String("file"),
				CacheName: cCtx.String("name"),
				SHA256:    cCtx.String("sha256"),
				CacheDir:  cCtx.String("cache-dir"),
				Endpoint:  cCtx.String("hf-endpoint"),
				Token:     os.Getenv("HF_TOKEN"),
				Force:     cCtx.Bool("force"),
				Retries:   retries,
				Logger:    g.logger,
				UserAgent: "clipd/" + version,
			}}
			if !g.quiet && g.tty {
				o.Progress = &barProgress{w: g.stderr}
			}
			return runWeightsFetch(cCtx.Context, o)
		},
	}
}

// runWeightsFetch downloads the weights and prints the cache directory they are in.
func runWeightsFetch(ctx context.Context, o weightsFetchOptions) error {
	res, err := weights.Fetch(ctx, o.FetchOptions)
	if err != nil {
		return err
	}
	if o.Stdout != nil {
		fmt.Fprintln(o.Stdout, res.Dir)
	}
	return nil
}

// barProgress draws a progress bar on a terminal.
type barProgress struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

func (p *barProgress) Start(file string, total, done int64) {
	if p.bar != nil {
		p.bar.Exit()
	}
	p.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription(file),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
	)
	if done > 0 {
		p.bar.Set64(done)
	}
}

func (p *barProgress) Add(n int) {
	if p.bar != nil {
		p.bar.Add(n)
	}
}

func (p *barProgress) Finish() {
	if p.bar != nil {
		p.bar.Finish()
		p.bar = nil
	}
}

// weightsInspectOptions are the settings of `clipd weights inspect`.
type weightsInspectOptions struct {
	Path     string // a file, a directory, or a cached name ("" = weights.DefaultModel)
	CacheDir string
	JSON     bool
	NoEngine bool // only the header: no engine load (no config check)
	Stdout   io.Writer
}

func newWeightsInspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "print the naming scheme, model config and tensor summary of weights",
		ArgsUsage: "[PATH|NAME]",
		Description: "PATH is a .safetensors file or a directory holding one (with config.json or\n" +
			"open_clip_config.json beside it); NAME is a name in the cache (default " + weights.DefaultModel + ").\n" +
			"The model config is the one the engine derives (it loads the weights on the CPU).",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			&cli.BoolFlag{Name: "header-only", Usage: "read the safetensors header only; do not load the model"},
			cacheDirFlag(),
		},
		Action: func(cCtx *cli.Context) error {
			if err := checkArgs(cCtx, 0, 1); err != nil {
				return err
			}
			g := globalsFrom(cCtx)
			return runWeightsInspect(cCtx.Context, weightsInspectOptions{
				Path: cCtx.Args().First(), CacheDir: cCtx.String("cache-dir"), JSON: cCtx.Bool("json"),
				NoEngine: cCtx.Bool("header-only"), Stdout: g.stdout,
			})
		},
	}
}

// inspectReport is what `clipd weights inspect` prints.
type inspectReport struct {
	Path        string            `json:"path"`
	FileSize    int64             `json:"file_size"`
	SHA256      string            `json:"sha256,omitempty"` // as recorded by fetch; not computed
	Naming      weights.Naming    `json:"naming"`
	TextTower   bool              `json:"text_tower"`
	Tensors     int               `json:"tensors"`
	Params      int64             `json:"params"`
	DTypes      map[string]int    `json:"dtypes"`
	ConfigFile  string            `json:"config_file,omitempty"`
	Model       *modelConfig      `json:"model,omitempty"`
	EngineError string            `json:"engine_error,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Source      *weights.Manifest `json:"source,omitempty"`
}

// modelConfig is the engine's clip_model_info.
type modelConfig struct {
	ImageSize int    `json:"image_size"`
	PatchSize int    `json:"patch_size"`
	Width     int    `json:"width"`
	Layers    int    `json:"layers"`
	Heads     int    `json:"heads"`
	MLPWidth  int    `json:"mlp_width"`
	EmbedDim  int    `json:"embed_dim"`
	GELU      string `json:"gelu"` // "quick" (x*sigmoid(1.702x)) or "erf" (exact)
}

// runWeightsInspect prints what the weights at o.Path are.
func runWeightsInspect(ctx context.Context, o weightsInspectOptions) error {
	p, err := weights.Resolve(o.Path, o.CacheDir)
	if err != nil {
		return err
	}
	file, err := weights.WeightsFile(p)
	if err != nil {
		return err
	}
	h, err := weights.ReadHeader(file)
	if err != nil {
		return err
	}
	r := &inspectReport{
		Path: file, FileSize: h.FileSize, SHA256: weights.RecordedSHA256(file), Tensors: len(h.Tensors),
		Params: h.Params(), DTypes: h.DTypeCounts(), Metadata: h.Metadata,
	}
	r.Naming, r.TextTower = h.Naming()
	r.ConfigFile = configFileFor(filepath.Dir(file), r.Naming)
	if m, err := weights.ReadManifest(filepath.Dir(file)); err == nil && m.File == filepath.Base(file) {
		r.Source = m
	}
	var engineErr error
	if !o.NoEngine && ctx.Err() == nil {
		e, err := engine.Open(engine.Options{WeightsPath: file, Backend: engine.BackendCPU, Threads: 1})
		if err != nil {
			engineErr = err
			r.EngineError = err.Error()
		} else {
			info := e.Info()
			e.Close()
			r.Model = &modelConfig{
				ImageSize: info.ImageSize, PatchSize: info.PatchSize, Width: info.Width, Layers: info.Layers,
				Heads: info.Heads, MLPWidth: info.MLPWidth, EmbedDim: info.EmbedDim, GELU: "erf",
			}
			if info.QuickGELU {
				r.Model.GELU = "quick"
			}
		}
	}
	if o.JSON {
		enc := json.NewEncoder(o.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		printInspect(o.Stdout, r)
	}
	return engineErr
}

// configFileFor names the config file the engine reads beside the weights: its own
// ecosystem's first (open_clip_config.json for visual.*, config.json for vision_model.*).
func configFileFor(dir string, n weights.Naming) string {
	order := []string{"open_clip_config.json", "config.json"}
	if n == weights.NamingHF {
		order = []string{"config.json", "open_clip_config.json"}
	}
	for _, name := range order {
		if st, err := os.Stat(filepath.Join(dir, name)); err == nil && st.Mode().IsRegular() {
			return name
		}
	}
	return ""
}

func printInspect(w io.Writer, r *inspectReport) {
	fmt.Fprintf(w, "file:     %s (%s)\n", r.Path, humanBytes(r.FileSize))
	if r.SHA256 != "" {
		fmt.Fprintf(w, "sha256:   %s (recorded)\n", r.SHA256)
	} else {
		fmt.Fprintf(w, "sha256:   not recorded (sha256sum the file to get it)\n")
	}
	if r.Source != nil && r.Source.Adopted {
		fmt.Fprintf(w, "source:   placed in the cache by hand, adopted %s (sha256 computed then, not checked against %s)\n", r.Source.Fetched.Format(time.RFC3339), r.Source.URL)
	} else if r.Source != nil {
		src := r.Source.URL
		if r.Source.Commit != "" {
			src += " (commit " + r.Source.Commit + ")"
		}
		fmt.Fprintf(w, "source:   %s, fetched %s, verified against: %s\n", src, r.Source.Fetched.Format(time.RFC3339), r.Source.Verified)
	}
	naming := r.Naming.Describe()
	if r.TextTower {
		naming += ", with a text tower (ignored)"
	}
	fmt.Fprintf(w, "naming:   %s\n", naming)
	dtypes := make([]string, 0, len(r.DTypes))
	for dt, n := range r.DTypes {
		dtypes = append(dtypes, fmt.Sprintf("%s %d", dt, n))
	}
	sort.Strings(dtypes)
	fmt.Fprintf(w, "tensors:  %d (%s), %s parameters\n", r.Tensors, strings.Join(dtypes, ", "), groupDigits(r.Params))
	if r.ConfigFile != "" {
		fmt.Fprintf(w, "config:   %s\n", r.ConfigFile)
	} else {
		fmt.Fprintf(w, "config:   none beside the weights (shapes only: heads = width/64, QuickGELU)\n")
	}
	switch {
	case r.Model != nil:
		m := r.Model
		gelu := "exact (erf) GELU"
		if m.GELU == "quick" {
			gelu = "QuickGELU"
		}
		fmt.Fprintf(w, "model:    image %d, patch %d, width %d, layers %d, heads %d, mlp %d, embed %d, %s\n",
			m.ImageSize, m.PatchSize, m.Width, m.Layers, m.Heads, m.MLPWidth, m.EmbedDim, gelu)
	case r.EngineError != "":
		fmt.Fprintf(w, "model:    the engine cannot load these weights: %s\n", r.EngineError)
	}
}

func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

func groupDigits(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
