// cmd_inspect_test.go: `clipd inspect FOLDER`: the folder's Images_Embedded.h5, or one line
// (exit 3) that says what a folder without it holds and what to do.
package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/pipeline/outfile"
)

func TestInspectFolder(t *testing.T) {
	tmp := t.TempDir()
	single := filepath.Join(tmp, "single")
	writeOutput(t, single, []int64{1, 2, 3})
	code, stdout, stderr := runClipd("inspect", single)
	if code != exitOK || stderr != "" || !strings.HasPrefix(stdout, filepath.Join(single, outfile.FinalName)+"\n  rows        3\n") {
		t.Fatalf("clipd inspect FOLDER: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	out := filepath.Join(tmp, "OUTPUT")
	shards := writeShardedRun(t, out, 20, 4)
	code, _, stderr = runClipd("inspect", out)
	checkOneErrorLine(t, "inspect a sharded run's folder", code, exitInput, stderr,
		"clipd: "+out+" has no Images_Embedded.h5 but 4 shard files (shard-00000-of-00004 ... shard-00003-of-00004): join them with \"clipd merge "+out+
			"\", or inspect one: clipd inspect "+filepath.Join(out, "shard-00000-of-00004"))
	// one shard still running
	os.Remove(shards[1])
	os.WriteFile(outfile.ChunkPath(filepath.Dir(shards[1]), 0), nil, 0o644)
	code, _, stderr = runClipd("inspect", out)
	checkOneErrorLine(t, "inspect a sharded run's folder, one shard unfinished", code, exitInput, stderr,
		"...but 3 shard files (shard-00000-of-00004, shard-00002-of-00004, shard-00003-of-00004, 1 unfinished): join them with")
	// a shard folder is an output folder
	if code, stdout, _ := runClipd("inspect", filepath.Dir(shards[0])); code != exitOK || !strings.HasPrefix(stdout, shards[0]+"\n") {
		t.Errorf("clipd inspect SHARD-FOLDER: exit %d, stdout %q", code, stdout)
	}
	code, _, stderr = runClipd("inspect", filepath.Dir(shards[1]))
	checkOneErrorLine(t, "inspect an unfinished shard", code, exitInput, stderr,
		"clipd: "+filepath.Dir(shards[1])+" holds an unfinished run (1 chunk files): rerun the same clipd embed to finish it")
	code, _, stderr = runClipd("merge", filepath.Dir(shards[1]))
	checkOneErrorLine(t, "merge an unfinished shard", code, exitInput, stderr,
		"clipd: "+filepath.Dir(shards[1])+" holds an unfinished run (1 chunk files): rerun the same clipd embed to finish it")
}
