// cmd_export.go: `clipd export OUTPUT --format npy`: an output file as the numbered .npy and
// .parquet parts that autofaiss and clip-retrieval's index step read unchanged.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/pipeline/export"
	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// exportOptions are the settings of `clipd export`.
type exportOptions struct {
	Path        string // an output folder or .h5 file
	Format      string // "npy"
	Output      string // "": exportDir(the file)
	RowsPerPart int64
	Dtype       string           // "", "float16" or "float32"
	S3          objstore.Options // for an s3:// Path or Output
	StagingBase string           // where the staging folder is made ("": TMPDIR)
	Quiet       bool
	Stdout      io.Writer
}

func newExportCommand() *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "write an output file as .npy and .parquet parts for autofaiss and clip-retrieval",
		ArgsUsage: "OUTPUT|FILE.h5|s3://BUCKET/KEY",
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
			"An s3:// file (or prefix: its Images_Embedded.h5) is downloaded (streamed) into a private folder\n" +
			"under --staging first (default DIR: the export/ prefix beside it). With --output s3://BUCKET/PREFIX/\n" +
			"each part is written in the staging folder, uploaded as PREFIX/img_emb/img_emb_K.npy and\n" +
			"PREFIX/metadata/metadata_K.parquet (the local layout) when complete, and removed locally; parts\n" +
			"of an earlier export beyond the last are removed from the bucket. The staging folder is removed\n" +
			"at the end, on errors too.\n" +
			"Exit codes: 2 for usage mistakes; 3 when the file is missing or not a clipd output file;\n" +
			"5 when DIR (or the staging folder) cannot be written; 7 when object storage refuses or cannot\n" +
			"be reached (credentials, access, bucket, endpoint); 130 when interrupted (Ctrl-C, SIGTERM).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Value: "npy", Usage: "output format: npy (img_emb/*.npy + metadata/*.parquet)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "folder (or s3://BUCKET/PREFIX/) to write img_emb/ and metadata/ into (default: export/ beside the file)"},
			&cli.Int64Flag{Name: "rows-per-part", Value: export.DefaultRowsPerPart, Usage: "rows of each part"},
			&cli.StringFlag{Name: "dtype", Usage: "float16 or float32 (default: the file's)"},
			&cli.StringFlag{Name: "staging", Usage: stagingUsage},
		},
		Action: func(cCtx *cli.Context) error {
			if err := checkArgs(cCtx, 1, 1); err != nil {
				return err
			}
			g := globalsFrom(cCtx)
			return runExport(cCtx.Context, exportOptions{Path: cCtx.Args().First(), Format: cCtx.String("format"),
				Output: cCtx.String("output"), RowsPerPart: cCtx.Int64("rows-per-part"), Dtype: cCtx.String("dtype"),
				S3: g.s3.Options(), StagingBase: cCtx.String("staging"), Quiet: g.quiet, Stdout: g.stdout})
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
	if objstore.IsURL(opt.Path) || objstore.IsURL(opt.Output) {
		return runExportS3(ctx, opt)
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
	printExported(opt, res)
	return nil
}

// printExported says what an export wrote.
func printExported(opt exportOptions, res export.Result) {
	if !opt.Quiet && opt.Stdout != nil {
		fmt.Fprintf(opt.Stdout, "%s: %d rows x %d %s in %d %s (%s, %s: %s)\n", opt.Output, res.Rows, res.Dim, res.Dtype,
			res.Parts, countNoun(res.Parts, "part", "parts"), export.EmbDir, export.MetadataDir, strings.Join(res.Columns, ", "))
		if res.Text {
			fmt.Fprintf(opt.Stdout, "%s: text embeddings in %s\n", opt.Output, export.TextEmbDir)
		}
	}
}

// runExportS3 is an export from or to s3://: an s3:// file is downloaded into the staging
// folder first; to an s3:// prefix each part is written in the staging folder, uploaded when
// complete and removed, and the bucket's parts of an earlier export beyond the last are
// removed.
func runExportS3(ctx context.Context, opt exportOptions) error {
	c, err := s3Client(ctx, opt.S3)
	if err != nil {
		return err
	}
	var outLoc objstore.Location
	if objstore.IsURL(opt.Output) {
		if outLoc, err = parseS3("export --output", opt.Output); err != nil {
			return err
		}
		// A refused or missing bucket fails now, before anything is downloaded or written.
		if err := c.CheckBucket(ctx, outLoc.Bucket); err != nil {
			return err
		}
	}
	stg, err := newStaging(opt.StagingBase, "export")
	if err != nil {
		return err
	}
	defer stg.close()

	var copies localNames
	path := opt.Path
	if objstore.IsURL(opt.Path) {
		local, remote, err := fetchFinal(ctx, opt.S3, stg, opt.Path, "exporting it")
		if err != nil {
			return err
		}
		copies.add(local, remote)
		path = local
		if opt.Output == "" {
			l, _ := objstore.Parse(remote)
			outLoc = exportPrefix(l)
			opt.Output = outLoc.String()
		}
	} else if path, err = inspectTarget(opt.Path); err != nil {
		return err
	}
	if !objstore.IsURL(opt.Output) {
		res, err := export.NPY(ctx, path, export.Options{Dir: opt.Output, RowsPerPart: opt.RowsPerPart, Dtype: opt.Dtype})
		if err != nil {
			return copies.rename(err)
		}
		printExported(opt, res)
		return nil
	}

	outLoc = outLoc.Dir()
	opt.Output = outLoc.String()
	dir := filepath.Join(stg.dir, "export")
	copies.add(dir+string(filepath.Separator), opt.Output)
	upload := func(k int, files []string) error {
		for _, f := range files {
			rel, _ := filepath.Rel(dir, f)
			if err := c.Upload(ctx, f, outLoc.Join(filepath.ToSlash(rel)), nil); err != nil {
				return s3Error(err)
			}
			if err := os.Remove(f); err != nil {
				return outfile.WrapWrite(f, err)
			}
		}
		return nil
	}
	res, err := export.NPY(ctx, path, export.Options{Dir: dir, RowsPerPart: opt.RowsPerPart, Dtype: opt.Dtype, Done: upload})
	if err != nil {
		return copies.rename(err)
	}
	// A rerun replaces an earlier export: its parts beyond the last go, as locally (all its
	// text parts when this file has no text embeddings).
	for _, sub := range []string{export.EmbDir, export.MetadataDir, export.TextEmbDir} {
		parts := res.Parts
		if sub == export.TextEmbDir && !res.Text {
			parts = 0
		}
		objs, err := c.List(ctx, outLoc.Join(sub+"/"))
		if err != nil {
			return s3Error(err)
		}
		for _, o := range objs {
			rel := strings.TrimPrefix(o.Key, outLoc.Join(sub+"/").Key)
			if k, ok := export.PartIndex(sub, rel); ok && k >= parts {
				if err := c.Delete(ctx, o.Location); err != nil {
					return s3Error(err)
				}
			}
		}
	}
	printExported(opt, res)
	return nil
}

// exportPrefix is the default export prefix of the s3:// file l: export/ beside it, or
// X_export/ for a file X.h5 of another name (as exportDir).
func exportPrefix(l objstore.Location) objstore.Location {
	dir := objstore.Location{Bucket: l.Bucket, Key: l.Key[:strings.LastIndex(l.Key, "/")+1]}
	name := l.Base()
	if name == outfile.FinalName {
		return dir.Join("export/")
	}
	return dir.Join(strings.TrimSuffix(name, filepath.Ext(name)) + "_export/")
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
