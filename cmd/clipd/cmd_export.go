// cmd_export.go: `clipd export OUTPUT --format npy`: an output file as the numbered .npy and
// .parquet parts that autofaiss and clip-retrieval's index step read unchanged.
package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/clipd/clipd/internal/pipeline/export"
	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// exportOptions are the settings of `clipd export`.
type exportOptions struct {
	Path        string // an output folder or .h5 file
	Format      string // "npy"
	Output      string // "": exportDir(the file)
	RowsPerPart int64
	Dtype       string // "", "float16" or "float32"
	Quiet       bool
	Stdout      io.Writer
}

func newExportCommand() *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "write an output file as .npy and .parquet parts for autofaiss and clip-retrieval",
		ArgsUsage: "OUTPUT|FILE.h5",
		Description: "OUTPUT is clipd embed's output folder (its Images_Embedded.h5 is exported) or an output file.\n" +
			"--format npy writes what `clip inference` writes and autofaiss and `clip index` read:\n" +
			"  DIR/img_emb/img_emb_K.npy          embeddings, rows x embed_dim, in the file's row order\n" +
			"  DIR/metadata/metadata_K.parquet    the same rows: url, image_id (when the file has ids),\n" +
			"                                     caption and the other saved columns, width, height\n" +
			"  DIR/text_emb/text_emb_K.npy        when the file has text_embeddings (clipd embed\n" +
			"                                     --text-column): the rows' text embeddings, same order\n" +
			"for K = 0, 1, ..., each part --rows-per-part rows (the last the rest). DIR is --output, or\n" +
			"export/ beside the file (OUTPUT/export for a folder; X_export for another file X.h5).\n" +
			"The file is read in blocks: memory does not grow with its size. Each part is written to\n" +
			"NAME.tmp and renamed when complete; a rerun replaces an earlier export, parts beyond the\n" +
			"last included. Failures (failed_*) are not exported.\n" +
			"Exit codes: 2 for usage mistakes; 3 when the file is missing or not a clipd output file;\n" +
			"5 when DIR cannot be written.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Value: "npy", Usage: "output format: npy (img_emb/*.npy + metadata/*.parquet)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "folder to write img_emb/ and metadata/ into (default: export/ beside the file)"},
			&cli.Int64Flag{Name: "rows-per-part", Value: export.DefaultRowsPerPart, Usage: "rows of each part"},
			&cli.StringFlag{Name: "dtype", Usage: "float16 or float32 (default: the file's)"},
		},
		Action: func(cCtx *cli.Context) error {
			if err := checkArgs(cCtx, 1, 1); err != nil {
				return err
			}
			g := globalsFrom(cCtx)
			return runExport(cCtx.Context, exportOptions{Path: cCtx.Args().First(), Format: cCtx.String("format"),
				Output: cCtx.String("output"), RowsPerPart: cCtx.Int64("rows-per-part"), Dtype: cCtx.String("dtype"),
				Quiet: g.quiet, Stdout: g.stdout})
		},
	}
}

func runExport(ctx context.Context, opt exportOptions) error {
	if opt.Format != "npy" {
		return usageErrorf("--format %q: want npy", opt.Format)
	}
	if opt.RowsPerPart < 1 {
		return usageErrorf("--rows-per-part %d: want 1 or more", opt.RowsPerPart)
	}
	if opt.Dtype != "" && opt.Dtype != "float16" && opt.Dtype != "float32" {
		return usageErrorf("--dtype %q: want float16 or float32", opt.Dtype)
	}
	path, err := inspectTarget(opt.Path)
	if err != nil {
		return err
	}
	if opt.Output == "" {
		opt.Output = exportDir(path)
	}
	res, err := export.NPY(ctx, path, export.Options{Dir: opt.Output, RowsPerPart: opt.RowsPerPart, Dtype: opt.Dtype})
	if err != nil {
		return err
	}
	if !opt.Quiet && opt.Stdout != nil {
		fmt.Fprintf(opt.Stdout, "%s: %d rows x %d %s in %d %s (%s, %s: %s)\n", opt.Output, res.Rows, res.Dim, res.Dtype,
			res.Parts, countNoun(res.Parts, "part", "parts"), export.EmbDir, export.MetadataDir, strings.Join(res.Columns, ", "))
		if res.Text {
			fmt.Fprintf(opt.Stdout, "%s: text embeddings in %s\n", opt.Output, export.TextEmbDir)
		}
	}
	return nil
}

// exportDir is the default export folder of the output file path: export/ beside it, or
// X_export/ for a file X.h5 of another name, so that two files of one folder do not collide.
func exportDir(path string) string {
	dir, name := filepath.Split(path)
	if name == outfile.FinalName {
		return filepath.Join(dir, "export")
	}
	return filepath.Join(dir, strings.TrimSuffix(name, filepath.Ext(name))+"_export")
}
