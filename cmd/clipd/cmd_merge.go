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
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/pipeline/merge"
	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// mergeOptions are the settings of `clipd merge`.
type mergeOptions struct {
	Inputs       []string // files, output folders or glob patterns
	Output       string   // "": FOLDER/Images_Embedded.h5 when Inputs is one folder
	AllowMissing bool
	S3           objstore.Options // for s3:// inputs and output
	Staging      *staging         // local copies of s3:// files; nil: made (and removed) by runMerge
	StagingBase  string           // where runMerge makes Staging ("": TMPDIR)
	Quiet        bool
	Stdout       io.Writer
	Logger       *slog.Logger
}

func newMergeCommand() *cli.Command {
	return &cli.Command{
		Name:      "merge",
		Usage:     "join shard outputs (or runs) into one HDF5 file, each URL once",
		ArgsUsage: "FILE.h5|FOLDER|PATTERN|s3://BUCKET/PREFIX/...",
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
			"s3://BUCKET/PREFIX/ (an output prefix of clipd embed) gives its shard files\n" +
			"(PREFIX/shard-*-of-*/Images_Embedded.h5, found by listing), or PREFIX/Images_Embedded.h5; an\n" +
			"s3:// key ending in .h5 is that file. They are downloaded (streamed) into a private folder\n" +
			"under --staging, merged there, and the folder is removed at the end, on errors too.\n" +
			"`clipd merge s3://BUCKET/PREFIX/` writes s3://BUCKET/PREFIX/Images_Embedded.h5; -o s3://... (a\n" +
			"key ending in .h5, else PREFIX/Images_Embedded.h5) uploads the merged file, which appears only\n" +
			"when complete. Disk: the inputs' size, twice that for an s3:// output (checked before).\n" +
			"A merge into an output folder (OUTPUT/Images_Embedded.h5) takes the folder's lock, as clipd embed\n" +
			"does. Each file is checked before it is read (a damaged or crafted one is refused), and the\n" +
			"reading runs in a child process, so that even a crash of libhdf5 on a damaged file is one line.\n" +
			"Exit codes: 2 for usage mistakes, or when another clipd writes the output folder; 3 when an\n" +
			"input is missing, damaged or not a clipd output file, two files hold the same shard, shards\n" +
			"are missing, or the files are of different runs or models, or an s3:// object is missing; 5 when\n" +
			"OUT (or the staging folder) cannot be written; 7 when object storage refuses or cannot be\n" +
			"reached (credentials, access, bucket, endpoint); 130 when interrupted (Ctrl-C, SIGTERM).",
		Flags: []cli.Flag{
			// Required is checked in Action, so that a missing --output is a usage error (exit 2).
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "merged file to write, or s3://BUCKET/KEY.h5 (default FOLDER/Images_Embedded.h5 when the one argument is a folder or s3:// prefix)"},
			&cli.BoolFlag{Name: "allow-missing", Usage: "merge the shards present when some of a run's shards are missing"},
			&cli.StringFlag{Name: "staging", Usage: stagingUsage},
		},
		Action: func(cCtx *cli.Context) error {
			if err := checkArgs(cCtx, 1, -1); err != nil {
				return err
			}
			out := cCtx.String("output")
			s3 := anyS3(append(cCtx.Args().Slice(), out))
			if out == "" && cCtx.NArg() == 1 && !s3 {
				out = filepath.Join(cCtx.Args().First(), outfile.FinalName)
			}
			// The staging folder is made before the child starts, so that this process removes
			// it whatever the child's end (a crash of libhdf5 included).
			var stg *staging
			if s3 {
				var err error
				if stg, err = newStaging(cCtx.String("staging"), "merge"); err != nil {
					return err
				}
				defer stg.close()
			}
			var temps []string // what a crashed child leaves: a local OUT's temporary (an s3:// one's is in stg)
			if out != "" && !objstore.IsURL(out) {
				temps = append(temps, out+".tmp")
			}
			if ok, err := contained(cCtx, "libhdf5 crashed reading one of the inputs ({signal}): a file is damaged; find it with clipd inspect on each input", temps...); ok {
				return err
			}
			g := globalsFrom(cCtx)
			return runMerge(cCtx.Context, mergeOptions{Inputs: cCtx.Args().Slice(), Output: cCtx.String("output"),
				AllowMissing: cCtx.Bool("allow-missing"), S3: g.s3.Options(), Staging: stg,
				Quiet: g.quiet, Stdout: g.stdout, Logger: g.logger})
		},
	}
}

func runMerge(ctx context.Context, opt mergeOptions) error {
	if anyS3(append(slices.Clone(opt.Inputs), opt.Output)) {
		return runMergeS3(ctx, opt)
	}
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
	printMerged(opt, opt.Output, st)
	return nil
}

// printMerged says what a merge wrote to out.
func printMerged(opt mergeOptions, out string, st merge.Stats) {
	if !opt.Quiet && opt.Stdout != nil {
		var of []string
		if st.DistinctInputs > 1 {
			of = append(of, fmt.Sprintf(" of %d inputs", st.DistinctInputs))
		} else if st.Shard != "0/1" {
			of = append(of, " (shards "+st.Shard+" only)")
		}
		fmt.Fprintf(opt.Stdout, "%s: %d rows, %d failures from %d files%s (%d duplicate rows and %d duplicate failures dropped)\n",
			out, st.Rows, st.Failures, st.Inputs, strings.Join(of, ""), st.DuplicateRows, st.DuplicateFails)
	}
}

// anyS3 reports whether one of the paths is an s3:// location.
func anyS3(paths []string) bool {
	return slices.ContainsFunc(paths, objstore.IsURL)
}

// runMergeS3 is a merge with s3:// inputs or output: the inputs found in the bucket are
// downloaded into the staging folder (local ones are read where they are), merged there or
// into a local OUT, and an s3:// output is uploaded when complete.
func runMergeS3(ctx context.Context, opt mergeOptions) error {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	c, err := s3Client(ctx, opt.S3)
	if err != nil {
		return err
	}
	out, defaultOut := opt.Output, false
	if out == "" {
		if len(opt.Inputs) != 1 || !objstore.IsURL(opt.Inputs[0]) || strings.HasSuffix(opt.Inputs[0], ".h5") {
			return usageErrorf("merge needs --output OUT.h5 unless its one argument is an output folder or s3:// prefix; run \"clipd merge --help\"")
		}
		out, defaultOut = opt.Inputs[0], true
	}
	var outLoc objstore.Location
	if objstore.IsURL(out) {
		if outLoc, err = parseS3("merge --output", out); err != nil {
			return err
		}
		if !strings.HasSuffix(outLoc.Key, ".h5") {
			outLoc = outLoc.Join(outfile.FinalName)
		}
		out = outLoc.String()
		// A refused or missing bucket fails now, before anything is downloaded.
		if err := c.CheckBucket(ctx, outLoc.Bucket); err != nil {
			return err
		}
	}
	if opt.Staging == nil {
		if opt.Staging, err = newStaging(opt.StagingBase, "merge"); err != nil {
			return err
		}
		defer opt.Staging.close()
	}

	// What to merge, in the order given: local files as Find gives them, objects to fetch.
	type object struct {
		info  objstore.Info
		local string // its copy in the staging folder
	}
	var (
		files      []string
		objects    []object
		unfinished []outfile.ShardDir
		names      localNames
		size       int64
	)
	for i, a := range opt.Inputs {
		if !objstore.IsURL(a) {
			found, err := merge.Find([]string{a})
			if errors.Is(err, filepath.ErrBadPattern) {
				return usageErrorf("merge: %v; quote a glob such as 'OUTPUT/shard-*'", err)
			}
			if err != nil {
				return err
			}
			files = append(files, found.Files...)
			unfinished = append(unfinished, found.Unfinished...)
			for _, f := range found.Files {
				if st, err := os.Stat(f); err == nil {
					size += st.Size()
				}
			}
			continue
		}
		loc, err := parseS3("merge", a)
		if err != nil {
			return err
		}
		// A HEAD of an object in a missing bucket is a plain 404: ask the bucket first (exit 7).
		if err := c.CheckBucket(ctx, loc.Bucket); err != nil {
			return err
		}
		found, err := merge.FindObjects(ctx, c, loc)
		if err != nil {
			return s3Error(err)
		}
		if found.WholeRun && defaultOut {
			if !opt.Quiet && opt.Stdout != nil {
				fmt.Fprintf(opt.Stdout, "%s is the whole run already (%s has no shard folders): nothing to merge\n", out, loc.Dir())
			}
			return nil
		}
		unfinished = append(unfinished, found.Unfinished...)
		// in-I/ mirrors the prefix (or holds the object), so that the copies' names say
		// where they came from, and map back in messages.
		base := loc.Dir().Key
		if strings.HasSuffix(loc.Key, ".h5") {
			base = loc.Key[:strings.LastIndex(loc.Key, "/")+1]
		}
		dir := fmt.Sprintf("in-%d", i)
		names.add(filepath.Join(opt.Staging.dir, dir)+string(filepath.Separator), objstore.Location{Bucket: loc.Bucket, Key: base}.String())
		for _, o := range found.Objects {
			if outLoc == o.Location {
				return usageErrorf("merge: the output %s is also an input; write to another file (-o)", out)
			}
			local := filepath.Join(opt.Staging.dir, dir, filepath.FromSlash(strings.TrimPrefix(o.Key, base)))
			objects = append(objects, object{info: o, local: local})
			files = append(files, local)
			size += o.Size
		}
	}
	if !objstore.IsURL(out) {
		for _, in := range files {
			if samePath(in, out) {
				return usageErrorf("merge: the output %s is also an input; write to another file (-o)", in)
			}
		}
	}
	var need int64
	for _, o := range objects {
		need += o.info.Size
	}
	if objstore.IsURL(out) {
		need += size // the merged file is at most the inputs' size
	}
	if err := opt.Staging.need(need, "merging these files"); err != nil {
		return err
	}
	for _, o := range objects {
		opt.Logger.Debug("downloading", "object", o.info.Location.String(), "bytes", o.info.Size)
		if _, err := opt.Staging.download(ctx, c, o.info.Location, strings.TrimPrefix(o.local, opt.Staging.dir+string(filepath.Separator))); err != nil {
			return err
		}
	}

	target := out
	if objstore.IsURL(out) {
		target = filepath.Join(opt.Staging.dir, "merged.h5")
		names.add(target, out)
	}
	st, err := merge.Files(ctx, files, target, merge.Options{Version: version, AllowMissing: opt.AllowMissing, Logger: opt.Logger})
	var me *merge.MissingShardsError
	if errors.As(err, &me) {
		err = fmt.Errorf("merge: %w%s, or pass --allow-missing to merge the %d present", err, unfinishedNote(unfinished, me), len(me.Have))
	}
	if err != nil {
		return names.rename(err)
	}
	if objstore.IsURL(out) {
		opt.Logger.Debug("uploading", "object", out)
		if err := c.Upload(ctx, target, outLoc, nil); err != nil {
			return s3Error(err)
		}
	}
	printMerged(opt, out, st)
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
