// find.go: Find turns what a user gives `clipd merge` (files, clipd embed's output folders,
// glob patterns) into the files to merge: a folder of a sharded run gives its finished
// shard files.
package merge

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// Found is what Find found.
type Found struct {
	Files      []string           // to merge, in the order given (a folder's shards by index)
	Unfinished []outfile.ShardDir // shard folders without a final file (not in Files)
}

// Find expands args: a file is itself; a folder gives its shard files
// (shard-*-of-*/Images_Embedded.h5) or, when it has none, its Images_Embedded.h5; a pattern
// with * ? or [ (quoted, so that the shell left it) gives what it matches. A path that does
// not exist is left for Files to report. Errors are outfile.ErrInput (a folder without a
// finished output, a pattern that matches nothing) or wrap filepath.ErrBadPattern.
func Find(args []string) (Found, error) {
	var found Found
	for _, a := range args {
		paths := []string{a}
		if _, err := os.Stat(a); err != nil && strings.ContainsAny(a, "*?[") {
			m, err := filepath.Glob(a)
			if err != nil {
				return found, fmt.Errorf("pattern %q: %w", a, err)
			}
			if len(m) == 0 {
				return found, outfile.InputErrorf("%s: the pattern matches nothing; give clipd embed's output folder or its files", a)
			}
			paths = m
		}
		for _, p := range paths {
			if st, err := os.Stat(p); err != nil || !st.IsDir() {
				found.Files = append(found.Files, p)
				continue
			}
			if err := found.addDir(p); err != nil {
				return found, err
			}
		}
	}
	found.Files = uniquePaths(found.Files)
	return found, nil
}

// addDir adds the files of output folder dir.
func (found *Found) addDir(dir string) error {
	c, err := outfile.ScanDir(dir)
	if err != nil {
		return err
	}
	n := 0
	for _, s := range c.Shards {
		if s.Final == "" {
			found.Unfinished = append(found.Unfinished, s)
			continue
		}
		found.Files = append(found.Files, s.Final)
		n++
	}
	switch {
	case n > 0:
	case c.Final != "":
		found.Files = append(found.Files, c.Final)
	case len(c.Shards) > 0:
		return outfile.InputErrorf("%s: none of its %d shard folders is finished (%s holds %d chunk files): rerun their clipd embed tasks to finish them",
			dir, len(c.Shards), filepath.Base(c.Shards[0].Path), c.Shards[0].Chunks)
	case c.Chunks > 0:
		return outfile.UnfinishedRun(dir, c.Chunks)
	default:
		return outfile.InputErrorf("%s: no clipd output in this folder (no %s, no shard-*-of-*/%s); give clipd embed's output folder or its files",
			dir, outfile.FinalName, outfile.FinalName)
	}
	return nil
}
