// cmd_merge.go: `clipd merge [-o OUT] FILE|FOLDER|PATTERN...`: join the outputs of several
// shards (or runs) into one file, streaming, each URL once; `clipd merge OUTPUT` joins the
// shard files of a sharded run into OUTPUT/Images_Embedded.h5.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/clipd/clipd/internal/pipeline/merge"
	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// mergeOptions are the settings of `clipd merge`.
type mergeOptions struct {
	Inputs       []string // files, output folders or glob patterns
	Output       string   // "": FOLDER/Images_Embedded.h5 when Inputs is one folder
	AllowMissing bool
	Quiet        bool
	Stdout       io.Writer
	Logger       *slog.Logger
}

func newMergeCommand() *cli.Command {
	return &cli.Command{
		Name:      "merge",
		Usage:     "join shard outputs (or runs) into one HDF5 file, each URL once",
		ArgsUsage: "FILE.h5|FOLDER|PATTERN...",
		Description: "Arguments are files, clipd embed's output folders, or quoted glob patterns. A folder gives its\n" +
			"shard files (FOLDER/shard-*-of-*/Images_Embedded.h5), or its Images_Embedded.h5 when it has no\n" +
			"shards. `clipd merge OUTPUT` (one folder, no -o) writes OUTPUT/Images_Embedded.h5.\n\n" +
			"Files of one input (the same `input` attribute) must be the shards of one run: the same\n" +
			"input_fingerprint, limit, url_kind, preprocess and shard count, each shard once, and all of\n" +
			"them; --allow-missing merges the shards present (the output's shard attribute then lists\n" +
			"them, e.g. \"0,1,3/4\"; merging it later with the missing ones completes it). When every shard\n" +
			"is there the output is the whole run: shard \"0/1\", rows in input order (by `lines`).\n" +
			"Files of different inputs are concatenated in the order given; their inputs are recorded,\n" +
			"never mixed: the datasets inputs, inputs_fingerprint, inputs_shards, inputs_limit and\n" +
			"inputs_url_kind hold one row per input, input_index (per row) and failed_input_index (per\n" +
			"failure) point into them; the input attribute reads \"merge of N inputs\" (limit -1 and\n" +
			"url_kind \"mixed\" when those differ, shard \"partial\" when an input lacks shards).\n" +
			"Every dataset is kept: a row from a file without image ids gets an empty image_id.\n" +
			"A URL embedded in several files keeps its first embedding; a URL that failed in one file but\n" +
			"was embedded in another is not listed as failed. All files must agree on model, weights,\n" +
			"dtype, embed_dim and normalization. OUT is written to OUT.tmp and renamed when complete.\n" +
			"Memory: about 40 bytes per distinct URL.\n" +
			"A merge into an output folder (OUTPUT/Images_Embedded.h5) takes the folder's lock, as clipd embed\n" +
			"does. Each file is checked before it is read (a damaged or crafted one is refused), and the\n" +
			"reading runs in a child process, so that even a crash of libhdf5 on a damaged file is one line.\n" +
			"Exit codes: 2 for usage mistakes, or when another clipd writes the output folder; 3 when an\n" +
			"input is missing, damaged or not a clipd output file, two files hold the same shard, shards\n" +
			"are missing, or the files are of different runs or models; 5 when OUT cannot be written;\n" +
			"130 when interrupted (Ctrl-C, SIGTERM).",
		Flags: []cli.Flag{
			// Required is checked in Action, so that a missing --output is a usage error (exit 2).
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "merged file to write (default FOLDER/Images_Embedded.h5 when the one argument is a folder)"},
			&cli.BoolFlag{Name: "allow-missing", Usage: "merge the shards present when some of a run's shards are missing"},
		},
		Action: func(cCtx *cli.Context) error {
			if err := checkArgs(cCtx, 1, -1); err != nil {
				return err
			}
			out := cCtx.String("output")
			if out == "" && cCtx.NArg() == 1 {
				out = filepath.Join(cCtx.Args().First(), outfile.FinalName)
			}
			if ok, err := contained(cCtx, "libhdf5 crashed reading one of the inputs ({signal}): a file is damaged; find it with clipd inspect on each input", out+".tmp"); ok {
				return err
			}
			g := globalsFrom(cCtx)
			return runMerge(cCtx.Context, mergeOptions{Inputs: cCtx.Args().Slice(), Output: cCtx.String("output"),
				AllowMissing: cCtx.Bool("allow-missing"), Quiet: g.quiet, Stdout: g.stdout, Logger: g.logger})
		},
	}
}

func runMerge(ctx context.Context, opt mergeOptions) error {
	defaultOut := false
	if opt.Output == "" {
		if st, err := os.Stat(opt.Inputs[0]); len(opt.Inputs) != 1 || err != nil || !st.IsDir() {
			return usageErrorf("merge needs --output OUT.h5 unless its one argument is an output folder; run \"clipd merge --help\"")
		}
		opt.Output, defaultOut = filepath.Join(opt.Inputs[0], outfile.FinalName), true
	}
	found, err := merge.Find(opt.Inputs)
	if errors.Is(err, filepath.ErrBadPattern) {
		return usageErrorf("merge: %v; quote a glob such as 'OUTPUT/shard-*'", err)
	}
	if err != nil {
		return err
	}
	for _, in := range found.Files {
		if samePath(in, opt.Output) {
			if defaultOut && len(found.Files) == 1 {
				if !opt.Quiet && opt.Stdout != nil {
					fmt.Fprintf(opt.Stdout, "%s is the whole run already (%s has no shard folders): nothing to merge\n", opt.Output, opt.Inputs[0])
				}
				return nil
			}
			return usageErrorf("merge: the output %s is also an input; write to another file (-o)", in)
		}
	}
	st, err := merge.Files(ctx, found.Files, opt.Output, merge.Options{Version: version, AllowMissing: opt.AllowMissing, Logger: opt.Logger})
	var me *merge.MissingShardsError
	if errors.As(err, &me) {
		return fmt.Errorf("merge: %w%s, or pass --allow-missing to merge the %d present", err, unfinishedNote(found.Unfinished, me), len(me.Have))
	}
	if err != nil {
		return err
	}
	if !opt.Quiet && opt.Stdout != nil {
		var of []string
		if st.DistinctInputs > 1 {
			of = append(of, fmt.Sprintf(" of %d inputs", st.DistinctInputs))
		} else if st.Shard != "0/1" {
			of = append(of, " (shards "+st.Shard+" only)")
		}
		fmt.Fprintf(opt.Stdout, "%s: %d rows, %d failures from %d files%s (%d duplicate rows and %d duplicate failures dropped)\n",
			opt.Output, st.Rows, st.Failures, st.Inputs, strings.Join(of, ""), st.DuplicateRows, st.DuplicateFails)
	}
	return nil
}

// unfinishedNote names the missing shards whose folders hold an unfinished run.
func unfinishedNote(dirs []outfile.ShardDir, me *merge.MissingShardsError) string {
	var names []string
	for _, d := range dirs {
		for _, i := range me.Missing {
			if d.Index == i && d.Count == me.Count {
				names = append(names, fmt.Sprintf("%s has %d chunk files", filepath.Base(d.Path), d.Chunks))
			}
		}
	}
	if len(names) == 0 {
		return ""
	}
	return " (unfinished: " + strings.Join(names, ", ") + ")"
}

// samePath reports whether a and b name the same file (or would).
func samePath(a, b string) bool {
	if sa, err := os.Stat(a); err == nil {
		if sb, err := os.Stat(b); err == nil {
			return os.SameFile(sa, sb)
		}
	}
	aa, err1 := filepath.Abs(a)
	ab, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == ab
}
