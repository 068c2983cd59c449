// cmd_inspect.go: `clipd inspect FILE.h5|FOLDER`: rows, dims, dtype, attributes, failures
// by reason and the first rows of an output file (a folder's Images_Embedded.h5), as text or
// JSON.
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

	"github.com/urfave/cli/v2"

	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// inspectOptions are the settings of `clipd inspect`.
type inspectOptions struct {
	Path    string
	Rows    int
	JSON    bool
	S3      objstore.Options // for an s3:// Path
	Staging *staging         // the local copy of an s3:// file; nil: made (and removed) by runInspect
	Stdout  io.Writer
}

func newInspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show what an output HDF5 file holds",
		ArgsUsage: "FILE.h5|FOLDER|s3://BUCKET/KEY",
		Description: "A folder is clipd embed's output folder: its Images_Embedded.h5 is inspected. A folder of a\n" +
			"sharded run without it (only shard-*-of-*/Images_Embedded.h5) is refused with the shard files\n" +
			"it holds and the merge that joins them; a folder with chunk files only is an unfinished run.\n" +
			"The file is checked before it is read and read in a child process, so that a damaged or crafted\n" +
			"file (even one that crashes libhdf5) is one line.\n" +
			"s3://BUCKET/KEY.h5 is downloaded (streamed) into a private folder under --staging, inspected and\n" +
			"removed; s3://BUCKET/PREFIX/ is the prefix's Images_Embedded.h5, as for a folder.\n" +
			"Exit codes: 3 when the file is missing, damaged or not a clipd output file, or the folder holds\n" +
			"none; 5 when the staging folder cannot be written; 7 when object storage refuses or cannot be\n" +
			"reached (credentials, access, bucket, endpoint); 130 when interrupted (Ctrl-C, SIGTERM).",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "rows", Aliases: []string{"n"}, Value: 5, Usage: "first rows to show"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			&cli.StringFlag{Name: "staging", Usage: stagingUsage},
		},
		Action: func(cCtx *cli.Context) error {
			if err := checkArgs(cCtx, 1, 1); err != nil {
				return err
			}
			if cCtx.Int("rows") < 0 {
				return usageErrorf("--rows %d: want 0 or more", cCtx.Int("rows"))
			}
			var stg *staging
			if objstore.IsURL(cCtx.Args().First()) {
				var err error
				if stg, err = newStaging(cCtx.String("staging"), "inspect"); err != nil {
					return err
				}
				defer stg.close()
			}
			if ok, err := contained(cCtx, cCtx.Args().First()+": libhdf5 crashed reading it ({signal}): the file is damaged; clipd cannot read it"); ok {
				return err
			}
			return runInspect(cCtx.Context, inspectOptions{Path: cCtx.Args().First(), Rows: cCtx.Int("rows"), JSON: cCtx.Bool("json"),
				S3: globalsFrom(cCtx).s3.Options(), Staging: stg, Stdout: cCtx.App.Writer})
		},
	}
}

const inspectHead = 6 // embedding values shown per row

func runInspect(ctx context.Context, opt inspectOptions) error {
	var path string
	var copies localNames
	if objstore.IsURL(opt.Path) {
		if opt.Staging == nil {
			stg, err := newStaging("", "inspect")
			if err != nil {
				return err
			}
			defer stg.close()
			opt.Staging = stg
		}
		local, remote, err := fetchFinal(ctx, opt.S3, opt.Staging, opt.Path, "inspecting it")
		if err != nil {
			return err
		}
		path = local
		copies.add(local, remote)
	} else {
		var err error
		if path, err = inspectTarget(opt.Path); err != nil {
			return err
		}
	}
	info, err := outfile.Inspect(ctx, path, opt.Rows, inspectHead)
	if err != nil {
		return copies.rename(err)
	}
	if objstore.IsURL(opt.Path) {
		info.Path = copies.pairs[1]
	}
	if opt.JSON {
		enc := json.NewEncoder(opt.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	w := opt.Stdout
	fmt.Fprintf(w, "%s\n", info.Path)
	fmt.Fprintf(w, "  rows        %d\n  embed dim   %d\n  dtype       %s\n  failures    %d\n", info.Rows, info.Dim, info.Dtype, info.Failures)
	fmt.Fprintf(w, "  datasets    %s\n", strings.Join(info.Datasets, ", "))
	if info.TextColumn != "" {
		fmt.Fprintf(w, "  text        text_embeddings of column %q (row i: the embedding of row i's text)\n", info.TextColumn)
	}
	names := make([]string, 0, len(info.Attrs))
	for k := range info.Attrs {
		names = append(names, k)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "attributes:")
	for _, k := range names {
		fmt.Fprintf(w, "  %-15s %v\n", k, info.Attrs[k])
	}
	if len(info.Inputs) > 0 {
		fmt.Fprintln(w, "inputs (input_index):")
		for i, in := range info.Inputs {
			fmt.Fprintf(w, "  %d  %s  shards %s  limit %d  url_kind %q  %s\n", i, in.Input, in.Shards, in.Limit, in.URLKind, in.Fingerprint)
		}
	}
	if len(info.FailuresByReason) > 0 {
		fmt.Fprintln(w, "failures by reason:")
		for _, r := range info.FailuresByReason {
			fmt.Fprintf(w, "  %8d  %s\n", r.Count, r.Reason)
		}
	}
	if len(info.First) > 0 {
		fmt.Fprintf(w, "first %d rows:\n", len(info.First))
		for i, r := range info.First {
			vals := make([]string, len(r.Embedding))
			for j, v := range r.Embedding {
				vals[j] = fmt.Sprintf("%.4g", v)
			}
			id := ""
			if r.ImageID != "" {
				id = "  " + r.ImageID
			}
			fmt.Fprintf(w, "  %d  %s%s  [%s ...]\n", i, r.URL, id, strings.Join(vals, " "))
			if len(r.TextEmbedding) > 0 {
				fmt.Fprintf(w, "     text  [%s ...]\n", formatHead(r.TextEmbedding))
			}
		}
	}
	return nil
}

// inspectTarget is the file to inspect for path: path itself, or the final file of an output
// folder. A folder without one is an ErrInput error that says what it holds and what to do.
func inspectTarget(path string) (string, error) {
	if st, err := os.Stat(path); err != nil || !st.IsDir() {
		return path, nil // Inspect reports a missing file
	}
	c, err := outfile.ScanDir(path)
	if err != nil {
		return "", err
	}
	if c.Final != "" {
		return c.Final, nil
	}
	var done []string
	unfinished := 0
	for _, s := range c.Shards {
		if s.Final != "" {
			done = append(done, filepath.Base(s.Path))
		} else {
			unfinished++
		}
	}
	switch {
	case len(done) > 0:
		more := ""
		if unfinished > 0 {
			more = fmt.Sprintf(", %d unfinished", unfinished)
		}
		return "", outfile.InputErrorf("%s has no %s but %d shard %s (%s%s): join them with \"clipd merge %s\", or inspect one: clipd inspect %s",
			path, outfile.FinalName, len(done), countNoun(len(done), "file", "files"), shortList(done), more, path, filepath.Join(path, done[0]))
	case unfinished > 0:
		return "", outfile.InputErrorf("%s holds an unfinished sharded run (%d shard folders, none finished): rerun their clipd embed tasks to finish them",
			path, unfinished)
	case c.Chunks > 0:
		return "", outfile.UnfinishedRun(path, c.Chunks)
	}
	return "", outfile.InputErrorf("%s: no clipd output in this folder (no %s); give a clipd output file or folder", path, outfile.FinalName)
}

// shortList is names joined, or the first and last of many.
func shortList(names []string) string {
	if len(names) <= 3 {
		return strings.Join(names, ", ")
	}
	return names[0] + " ... " + names[len(names)-1]
}

func countNoun(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// formatHead is the first values of an embedding as inspect shows them.
func formatHead(v []float32) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.4g", x)
	}
	return strings.Join(s, " ")
}
