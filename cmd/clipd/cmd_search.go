// cmd_search.go: `clipd search OUTPUT [TEXT...] [--image PATH] [--vector FILE.npy] [-k 20]
// [--json]`: the exact top-k rows of an output file by cosine with each query (internal/search
// streams the file), printed as rank, score, url (and caption), or as JSON. Text and image
// queries are embedded first with the weights the file was embedded with (checked by sha256);
// the query model's code (queryModel) serves `clipd embed-text` too.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/internal/echo"
	"github.com/clipd/clipd/internal/pipeline/batch"
	"github.com/clipd/clipd/internal/pipeline/decode"
	"github.com/clipd/clipd/internal/pipeline/outfile"
	"github.com/clipd/clipd/internal/search"
	"github.com/clipd/clipd/weights"
)

// searchOptions are the settings of `clipd search`.
type searchOptions struct {
	Output    string   // an output file or folder
	Texts     []string // texts to search with
	Images    []string // image files to search with
	Vectors   string   // a .npy of query vectors
	K         int
	BlockRows int
	Force     bool // search even when the query's weights are not the file's
	JSON      bool
	Model     modelOptions
	Stdout    io.Writer
	Logger    *slog.Logger
}

// modelOptions say which weights embed a query, and where.
type modelOptions struct {
	Weights, CacheDir string
	Backend           engine.Backend
	Device, Threads   int
}

// modelFlags are the flags of modelOptions, as clipd embed spells them.
func modelFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "weights", Aliases: []string{"w"}, Usage: "weights that embed the query: a .safetensors file, a directory, or a name in the cache (default " + weights.DefaultModel + "); must be the file's"},
		cacheDirFlag(),
		&cli.StringFlag{Name: "backend", Value: "auto", Usage: "auto, cpu or cuda"},
		&cli.IntFlag{Name: "device", Usage: "CUDA device ordinal"},
		&cli.IntFlag{Name: "threads", Usage: "CPU backend threads (0: all cores)"},
	}
}

func modelOptionsFrom(cCtx *cli.Context) (modelOptions, error) {
	m := modelOptions{Weights: cCtx.String("weights"), CacheDir: cCtx.String("cache-dir"), Device: cCtx.Int("device"), Threads: cCtx.Int("threads")}
	var err error
	if m.Backend, err = engine.ParseBackend(cCtx.String("backend")); err != nil {
		return m, usageErrorf("--backend: %v", err)
	}
	if m.Threads < 0 {
		return m, usageErrorf("--threads %d: want 0 (all cores) or more", m.Threads)
	}
	return m, nil
}

func newSearchCommand() *cli.Command {
	return &cli.Command{
		Name:      "search",
		Usage:     "find the rows of an output file nearest to a text, an image or a vector (exact, by cosine)",
		ArgsUsage: "OUTPUT [TEXT...]",
		Description: "OUTPUT is an output file or clipd embed's output folder (its Images_Embedded.h5). Each\n" +
			"query (every TEXT, every --image, every row of --vector) is compared with every embedding of\n" +
			"the file, read in blocks of --block-rows (all queries scored at once by GEMMs, so memory stays\n" +
			"flat however large the file), and its -k best rows are printed: rank, cosine, url, and the\n" +
			"caption when the file saved one. Ties rank by row. Rows and queries are L2-normalized first\n" +
			"(float32), whatever the file's dtype and `normalized` attribute. A TEXT (tokenized with the\n" +
			"vocab.json + merges.txt beside the weights, cut to the model's context) or an --image is\n" +
			"embedded first with --weights, which must be the weights the file was embedded with (their\n" +
			"sha256, recorded in the file), unless --force. The file is read in a child process, as inspect\n" +
			"does.\n" +
			"Exit codes: 2 for a bad flag or no query; 3 when the file, an image or the vectors are missing\n" +
			"or unreadable, the file holds no rows, or the query's model is not the file's; 4 for weights that\n" +
			"cannot embed the query (no text tower for a TEXT; NaN/Inf); 130 when interrupted.",
		Flags: append([]cli.Flag{
			&cli.StringSliceFlag{Name: "image", Usage: "an image file to search with (repeat for more queries)"},
			&cli.StringFlag{Name: "vector", Usage: "a .npy file of query vectors: shape (D,) or (N, D), float16/32/64"},
			&cli.IntFlag{Name: "k", Value: 20, Usage: "rows to print per query"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			&cli.BoolFlag{Name: "force", Usage: "search with weights other than the file's (cosines across models mean nothing)"},
			&cli.IntFlag{Name: "block-rows", Value: search.DefaultBlockRows, Usage: "rows read and scored at a time (memory: about rows x dim x 8 bytes)"},
		}, modelFlags()...),
		Action: func(cCtx *cli.Context) error {
			if err := checkArgs(cCtx, 1, -1); err != nil {
				return err
			}
			g := globalsFrom(cCtx)
			o := searchOptions{
				Output: cCtx.Args().First(), Texts: cCtx.Args().Tail(), Images: cCtx.StringSlice("image"), Vectors: cCtx.String("vector"),
				K: cCtx.Int("k"), BlockRows: cCtx.Int("block-rows"), Force: cCtx.Bool("force"), JSON: cCtx.Bool("json"),
				Stdout: g.stdout, Logger: g.logger,
			}
			var err error
			if o.Model, err = modelOptionsFrom(cCtx); err != nil {
				return err
			}
			switch {
			case o.K <= 0:
				return usageErrorf("-k %d: want 1 or more", o.K)
			case o.BlockRows <= 0 || o.BlockRows > 1<<22:
				return usageErrorf("--block-rows %d: want 1 to %d", o.BlockRows, 1<<22)
			case len(o.Texts) == 0 && len(o.Images) == 0 && o.Vectors == "":
				return usageErrorf("clipd search needs a query: a TEXT after OUTPUT, --image PATH or --vector FILE.npy; run \"clipd search --help\"")
			}
			if ok, err := contained(cCtx, o.Output+": libhdf5 crashed reading it ({signal}): the file is damaged; clipd cannot read it"); ok {
				return err
			}
			return runSearch(cCtx.Context, o)
		},
	}
}

// query is one query vector and what it came from.
type query struct {
	Kind   string `json:"kind"`   // text, image, vector
	Source string `json:"source"` // the text, the image's path, FILE.npy[row]
	vec    []float32
}

// searchReport is what `clipd search --json` prints.
type searchReport struct {
	File    string        `json:"file"`
	Rows    int64         `json:"rows"`
	Dim     int           `json:"embed_dim"`
	Dtype   string        `json:"dtype"`
	Skipped int64         `json:"skipped_rows"` // zero or non-finite embeddings: never hits
	K       int           `json:"k"`
	Seconds float64       `json:"search_seconds"` // the scan of the file, queries embedded before
	Queries []queryResult `json:"queries"`
}

type queryResult struct {
	query
	Hits []searchHit `json:"hits"`
}

type searchHit struct {
	Rank  int     `json:"rank"`
	Score float32 `json:"score"`
	Row   int64   `json:"row"`
	search.RowInfo
}

func runSearch(ctx context.Context, o searchOptions) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	path, err := inspectTarget(o.Output)
	if err != nil {
		return err
	}
	f, err := search.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if f.Rows() == 0 {
		return outfile.InputErrorf("%s holds no embedded rows (every row failed, or none was given): nothing to search", path)
	}
	// The vectors first: a wrong file is found before an engine is built.
	var vectors []query
	if o.Vectors != "" {
		vals, rows, cols, err := search.ReadNPY(o.Vectors)
		var pe *os.PathError
		switch {
		case errors.As(err, &pe):
			return outfile.InputErrorf("--vector %s", pathErrorLine(o.Vectors, err))
		case err != nil:
			return outfile.InputErrorf("--vector %v", err)
		}
		if cols != f.Dim() {
			return outfile.MismatchErrorf("--vector %s holds vectors of %d values, %s's embeddings have %d: give vectors of the file's model", echo.Short(o.Vectors), cols, path, f.Dim())
		}
		for r := range rows {
			vectors = append(vectors, query{Kind: "vector", Source: fmt.Sprintf("%s[%d]", o.Vectors, r), vec: vals[r*cols : (r+1)*cols]})
		}
	}
	var queries []query
	if len(o.Images)+len(o.Texts) > 0 {
		m, err := openQueryModel(o.Model, f, o.Force, o.Logger, max(len(o.Images), min(len(o.Texts), textBatch)), len(o.Images) > 0, len(o.Texts) > 0)
		if err != nil {
			return err
		}
		defer m.Close()
		if len(o.Texts) > 0 {
			ts, err := m.embedTexts(o.Texts)
			if err != nil {
				return err
			}
			for _, t := range ts {
				queries = append(queries, query{Kind: "text", Source: t.Text, vec: t.Vec})
			}
		}
		if len(o.Images) > 0 {
			qs, err := m.embedImages(o.Images)
			if err != nil {
				return err
			}
			queries = append(queries, qs...)
		}
		m.Close() // the engine's memory is not needed for the scan
	}
	queries = append(queries, vectors...)
	dim := f.Dim()
	all := make([]float32, 0, len(queries)*dim)
	for _, q := range queries {
		if err := search.Normalize(q.vec, dim); err != nil {
			return outfile.InputErrorf("%s %s: the query vector is zero or not finite: it has no direction to search by", q.Kind, echo.Short(q.Source))
		}
		all = append(all, q.vec...)
	}
	start := time.Now()
	res, err := search.Search(ctx, f, all, search.Options{K: o.K, BlockRows: o.BlockRows})
	if err != nil {
		return err
	}
	rep := &searchReport{File: path, Rows: res.Rows, Dim: dim, Dtype: f.Kind().String(), Skipped: res.Skipped, K: o.K, Seconds: time.Since(start).Seconds()}
	for qi, q := range queries {
		hits := res.Hits[qi]
		rows := make([]int64, len(hits))
		for i, h := range hits {
			rows[i] = h.Row
		}
		infos, err := f.Describe(rows)
		if err != nil {
			return err
		}
		qr := queryResult{query: q, Hits: make([]searchHit, len(hits))}
		for i, h := range hits {
			qr.Hits[i] = searchHit{Rank: i + 1, Score: h.Score, Row: h.Row, RowInfo: infos[i]}
		}
		rep.Queries = append(rep.Queries, qr)
	}
	o.Logger.Debug("search", "file", path, "rows", res.Rows, "queries", len(queries), "blocks", res.Blocks, "seconds", rep.Seconds)
	if o.JSON {
		enc := json.NewEncoder(o.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printSearch(o.Stdout, rep)
	return nil
}

// printSearch prints each query's hits: a line naming the query, then rank, score, url and
// the caption when the file saved one.
func printSearch(w io.Writer, rep *searchReport) {
	for i, q := range rep.Queries {
		if i > 0 {
			fmt.Fprintln(w)
		}
		src := q.Source
		if q.Kind == "text" {
			src = echo.Quote(src)
		}
		fmt.Fprintf(w, "%s %s: %d of %d rows\n", q.Kind, src, len(q.Hits), rep.Rows)
		for _, h := range q.Hits {
			caption := ""
			if c, ok := h.Columns["caption"]; ok {
				caption = "  " + c
			}
			fmt.Fprintf(w, "%4d  %.4f  %s%s\n", h.Rank, h.Score, h.URL, caption)
		}
	}
	if rep.Skipped > 0 {
		fmt.Fprintf(w, "(%d rows have a zero or non-finite embedding and were skipped)\n", rep.Skipped)
	}
}

// queryModel is an engine (and, for text, a tokenizer) on the weights that embed queries.
type queryModel struct {
	eng      *engine.Engine
	tok      *engine.Tokenizer // nil unless text was asked for
	text     engine.TextInfo
	path     string // the weights
	maxBatch int
	log      *slog.Logger
}

// Close frees the engine and the tokenizer; safe twice.
func (m *queryModel) Close() {
	m.eng.Close()
	if m.tok != nil {
		m.tok.Close()
	}
}

// textBatch is how many texts one engine call embeds.
const textBatch = 32

// openQueryModel resolves mo's weights and opens an engine on them for batches of up to
// maxBatch, with the tokenizer beside them when text is true. With a file f, the towers used
// (images: the vision tower, text: the text tower) must embed into f's dimension, and the
// weights' sha256 must be the one f records, unless force: both are checked from the
// weights' header and bytes before the engine is built.
func openQueryModel(mo modelOptions, f *search.File, force bool, log *slog.Logger, maxBatch int, images, text bool) (*queryModel, error) {
	wpath, err := weights.Resolve(mo.Weights, mo.CacheDir)
	if err != nil {
		return nil, err
	}
	if images {
		info, err := engine.Probe(wpath)
		if err != nil {
			return nil, fmt.Errorf("weights %s: %w", wpath, err)
		}
		if f != nil && info.EmbedDim != f.Dim() {
			return nil, outfile.MismatchErrorf("weights %s embed images into %d dimensions, %s's embeddings have %d: give the weights the file was embedded with (--weights)", wpath, info.EmbedDim, f.Path, f.Dim())
		}
	}
	if text {
		ti, err := engine.ProbeText(wpath)
		if errors.Is(err, engine.ErrUnsupported) {
			instead := ""
			if f != nil {
				instead = "; search by --image or --vector instead"
			}
			return nil, withExitCode(exitBadWeights, fmt.Errorf("%s%s", engineReason(err), instead))
		}
		if err != nil {
			return nil, fmt.Errorf("weights %s: %w", wpath, err)
		}
		if f != nil && ti.EmbedDim != f.Dim() {
			return nil, outfile.MismatchErrorf("weights %s embed text into %d dimensions, %s's embeddings have %d: give the weights the file was embedded with (--weights)", wpath, ti.EmbedDim, f.Path, f.Dim())
		}
	}
	if f != nil && f.Attrs.WeightsSHA256 != "" {
		wfile, err := weights.WeightsFile(wpath)
		if err != nil {
			return nil, err
		}
		id, err := weights.FileSHA256(wfile, mo.CacheDir)
		if err != nil {
			return nil, err
		}
		if id.SHA256 != f.Attrs.WeightsSHA256 {
			if !force {
				return nil, outfile.MismatchErrorf("%s was embedded with weights of sha256 %.12s..., the query's weights %s are %.12s...: give the file's weights with --weights, or --force to compare across models",
					f.Path, f.Attrs.WeightsSHA256, wfile, id.SHA256)
			}
			log.Warn("the query's weights are not the file's (--force): cosines across models mean little", "file_weights_sha256", f.Attrs.WeightsSHA256, "query_weights_sha256", id.SHA256)
		}
	} else if f != nil {
		log.Warn("the file records no weights sha256: the query's model cannot be checked against it", "file", f.Path)
	}
	m := &queryModel{path: wpath, maxBatch: max(1, maxBatch), log: log}
	if m.eng, err = engine.Open(engine.Options{WeightsPath: wpath, Backend: mo.Backend, Device: mo.Device, Threads: mo.Threads, MaxBatch: m.maxBatch}); err != nil {
		return nil, fmt.Errorf("weights %s: %w", wpath, err)
	}
	if text {
		if m.text, err = m.eng.TextInfo(); err != nil {
			m.Close()
			return nil, fmt.Errorf("weights %s: %w", wpath, err)
		}
		if m.tok, err = engine.OpenTokenizer(wpath); err != nil {
			m.Close()
			return nil, withExitCode(exitInput, fmt.Errorf("%s", engineReason(err))) // it says where and what to do
		}
	}
	return m, nil
}

// engineReason is an engine error's own message, without the operation in front.
func engineReason(err error) string {
	var ee *engine.Error
	if errors.As(err, &ee) && ee.Msg != "" {
		return ee.Msg
	}
	return err.Error()
}

// textEmbedding is one text's embedding (not normalized: CLIP's encode_text) and its
// tokens: BPE ids before the cut to the context length, and whether it was cut.
type textEmbedding struct {
	Text   string
	Tokens int
	Cut    bool
	Vec    []float32
}

// embedTexts tokenizes and embeds texts, maxBatch at a time. A text longer than the context
// is cut (as clip.tokenize(truncate=True) does) and a warning says so.
func (m *queryModel) embedTexts(texts []string) ([]textEmbedding, error) {
	ctx, dim := m.text.ContextLength, m.text.EmbedDim
	out := make([]textEmbedding, len(texts))
	for start := 0; start < len(texts); start += m.maxBatch {
		part := texts[start:min(len(texts), start+m.maxBatch)]
		ids := make([]int32, 0, len(part)*ctx)
		for i, t := range part {
			tok, n, err := m.tok.Tokenize(t, ctx)
			if err != nil {
				return nil, withExitCode(exitInput, fmt.Errorf("text %s: %s", echo.Quote(t), engineReason(err)))
			}
			ids = append(ids, tok...)
			out[start+i] = textEmbedding{Text: t, Tokens: n, Cut: n > ctx-2}
			if n > ctx-2 {
				m.log.Warn("text longer than the model's context: cut", "text", echo.Short(t), "tokens", n, "kept", ctx-2)
			}
		}
		vecs := make([]float32, len(part)*dim)
		if err := m.eng.EmbedTokens(ids, len(part), vecs); err != nil {
			return nil, fmt.Errorf("weights %s: embedding text: %w", m.path, err)
		}
		for i := range part {
			v := vecs[i*dim : (i+1)*dim]
			if !batch.AllFinite(v) {
				return nil, withExitCode(exitBadWeights, fmt.Errorf("weights %s embed the text %s to NaN or Inf: the weights are broken; check --weights", m.path, echo.Quote(part[i])))
			}
			out[start+i].Vec = v
		}
	}
	return out, nil
}

// embedImages decodes each image (Pillow-exact, as clipd embed --preprocess exact) and embeds
// them in one engine call.
func (m *queryModel) embedImages(paths []string) ([]query, error) {
	dim := m.eng.Info().EmbedDim
	images := make([]engine.Image, len(paths))
	for i, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, outfile.InputErrorf("--image %s", pathErrorLine(p, err))
		}
		im, err := decode.Decode(data, decode.Options{Mode: decode.Exact})
		if err != nil {
			return nil, outfile.InputErrorf("--image %s: %v: give a JPEG, PNG, GIF, WebP or BMP image", echo.Short(p), err)
		}
		defer im.Release()
		images[i] = engine.Image{RGB: im.RGB, Width: im.Width, Height: im.Height}
	}
	out := make([]float32, len(paths)*dim)
	if err := m.eng.EmbedImages(images, out); err != nil {
		return nil, fmt.Errorf("weights %s: embedding the query images: %w", m.path, err)
	}
	qs := make([]query, len(paths))
	for i, p := range paths {
		qs[i] = query{Kind: "image", Source: p, vec: out[i*dim : (i+1)*dim]}
		if !batch.AllFinite(qs[i].vec) {
			return nil, withExitCode(exitBadWeights, fmt.Errorf("weights %s embed the query image %s to NaN or Inf: the weights are broken; check --weights", m.path, echo.Short(p)))
		}
	}
	return qs, nil
}

// pathErrorLine is "PATH: cause" for a file that could not be read (the system's reason,
// not Go's "open PATH: ..." wrapping).
func pathErrorLine(p string, err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return echo.Short(p) + ": " + err.Error()
}
