// trust_test.go: reruns that used to hand back the wrong result with exit 0 (issue "runs you
// can trust"), each reproduced with the command a user typed against a server on 127.0.0.1:
// the exit code and the one line they now read.
package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipd/clipd/embed"
)

// clipdRun runs the CLI with args and returns the exit code, stdout and stderr.
func clipdRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var so, se bytes.Buffer
	code := run(testCtx(t), append([]string{"clipd"}, args...), &so, &se)
	return code, so.String(), se.String()
}

// oneLine checks that stderr is exactly one line containing want.
func oneLine(t *testing.T, what, stderr, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], want) {
		t.Errorf("%s: stderr %q, want one line containing %q", what, stderr, want)
	}
}

func embedFlags(list, out string, extra ...string) []string {
	return append([]string{"--quiet", "embed", "-i", list, "-o", out, "--weights", tinyWeights, "--backend", "cpu",
		"--threads", "1", "--batch-size", "4", "--chunk-size", "5", "--retries", "0", "--allow-private-networks"}, extra...)
}

// 1. A finished output answers only for the run that made it: another --limit, another
// --input or another --dtype is refused (exit 2) instead of "run already complete".
func TestFinishedOutputIsNotAnotherRuns(t *testing.T) {
	srv := newImageServer(t)
	list := writeList(t, manyURLs(srv.URL, goodFiles(t), 20))
	other := writeList(t, manyURLs(srv.URL, goodFiles(t), 21))
	out := t.TempDir()
	if code, _, se := clipdRun(t, embedFlags(list, out, "--limit", "10")...); code != 0 {
		t.Fatalf("first run: exit %d: %s", code, se)
	}
	for _, c := range []struct {
		name  string
		extra []string
		list  string
		want  string
	}{
		{"without --limit", nil, list, "was made by another run (limit 10, now 0)"},
		{"another --input", []string{"--limit", "10"}, other, "input " + list},
		{"--dtype float16", []string{"--limit", "10", "--dtype", "float16"}, list, "dtype float32, now float16"},
	} {
		code, _, se := clipdRun(t, embedFlags(c.list, out, c.extra...)...)
		if code != exitUsage {
			t.Errorf("%s: exit %d, want %d", c.name, code, exitUsage)
		}
		oneLine(t, c.name, se, c.want)
		if !strings.Contains(se, "--no-resume") {
			t.Errorf("%s: %q does not say what to do", c.name, se)
		}
	}
	// The same command again is complete (exit 0), and says so.
	code, so, se := clipdRun(t, embedFlags(list, out, "--limit", "10")...)
	if code != 0 || !strings.Contains(se, "run already complete") || !strings.Contains(so, embedFinal(out)) {
		t.Errorf("the same run: exit %d, %q %q", code, so, se)
	}
}

func embedFinal(out string) string { return filepath.Join(out, "Images_Embedded.h5") }

// 3. Resume goes by content: URLs inserted at the top of an interrupted run's list make the
// rerun refuse (exit 2), instead of skipping 10 URLs and finishing with exit 0.
func TestResumeRefusesAChangedList(t *testing.T) {
	srv := newImageServer(t)
	urls := manyURLs(srv.URL, goodFiles(t), 40)
	list := writeList(t, urls)
	out := t.TempDir()
	ctx, cancel := context.WithCancel(testCtx(t))
	o := testEmbedOptions(list, out)
	o.afterBatch = func(rows int64) {
		if rows >= 12 {
			cancel()
		}
	}
	if err := runEmbed(ctx, o); exitCode(err) != exitInterrupted {
		t.Fatalf("interrupted run: %v", err)
	}
	inserted := append(manyURLs(srv.URL+"/new", goodFiles(t), 10), urls...)
	if err := os.WriteFile(list, []byte(strings.Join(inserted, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, se := clipdRun(t, embedFlags(list, out)...)
	if code != exitUsage {
		t.Errorf("rerun on a changed list: exit %d, want %d", code, exitUsage)
	}
	oneLine(t, "changed list", se, "the input's content changed")
}

// 4. The same file spelled relatively and absolutely is the same run.
func TestSameFileOtherSpelling(t *testing.T) {
	srv := newImageServer(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "slow_urls.txt"), []byte(strings.Join(manyURLs(srv.URL, goodFiles(t), 8), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	weights, _ := filepath.Abs(tinyWeights)
	t.Chdir(dir)
	flags := func(list string) []string {
		return []string{"--quiet", "embed", "-i", list, "-o", out, "--weights", weights, "--backend", "cpu", "--threads", "1", "--allow-private-networks"}
	}
	if code, _, se := clipdRun(t, flags("slow_urls.txt")...); code != 0 {
		t.Fatalf("relative: exit %d: %s", code, se)
	}
	code, _, se := clipdRun(t, flags(filepath.Join(dir, "slow_urls.txt"))...)
	if code != 0 || !strings.Contains(se, "run already complete") {
		t.Errorf("absolute spelling of the same file: exit %d, %q; want the run found complete", code, se)
	}
}

// 5. A run that embeds nothing exits 6, with why: an empty list, or every URL failing.
func TestNothingEmbedded(t *testing.T) {
	srv := newImageServer(t)
	empty := writeList(t, nil)
	os.WriteFile(empty, nil, 0o644)
	code, _, se := clipdRun(t, embedFlags(empty, t.TempDir())...)
	if code != exitNothing {
		t.Errorf("empty list: exit %d, want %d", code, exitNothing)
	}
	oneLine(t, "empty list", se, "no image was embedded")
	bad := writeList(t, []string{srv.URL + "/missing", srv.URL + "/img/corrupt.jpg", srv.URL + "/missing?2"})
	out := t.TempDir()
	code, _, se = clipdRun(t, embedFlags(bad, out)...)
	if code != exitNothing {
		t.Errorf("all failing: exit %d, want %d", code, exitNothing)
	}
	oneLine(t, "all failing", se, "all 3 rows failed (http 404 2, corrupt jpeg 1)")
	if _, err := os.Stat(embedFinal(out)); err != nil {
		t.Errorf("the failures' file was not written: %v", err)
	}
}

// More than half the rows failing finishes (exit 0) with a loud warning naming the reasons.
func TestFailureRateWarning(t *testing.T) {
	srv := newImageServer(t)
	urls := []string{srv.URL + "/img/img_00.jpg", srv.URL + "/missing", srv.URL + "/missing?2", srv.URL + "/missing?3"}
	code, _, se := clipdRun(t, embedFlags(writeList(t, urls), t.TempDir())...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, se)
	}
	oneLine(t, "75% failed", se, "warning: 75% of the rows failed (http 404 3)")
	code, _, se = clipdRun(t, embedFlags(writeList(t, urls), t.TempDir(), "--warn-failure-rate", "0")...)
	if code != 0 || strings.Contains(se, "warning") {
		t.Errorf("--warn-failure-rate 0: exit %d, %q", code, se)
	}
	code, _, se = clipdRun(t, embedFlags(writeList(t, urls), t.TempDir(), "--warn-failure-rate", "50")...)
	if code != exitUsage {
		t.Errorf("--warn-failure-rate 50: exit %d, %q", code, se)
	}
	oneLine(t, "--warn-failure-rate 50", se, "want a share from 0 to 1")
}

// 7. --output names a folder; a file name is refused instead of becoming a folder.
func TestOutputNamedLikeAFile(t *testing.T) {
	srv := newImageServer(t)
	out := filepath.Join(t.TempDir(), "result.h5")
	code, _, se := clipdRun(t, embedFlags(writeList(t, []string{srv.URL + "/img/img_00.jpg"}), out)...)
	if code != exitUsage {
		t.Errorf("-o result.h5: exit %d, want %d", code, exitUsage)
	}
	oneLine(t, "-o result.h5", se, "names a file")
	if _, err := os.Stat(out); err == nil {
		t.Errorf("%s was created", out)
	}
}

// 11. Progress has a total and an ETA without --limit (a local list's size is known), and the
// summary says why URLs were retried.
func TestProgressTotalAndRetryReasons(t *testing.T) {
	srv := newImageServer(t)
	var flaky atomic.Int64
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if flaky.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write(srv.files["img_00.jpg"])
	}))
	defer busy.Close()
	urls := append(manyURLs(srv.URL, goodFiles(t), 30), busy.URL+"/a.jpg")
	srv.delay.Store(int64(100 * time.Millisecond)) // long enough for an ETA of a second or more
	o := testEmbedOptions(writeList(t, urls), t.TempDir())
	o.Retries = 2
	o.Conns = 2
	var log, stdout bytes.Buffer
	o.Quiet, o.Logger, o.Stdout, o.LogEvery = false, slog.New(slog.NewTextHandler(&log, nil)), &stdout, time.Millisecond
	if err := runEmbed(testCtx(t), o); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`status="[0-9]+/31 \([0-9]+%\) .*\| ETA [0-9]`).MatchString(log.String()) {
		t.Errorf("no progress line with a total and an ETA:\n%s", log.String())
	}
	if !strings.Contains(stdout.String(), "1 retries (http 503 1)") {
		t.Errorf("the summary does not say why it retried:\n%s", stdout.String())
	}
	if strings.Contains(log.String()+stdout.String(), "memory plan") {
		t.Errorf("the memory plan printed without --verbose")
	}
}

// An estimated total is marked as one.
func TestProgressLineEstimate(t *testing.T) {
	p := embed.Progress{Elapsed: 10 * time.Second, Rows: 90, Failures: 10, Total: 1000}
	if got := progressLine(p); !strings.HasPrefix(got, "100/~1000 (10%)") || !strings.Contains(got, "ETA 1m30s") {
		t.Errorf("progress line %q", got)
	}
	p.TotalExact = true
	if got := progressLine(p); !strings.HasPrefix(got, "100/1000 (10%)") {
		t.Errorf("progress line %q", got)
	}
}

// 2. A 4-task Slurm array with one shared --output, as `sbatch --array=0-3` runs it: every task
// writes its own shard folder (none reports the others' work as complete), `clipd merge
// OUTPUT` joins them, and the result equals a single run's, every URL accounted once.
func TestSlurmArrayThenMerge(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	srv := newImageServer(t)
	urls := append(manyURLs(srv.URL, goodFiles(t), 80), srv.URL+"/missing", srv.URL+"/img/corrupt.jpg")
	list := writeList(t, urls)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	ref := t.TempDir()
	cmd, out := startClipd(t, ctx, nil, embedArgs(list, ref)...)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("single run: %v\n%s", err, out)
	}
	want := readH5(t, filepath.Join(ref, embed.FinalName))

	shared := t.TempDir()
	type task struct {
		cmd *exec.Cmd
		out *bytes.Buffer
	}
	var tasks []task
	for i := range 4 {
		env := []string{fmt.Sprintf("SLURM_ARRAY_TASK_ID=%d", i), "SLURM_ARRAY_TASK_COUNT=4", "SLURM_ARRAY_TASK_MIN=0"}
		cmd, out := startClipd(t, ctx, env, embedArgs(list, shared)...)
		tasks = append(tasks, task{cmd, out})
	}
	for i, tk := range tasks {
		if err := tk.cmd.Wait(); err != nil {
			t.Fatalf("task %d: %v\n%s", i, err, tk.out)
		}
	}
	// A task run again finds its own shard complete, not another's.
	env := []string{"SLURM_ARRAY_TASK_ID=2", "SLURM_ARRAY_TASK_COUNT=4"}
	cmd, out = startClipd(t, ctx, env, embedArgs(list, shared)...)
	if err := cmd.Wait(); err != nil || !strings.Contains(out.String(), "shard-00002-of-00004") {
		t.Fatalf("task 2 again: %v\n%s", err, out)
	}

	code, so, se := clipdRun(t, "merge", shared)
	if code != 0 {
		t.Fatalf("clipd merge %s: exit %d\n%s%s", shared, code, so, se)
	}
	got := readH5(t, filepath.Join(shared, embed.FinalName))
	sameResult(t, "4 shards merged", want, got)
	if len(got.URLs)+len(got.FailedURLs) != len(urls) {
		t.Errorf("%d rows + %d failures, want %d URLs accounted once", len(got.URLs), len(got.FailedURLs), len(urls))
	}
}
