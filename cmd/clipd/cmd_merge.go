// cmd_merge.go: `clipd merge FILES... -o OUT`: join the outputs of several shards (or runs)
// into one file, streaming, each URL once.
package main

import (
	"context"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/clipd/clipd/internal/pipeline/merge"
)

// mergeOptions are the settings of `clipd merge`.
type mergeOptions struct {
	Inputs []string
	Output string
	Quiet  bool
	Stdout io.Writer
}

func newMergeCommand() *cli.Command {
	return &cli.Command{
		Name:      "merge",
		Usage:     "join shard outputs into one HDF5 file, each URL once",
		ArgsUsage: "FILE.h5...",
		Description: "Rows of shards of the same input come back in input order (by their `lines`); other\n" +
			"files are concatenated in the order given. A URL embedded in several files keeps its first\n" +
			"embedding; a URL that failed in one file but was embedded in another is not listed as failed.\n" +
			"The files must agree on model, weights, dtype, embed_dim and normalization. OUT is written\n" +
			"to OUT.tmp and renamed when complete. Memory: about 40 bytes per distinct URL.\n" +
			"Exit codes: 3 when an input is missing, not a clipd output file, or does not match the\n" +
			"others; 5 when OUT cannot be written.",
		Flags: []cli.Flag{
			// Required is checked in Action, so that a missing --output is a usage error (exit 2).
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "merged file to write (required)"},
		},
		Action: func(cCtx *cli.Context) error {
			if err := checkArgs(cCtx, 1, -1); err != nil {
				return err
			}
			if cCtx.String("output") == "" {
				return usageErrorf("merge needs --output OUT.h5 (before the input files); run \"%s --help\"", cCtx.Command.HelpName)
			}
			g := globalsFrom(cCtx)
			return runMerge(cCtx.Context, mergeOptions{Inputs: cCtx.Args().Slice(), Output: cCtx.String("output"), Quiet: g.quiet, Stdout: g.stdout})
		},
	}
}

func runMerge(ctx context.Context, opt mergeOptions) error {
	for _, in := range opt.Inputs {
		if in == opt.Output {
			return usageErrorf("merge: the output %s is also an input; write to another file", in)
		}
	}
	st, err := merge.Files(ctx, opt.Inputs, opt.Output, merge.Options{Version: version})
	if err != nil {
		return err
	}
	if !opt.Quiet && opt.Stdout != nil {
		fmt.Fprintf(opt.Stdout, "%s: %d rows, %d failures from %d files (%d duplicate rows and %d duplicate failures dropped)\n",
			opt.Output, st.Rows, st.Failures, st.Inputs, st.DuplicateRows, st.DuplicateFails)
	}
	return nil
}
