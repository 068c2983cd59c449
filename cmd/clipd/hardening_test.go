// hardening_test.go: clipd under the conditions of the robustness trial (issue 16), with real
// processes: two runs on one --output, Ctrl-C while the input blocks, inspect and merge
// stopped by a signal, hostile HDF5 files.
package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/embed"
	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// exitStatus is the exit code of a process that ended, -1 when a signal killed it.
func exitStatus(cmd *exec.Cmd) int {
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -1
	}
	return cmd.ProcessState.ExitCode()
}

// The trial's reproduction: 40 URLs at 0.15 s each, --chunk-size 1 --connections 1, a second
// run on the same --output 2 s after the first. Without a lock the second deleted the first's
// .tmp chunk and, overlapping at the merge, left a final file of 1 row with both exiting 0.
// Now the second exits 2 at once naming the first, and the first completes with 40 rows;
// a run killed with -9 leaves no lock behind.
func TestEmbedSameOutputTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	srv := newImageServer(t)
	srv.delay.Store(int64(150 * time.Millisecond))
	list := writeList(t, manyURLs(srv.URL, goodFiles(t), 40))
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := embedArgs(list, dir, "--chunk-size", "1", "--connections", "1")

	first, firstOut := startClipd(t, ctx, nil, args...)
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.Wait() }()
	time.Sleep(2 * time.Second)
	second, secondOut := startClipd(t, ctx, nil, args...)
	start := time.Now()
	second.Wait()
	took := time.Since(start)
	select {
	case <-firstDone:
		t.Fatalf("the first run ended before the second one did: the test did not overlap them\n%s", firstOut)
	default:
	}
	if code := exitStatus(second); code != exitUsage {
		t.Errorf("second run on the same --output: exit %d, want %d\n%s", code, exitUsage, secondOut)
	}
	want := regexp.MustCompile(`^clipd: another clipd \(pid ` + strconv.Itoa(first.Process.Pid) + `, started [^)]+\) is writing ` + regexp.QuoteMeta(dir) + `; .+\n$`)
	if !want.MatchString(secondOut.String()) {
		t.Errorf("second run said %q, want one line matching %s", secondOut, want)
	}
	if took > 20*time.Second {
		t.Errorf("the second run took %v to give up; it must not wait for the first", took)
	}
	if err := <-firstDone; err != nil {
		t.Fatalf("first run: %v\n%s", err, firstOut)
	}
	r := readH5(t, filepath.Join(dir, embed.FinalName))
	if len(r.URLs) != 40 || len(r.FailedURLs) != 0 {
		t.Fatalf("the first run's file has %d rows and %d failures, want 40 and 0", len(r.URLs), len(r.FailedURLs))
	}

	// kill -9 a run while it holds the lock: the rerun is not refused.
	dir2 := t.TempDir()
	args2 := embedArgs(list, dir2, "--chunk-size", "1", "--connections", "1")
	killed, killedOut := startClipd(t, ctx, nil, args2...)
	exited := make(chan struct{})
	go func() { killed.Wait(); close(exited) }()
	if !waitFor(ctx, exited, func() bool { return countChunks(dir2) >= 2 }) {
		t.Fatalf("the run to kill ended early\n%s", killedOut)
	}
	killed.Process.Signal(syscall.SIGKILL)
	<-exited
	srv.delay.Store(0)
	rerun, rerunOut := startClipd(t, ctx, nil, args2...)
	if err := rerun.Wait(); err != nil {
		t.Fatalf("rerun after kill -9: %v\n%s", err, rerunOut)
	}
	if r := readH5(t, filepath.Join(dir2, embed.FinalName)); len(r.URLs) != 40 {
		t.Fatalf("rerun after kill -9: %d rows, want 40", len(r.URLs))
	}
}

// clipd merge OUTPUT takes the folder's lock too: while another process holds it, the merge
// exits 2 at once with the holder's pid and leaves the folder as it was; after, it merges.
func TestMergeRefusesLockedFolder(t *testing.T) {
	out := t.TempDir()
	writeShardedRun(t, out, 20, 2)
	lock, err := outfile.LockDir(out) // another open file: flock conflicts within one process too
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runClipd("merge", out)
	checkOneErrorLine(t, "merge into a locked folder", code, exitUsage, stderr,
		"...clipd: another clipd (pid "+strconv.Itoa(os.Getpid())+", started ")
	if !strings.Contains(stderr, ") is writing "+out+"; wait for it to finish") {
		t.Errorf("merge into a locked folder said %q", stderr)
	}
	if _, err := os.Stat(filepath.Join(out, embed.FinalName)); !os.IsNotExist(err) {
		t.Errorf("the refused merge wrote %s: %v", embed.FinalName, err)
	}
	lock.Unlock()
	if code, _, stderr := runClipd("merge", out); code != exitOK {
		t.Fatalf("merge after the lock was released: exit %d: %s", code, stderr)
	}
}
