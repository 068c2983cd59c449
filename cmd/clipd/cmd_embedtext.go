// cmd_embedtext.go: `clipd embed-text TEXT... | --file F [--output X.npy|X.h5] [--json]`:
// CLIP text embeddings (the text tower of --weights, tokenized with the vocabulary beside
// them), printed one line per text (its first values and norm), printed whole as JSON, or
// written to a .npy (N x D float32, numpy.load reads it) or an HDF5 file (texts and
// text_embeddings, with the model's attributes), batch by batch.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/clipd/clipd/internal/cgo/h5"
	"github.com/clipd/clipd/internal/echo"
	"github.com/clipd/clipd/internal/pipeline/export"
	"github.com/clipd/clipd/internal/pipeline/outfile"
	"github.com/clipd/clipd/weights"
)

// embedTextOptions are the settings of `clipd embed-text`.
type embedTextOptions struct {
	Texts     []string
	File      string // one text a line; "-" for standard input
	Output    string // .npy or .h5; "" prints
	JSON      bool
	Normalize bool
	Model     modelOptions
	Stdin     io.Reader
	Stdout    io.Writer
	Logger    *slog.Logger
}

func newEmbedTextCommand() *cli.Command {
	return &cli.Command{
		Name:      "embed-text",
		Usage:     "CLIP text embeddings of texts (arguments, or a file of one text a line)",
		ArgsUsage: "[TEXT...]",
		Description: "Each text is tokenized with the vocabulary beside --weights (vocab.json + merges.txt, which\n" +
			"clipd weights fetch downloads), cut to the model's context (77 tokens for CLIP; a warning says\n" +
			"so) and embedded by the text tower: the vector CLIP's encode_text gives, not normalized unless\n" +
			"--normalize. Without --output each text is one line: its number, norm, first values and the\n" +
			"text; --json prints every vector whole. --output X.npy writes an (N, D) float32 array in the\n" +
			"texts' order, --output X.h5 an HDF5 file with texts and text_embeddings (and the model's\n" +
			"attributes, as clipd embed writes them); the file appears complete or not at all.\n" +
			"Exit codes: 2 for no text or a bad flag; 3 when --file cannot be read or the vocabulary is\n" +
			"missing; 4 for weights without a text tower; 5 when --output cannot be written; 130 when\n" +
			"interrupted.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "read the texts from this file, one a line (- for standard input)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the embeddings to X.npy (N x D float32) or X.h5 (texts, text_embeddings)"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON: every text with its whole vector (with --output: a summary)"},
			&cli.BoolFlag{Name: "normalize", Usage: "L2-normalise the embeddings"},
		}, modelFlags()...),
		Action: func(cCtx *cli.Context) error {
			if err := checkArgs(cCtx, 0, -1); err != nil {
				return err
			}
			g := globalsFrom(cCtx)
			o := embedTextOptions{
				Texts: cCtx.Args().Slice(), File: cCtx.String("file"), Output: cCtx.String("output"),
				JSON: cCtx.Bool("json"), Normalize: cCtx.Bool("normalize"), Stdin: os.Stdin, Stdout: g.stdout, Logger: g.logger,
			}
			var err error
			if o.Model, err = modelOptionsFrom(cCtx); err != nil {
				return err
			}
			switch {
			case len(o.Texts) > 0 && o.File != "":
				return usageErrorf("give the texts as arguments or with --file, not both")
			case len(o.Texts) == 0 && o.File == "":
				return usageErrorf("clipd embed-text needs texts: clipd embed-text \"a photo of a dog\" ..., or --file FILE (one text a line)")
			}
			if ext := strings.ToLower(filepath.Ext(o.Output)); o.Output != "" && ext != ".npy" && ext != ".h5" {
				return usageErrorf("--output %s: want a .npy or .h5 file", echo.Short(o.Output))
			}
			return runEmbedText(cCtx.Context, o)
		},
	}
}

// textLine is one text of `clipd embed-text --json`.
type textLine struct {
	Index     int       `json:"index"`
	Text      string    `json:"text"`
	Tokens    int       `json:"tokens"` // BPE tokens before the cut to the context
	Cut       bool      `json:"cut"`
	Norm      float64   `json:"norm"` // of the vector as computed, before --normalize
	Embedding []float32 `json:"embedding"`
}

func runEmbedText(ctx context.Context, o embedTextOptions) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	texts := o.Texts
	if o.File != "" {
		var err error
		if texts, err = readTexts(o.File, o.Stdin); err != nil {
			return err
		}
		if len(texts) == 0 {
			return outfile.InputErrorf("--file %s holds no text: give a file of one text a line", echo.Short(o.File))
		}
	}
	m, err := openQueryModel(o.Model, nil, false, o.Logger, min(len(texts), textBatch), false, true)
	if err != nil {
		return err
	}
	defer m.Close()
	dim := m.text.EmbedDim
	var w textWriter
	switch strings.ToLower(filepath.Ext(o.Output)) {
	case ".npy":
		w, err = newNPYWriter(o.Output, len(texts), dim)
	case ".h5":
		w, err = newH5TextWriter(o.Output, len(texts), dim, m, o.Model.CacheDir, o.Normalize)
	}
	if err != nil {
		return err
	}
	defer func() {
		if w != nil {
			w.abort()
		}
	}()
	var lines []textLine
	for start := 0; start < len(texts); start += textBatch {
		if err := ctx.Err(); err != nil {
			return err
		}
		part := texts[start:min(len(texts), start+textBatch)]
		embs, err := m.embedTexts(part)
		if err != nil {
			return err
		}
		vals := make([]float32, 0, len(part)*dim)
		for i, e := range embs {
			norm := l2(e.Vec)
			if o.Normalize {
				for j := range e.Vec {
					e.Vec[j] = float32(float64(e.Vec[j]) / norm)
				}
			}
			vals = append(vals, e.Vec...)
			l := textLine{Index: start + i, Text: e.Text, Tokens: e.Tokens, Cut: e.Cut, Norm: norm, Embedding: e.Vec}
			switch {
			case w != nil:
			case o.JSON:
				lines = append(lines, l)
			default:
				printTextLine(o.Stdout, l)
			}
		}
		if w != nil {
			if err := w.write(part, vals); err != nil {
				return err
			}
		}
	}
	switch {
	case w != nil:
		if err := w.commit(); err != nil {
			return err
		}
		w = nil
		if o.JSON {
			return writeJSON(o.Stdout, map[string]any{"output": o.Output, "texts": len(texts), "embed_dim": dim, "normalized": o.Normalize, "weights": m.path})
		}
		fmt.Fprintf(o.Stdout, "%s: %d texts x %d float32\n", o.Output, len(texts), dim)
	case o.JSON:
		return writeJSON(o.Stdout, lines)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func l2(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// embedTextHead is how many values a text's line shows.
const embedTextHead = 6

// printTextLine prints "INDEX  norm N  [v0 v1 ... ]  TEXT".
func printTextLine(w io.Writer, l textLine) {
	vals := make([]string, min(embedTextHead, len(l.Embedding)))
	for i := range vals {
		vals[i] = fmt.Sprintf("%.4g", l.Embedding[i])
	}
	cut := ""
	if l.Cut {
		cut = fmt.Sprintf(" (cut: %d tokens)", l.Tokens)
	}
	fmt.Fprintf(w, "%d  norm %.4f  [%s ...]  %s%s\n", l.Index, l.Norm, strings.Join(vals, " "), echo.Quote(l.Text), cut)
}

// readTexts reads one text a line (a final line without a newline too; CRLF endings
// dropped). Every line is a text, empty ones included, so that row i is line i+1.
func readTexts(path string, stdin io.Reader) ([]string, error) {
	var r io.Reader = stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, outfile.InputErrorf("--file %s", pathErrorLine(path, err))
		}
		defer f.Close()
		r = f
	}
	var texts []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		texts = append(texts, strings.TrimSuffix(sc.Text(), "\r"))
	}
	if err := sc.Err(); err != nil {
		return nil, outfile.InputErrorf("--file %s: line %d: %v (a line may hold at most 1 MiB)", echo.Short(path), len(texts)+1, err)
	}
	return texts, nil
}

// textWriter writes the embeddings batch by batch; commit completes the file, abort removes
// what was written.
type textWriter interface {
	write(texts []string, vals []float32) error
	commit() error
	abort()
}

// npyWriter writes an (N, D) float32 .npy through PATH.tmp, renamed at commit.
type npyWriter struct {
	path, tmp string
	f         *os.File
	bw        *bufio.Writer
}

func newNPYWriter(path string, rows, dim int) (*npyWriter, error) {
	hdr, err := export.NPYHeader("<f4", int64(rows), dim)
	if err != nil {
		return nil, err
	}
	w := &npyWriter{path: path, tmp: path + ".tmp"}
	if w.f, err = os.Create(w.tmp); err != nil {
		return nil, outfile.WrapWrite(w.tmp, err)
	}
	w.bw = bufio.NewWriterSize(w.f, 1<<20)
	if _, err := w.bw.Write(hdr); err != nil {
		w.abort()
		return nil, outfile.WrapWrite(w.tmp, err)
	}
	return w, nil
}

func (w *npyWriter) write(_ []string, vals []float32) error {
	b := make([]byte, 0, 4*len(vals))
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	if _, err := w.bw.Write(b); err != nil {
		return outfile.WrapWrite(w.tmp, err)
	}
	return nil
}

func (w *npyWriter) commit() error {
	err := w.bw.Flush()
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(w.tmp, w.path)
	}
	if err != nil {
		os.Remove(w.tmp)
		return outfile.WrapWrite(w.path, err)
	}
	outfile.SyncDir(filepath.Dir(w.path))
	return nil
}

func (w *npyWriter) abort() {
	w.f.Close()
	os.Remove(w.tmp)
}

// h5TextWriter writes texts and text_embeddings (N, D float32) into an HDF5 file, atomically
// (outfile: PATH.tmp, fsync, rename), with the attributes clipd's files carry (model,
// weights_sha256, embed_dim, normalized, dtype).
type h5TextWriter struct {
	f     *outfile.File
	tf    *outfile.TableFile
	attrs outfile.Attrs
	at    int64
}

// textTable is texts beside text_embeddings, in the columns the embedded table uses for urls
// and embeddings.
func textTable(dim int) outfile.Table {
	return outfile.Table{Cols: []outfile.Column{
		{Name: "texts", Kind: h5.String}, {Kind: h5.String}, {Kind: h5.Int64}, {Kind: h5.Int64},
		{Name: "text_embeddings", Kind: h5.Float32, Cols: dim},
	}}
}

func newH5TextWriter(path string, rows, dim int, m *queryModel, cacheDir string, normalized bool) (*h5TextWriter, error) {
	wfile, err := weights.WeightsFile(m.path)
	if err != nil {
		return nil, err
	}
	id, err := weights.FileSHA256(wfile, cacheDir)
	if err != nil {
		return nil, err
	}
	f, err := outfile.Create(path)
	if err != nil {
		return nil, err
	}
	tf, err := f.CreateTable(textTable(dim), int64(rows), max(rows, 1), 0)
	if err != nil {
		f.Abort()
		return nil, err
	}
	model, err := filepath.Abs(m.path) // the weights' identity is their sha256; this says where they were
	if err != nil {
		model = m.path
	}
	return &h5TextWriter{f: f, tf: tf, attrs: outfile.Attrs{Model: model, WeightsSHA256: id.SHA256, EmbedDim: dim, Normalized: normalized,
		Dtype: "float32", Version: version, Input: "texts"}}, nil
}

func (w *h5TextWriter) write(texts []string, vals []float32) error {
	b := w.tf.Table().NewBlock()
	b.Strs[outfile.ColURLs] = append(b.Strs[outfile.ColURLs], texts...)
	raw := make([]byte, 0, 4*len(vals))
	for _, v := range vals {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
	}
	b.Raw[outfile.ColValues], b.N = raw, len(texts)
	if err := w.tf.WriteAt(b, w.at); err != nil {
		return err
	}
	w.at += int64(len(texts))
	return nil
}

func (w *h5TextWriter) commit() error { return w.f.Commit(w.attrs) }

func (w *h5TextWriter) abort() { w.f.Abort() }
