// cmd_inspect.go: `clipd inspect FILE.h5`: rows, dims, dtype, attributes, failures by
// reason and the first rows of an output file, as text or JSON.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// inspectOptions are the settings of `clipd inspect`.
type inspectOptions struct {
	Path   string
	Rows   int
	JSON   bool
	Stdout io.Writer
}

func newInspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show what an output HDF5 file holds",
		ArgsUsage: "FILE.h5",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "rows", Aliases: []string{"n"}, Value: 5, Usage: "first rows to show"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: func(cCtx *cli.Context) error {
			if err := checkArgs(cCtx, 1, 1); err != nil {
				return err
			}
			if cCtx.Int("rows") < 0 {
				return usageErrorf("--rows %d: want 0 or more", cCtx.Int("rows"))
			}
			return runInspect(cCtx.Context, inspectOptions{Path: cCtx.Args().First(), Rows: cCtx.Int("rows"), JSON: cCtx.Bool("json"), Stdout: cCtx.App.Writer})
		},
	}
}

const inspectHead = 6 // embedding values shown per row

func runInspect(_ context.Context, opt inspectOptions) error {
	info, err := outfile.Inspect(opt.Path, opt.Rows, inspectHead)
	if err != nil {
		return err
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
	names := make([]string, 0, len(info.Attrs))
	for k := range info.Attrs {
		names = append(names, k)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "attributes:")
	for _, k := range names {
		fmt.Fprintf(w, "  %-15s %v\n", k, info.Attrs[k])
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
		}
	}
	return nil
}
