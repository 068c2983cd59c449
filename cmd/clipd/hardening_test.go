// hardening_test.go: clipd under the conditions of the robustness trial (issue 16), with real
// processes: two runs on one --output, Ctrl-C while the input blocks, inspect and merge
// stopped by a signal, hostile HDF5 files.
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
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
	"github.com/clipd/clipd/internal/cgo/h5"
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
	if killed, killedOut, _ := runKilledWhen(t, ctx, func() bool { return countChunks(dir2) >= 2 }, args2...); !killed {
		t.Fatalf("the run to kill ended early\n%s", killedOut)
	}
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

// chunkRows is the rows and failures in out's finished chunk files, read with h5py.
func chunkRows(t *testing.T, out string) (rows, failures int) {
	t.Helper()
	chunks, _ := filepath.Glob(filepath.Join(out, "Images_Embedded_*.h5"))
	for _, c := range chunks {
		r := readH5(t, c)
		rows += len(r.URLs)
		failures += len(r.FailedURLs)
	}
	return rows, failures
}

// Ctrl-C (SIGINT) while the input blocks: standard input, or a FIFO, that a writer keeps open
// after 50 URLs. The run used to print "stopping..." and never stop (a second Ctrl-C lost the
// 50 embedded images, only a .tmp chunk was on disk). Now the blocked read is abandoned, the
// 50 rows are written as a finished chunk, the exit is 130 within seconds, and a rerun
// resumes them without fetching anything.
func TestEmbedInterruptWhileInputBlocks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	srv := newImageServer(t)
	urls := manyURLs(srv.URL, goodFiles(t), 50)
	body := strings.Join(urls, "\n") + "\n"
	for _, via := range []string{"stdin", "fifo"} {
		t.Run(via, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			out := t.TempDir()
			input := "-"
			var w *os.File
			var err error
			if via == "fifo" {
				input = filepath.Join(t.TempDir(), "urls.fifo")
				if err := syscall.Mkfifo(input, 0o600); err != nil {
					t.Fatal(err)
				}
				// O_RDWR does not wait for a reader; the test holds the write end open.
				if w, err = os.OpenFile(input, os.O_RDWR, 0); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.CommandContext(ctx, clipdBinary(t), embedArgs(input, out, "--chunk-size", "1000")...)
			var log strings.Builder
			cmd.Stdout, cmd.Stderr = &log, &log
			if via == "stdin" {
				var r *os.File
				if r, w, err = os.Pipe(); err != nil {
					t.Fatal(err)
				}
				cmd.Stdin = r
				defer r.Close()
			}
			defer w.Close()
			if _, err := w.WriteString(body); err != nil {
				t.Fatal(err)
			}
			before := srv.requests.Load()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			go func() { cmd.Wait(); close(exited) }()
			if !waitFor(ctx, exited, func() bool { return srv.requests.Load()-before >= 50 }) {
				t.Fatalf("the run ended before fetching the 50 URLs\n%s", log.String())
			}
			time.Sleep(2 * time.Second) // the tiny model embeds 50 images in well under this
			cmd.Process.Signal(syscall.SIGINT)
			sent := time.Now()
			select {
			case <-exited:
				t.Logf("%s: exited %v after SIGINT", via, time.Since(sent).Round(time.Millisecond))
			case <-time.After(15 * time.Second):
				cmd.Process.Kill()
				<-exited
				t.Fatalf("still running 15 s after SIGINT while the input blocks\n%s", log.String())
			}
			if code := exitStatus(cmd); code != exitInterrupted {
				t.Fatalf("exit %d after SIGINT, want %d\n%s", code, exitInterrupted, log.String())
			}
			if tmps, _ := filepath.Glob(filepath.Join(out, "*.tmp")); len(tmps) != 0 {
				t.Errorf("temporaries left: %v", tmps)
			}
			if rows, fails := chunkRows(t, out); rows != 50 || fails != 0 {
				t.Fatalf("finished chunks hold %d rows and %d failures after SIGINT, want 50 and 0\n%s", rows, fails, log.String())
			}

			// The rerun, with the input complete this time, fetches nothing and finishes.
			w.Close()
			rerun := exec.CommandContext(ctx, clipdBinary(t), embedArgs(input, out, "--chunk-size", "1000")...)
			if via == "stdin" {
				rerun.Stdin = strings.NewReader(body)
			} else {
				go func() { // a writer that sends the list and closes
					if f, err := os.OpenFile(input, os.O_WRONLY, 0); err == nil {
						f.WriteString(body)
						f.Close()
					}
				}()
			}
			before = srv.requests.Load()
			if b, err := rerun.CombinedOutput(); err != nil {
				t.Fatalf("rerun: %v\n%s", err, b)
			}
			if n := srv.requests.Load() - before; n != 0 {
				t.Errorf("the rerun fetched %d URLs; the 50 embedded before SIGINT should be resumed", n)
			}
			if r := readH5(t, filepath.Join(out, embed.FinalName)); len(r.URLs) != 50 {
				t.Errorf("rerun: %d rows, want 50", len(r.URLs))
			}
		})
	}
}

// craftFiles is the trial's crafted files, made with h5py: a file without urls, urls shorter
// than embeddings, files of a few KB declaring 60 x 2^40 and 60 x 2^27 floats (both ways), and
// one declaring 2^52 failures.
const craftFiles = `
import sys, h5py, numpy as np
d = sys.argv[1]
def base(name):
    f = h5py.File(d + "/" + name, "w")
    for k, v in {"model": "m", "dtype": "float32", "embed_dim": 4, "normalized": False, "input": "in.txt", "shard": "0/1"}.items():
        f.attrs[k] = v
    return f
s = h5py.string_dtype()
f = base("no_urls.h5"); f["embeddings"] = np.ones((3, 4), "f4"); f.close()
f = base("short_urls.h5"); f["urls"] = np.array(["http://a/1"], dtype=object).astype(s); f["embeddings"] = np.ones((3, 4), "f4"); f.close()
for name, shape in [("huge_2p40.h5", (2**40, 60)), ("wide_2p40.h5", (60, 2**40)), ("huge_2p27.h5", (2**27, 60)), ("wide_2p27.h5", (60, 2**27))]:
    f = base(name)
    f.create_dataset("urls", shape=(shape[0],), dtype=s, chunks=(min(shape[0], 1024),))
    f.create_dataset("embeddings", shape=shape, dtype="f4", chunks=(1, min(shape[1], 1024)))
    f.close()
f = base("failures_2p52.h5"); f["urls"] = np.array(["http://a/1"], dtype=object).astype(s); f["embeddings"] = np.ones((1, 4), "f4")
for name in ["failed_urls", "failed_reasons"]:
    f.create_dataset(name, shape=(2**52,), dtype=s, chunks=(1024,))
f.close()
`

// The trial's crafted files given to inspect and merge: each is exit 3 and one line, with no
// Go panic, no out-of-memory and no hang (inspect used to panic on the first two and run out of
// memory on the others).
func TestHostileHDF5Crafted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("needs Debian's /usr/bin/python3 with h5py")
	}
	dir := t.TempDir()
	if b, err := exec.Command("/usr/bin/python3", "-c", craftFiles, dir).CombinedOutput(); err != nil {
		t.Fatalf("making the files: %v\n%s", err, b)
	}
	good := writeOutput(t, filepath.Join(dir, "good"), []int64{1, 2, 3})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, name := range []string{"no_urls.h5", "short_urls.h5", "huge_2p40.h5", "wide_2p40.h5", "huge_2p27.h5", "wide_2p27.h5", "failures_2p52.h5"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err != nil || st.Size() > 64<<10 {
			t.Fatalf("%s: %v (size %d)", name, err, st.Size())
		}
		for _, args := range [][]string{{"inspect", p}, {"merge", "-o", filepath.Join(dir, "out.h5"), p, good}} {
			cmd := exec.CommandContext(ctx, clipdBinary(t), args...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			start := time.Now()
			peak := runPeakRSS(cmd)
			what := "clipd " + strings.Join(args, " ")
			checkOneErrorLine(t, what, exitStatus(cmd), exitInput, stderr.String(), "...clipd: ")
			if e := stderr.String(); !strings.Contains(e, p) || !strings.Contains(e, "the file is damaged") && !strings.Contains(e, "not a clipd output file") {
				t.Errorf("%s: stderr %q does not name the file and say it is damaged", what, e)
			}
			if took := time.Since(start); took > 20*time.Second {
				t.Errorf("%s took %v", what, took)
			}
			if peak > 512<<20 {
				t.Errorf("%s: peak RSS %d MB", what, peak>>20)
			}
		}
	}
}

// writeManyFailures writes a clipd output file of one row and n failures (empty URLs, reason
// "timeout"): a file that inspect and merge take seconds to read through.
func writeManyFailures(t *testing.T, path string, n int) {
	t.Helper()
	f, err := outfile.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	emb, err := f.CreateTable(outfile.WithRowInfo(outfile.EmbeddedTable(false, false, h5.Float32, 4), nil), 0, 1, 0)
	if err == nil {
		b := emb.Pending()
		b.Strs[outfile.ColURLs] = append(b.Strs[outfile.ColURLs], "http://h/1")
		b.Ints[outfile.ColLines] = append(b.Ints[outfile.ColLines], 1)
		b.Ints[outfile.ColWidths] = append(b.Ints[outfile.ColWidths], 1)
		b.Ints[outfile.ColHeights] = append(b.Ints[outfile.ColHeights], 1)
		b.Raw[outfile.ColValues] = make([]byte, 16)
		b.N = 1
	}
	var fails *outfile.TableFile
	if err == nil {
		fails, err = f.CreateTable(outfile.FailedTable(false, false), 0, 1<<16, 0)
	}
	if err != nil {
		t.Fatal(err)
	}
	const block = 1 << 16
	urls, reasons, stages, lines := make([]string, block), make([]string, block), make([]string, block), make([]int64, block)
	for i := range reasons {
		reasons[i], stages[i] = "timeout", "fetch"
	}
	for done := 0; done < n; done += block {
		b := fails.Pending()
		b.Strs[outfile.ColURLs], b.Strs[outfile.ColValues], b.Strs[outfile.ColStages], b.Ints[outfile.ColLines] = urls, reasons, stages, lines
		b.N = block
		if err := fails.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Commit(testRunAttrs("in.txt", "0/1")); err != nil {
		t.Fatal(err)
	}
}

// inspect and merge stop on SIGINT and SIGTERM (exit 130) in the middle of a long file: they
// used to ignore both (a file declaring 2^52 failures kept `timeout 5 clipd inspect` running
// for over 10 minutes). The file here really holds 4M failures (a declared count the file
// cannot hold is refused at once: TestHostileHDF5Crafted).
func TestInspectMergeStopOnSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	big := filepath.Join(dir, "big.h5")
	start := time.Now()
	writeManyFailures(t, big, 4<<20)
	t.Logf("wrote 4M failures in %v", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, c := range []struct {
		args []string
		sig  syscall.Signal
	}{
		{[]string{"inspect", big}, syscall.SIGINT},
		{[]string{"inspect", big}, syscall.SIGTERM},
		{[]string{"merge", "-o", filepath.Join(dir, "out.h5"), big}, syscall.SIGINT},
	} {
		what := "clipd " + strings.Join(c.args, " ") + " + " + c.sig.String()
		// How long it takes to the end, unless stopped: the signal must come well before.
		cmd := exec.CommandContext(ctx, clipdBinary(t), c.args...)
		start := time.Now()
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s without a signal: %v\n%s", what, err, b)
		}
		whole := time.Since(start)
		os.Remove(filepath.Join(dir, "out.h5"))

		cmd = exec.CommandContext(ctx, clipdBinary(t), c.args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		time.Sleep(whole / 5)
		cmd.Process.Signal(c.sig)
		sent := time.Now()
		<-exited
		took := time.Since(sent)
		t.Logf("%s: %v to the end without it, exited %v after the signal", what, whole.Round(time.Millisecond), took.Round(time.Millisecond))
		checkOneErrorLine(t, what, exitStatus(cmd), exitInterrupted, stderr.String(), "clipd: interrupted")
		if took > whole/2 {
			t.Errorf("%s: exited %v after the signal, the whole run takes %v", what, took, whole)
		}
		if _, err := os.Stat(filepath.Join(dir, "out.h5")); !os.IsNotExist(err) {
			t.Errorf("%s: the interrupted merge left out.h5 (%v)", what, err)
		}
		if tmps, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(tmps) > 0 {
			t.Errorf("%s: left %v", what, tmps)
		}
	}
}

// flipBit writes a copy of src to dst with bit b of byte at flipped.
func flipBit(t *testing.T, src []byte, dst string, at, b int) {
	t.Helper()
	c := append([]byte(nil), src...)
	c[at] ^= 1 << b
	if err := os.WriteFile(dst, c, 0o644); err != nil {
		t.Fatal(err)
	}
}

// sweepFlips is the number of bit flips of each sweep: $CLIPD_TEST_FLIPS, or n.
func sweepFlips(n int) int {
	if v, err := strconv.Atoi(os.Getenv("CLIPD_TEST_FLIPS")); err == nil && v > 0 {
		return v
	}
	return n
}

// A bounded, seeded sweep of bit flips over a real output file, given to inspect and merge
// (real processes): each ends with exit 0 or exit 3 and one line, never a Go panic, a crash
// or a hang. (The trial: over 300 flips inspect crashed 12 times and hung twice, merge crashed
// 16 times.) The flips are reproducible: the seed and offsets are in the log.
func TestHostileHDF5BitFlips(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	srv := newImageServer(t)
	dir := t.TempDir()
	o := testEmbedOptions(writeList(t, append(manyURLs(srv.URL, goodFiles(t), 12), srv.URL+"/missing")), filepath.Join(dir, "run"))
	if err := runEmbed(testCtx(t), o); err != nil {
		t.Fatal(err)
	}
	orig := readFile(t, filepath.Join(dir, "run", embed.FinalName))
	n := sweepFlips(40) // CLIPD_TEST_FLIPS=300: the trial's count (passed: 0 failures)
	const seed = 16
	rng := rand.New(rand.NewSource(seed))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var codes [256]int
	for i := 0; i < n; i++ {
		at, b := rng.Intn(len(orig)), rng.Intn(8)
		p := filepath.Join(dir, "flipped.h5")
		flipBit(t, orig, p, at, b)
		for _, args := range [][]string{{"inspect", p}, {"merge", "-o", filepath.Join(dir, "out.h5"), p}} {
			what := fmt.Sprintf("flip %d (seed %d: byte %d bit %d of %d): clipd %s", i, seed, at, b, len(orig), args[0])
			runCtx, stop := context.WithTimeout(ctx, 30*time.Second)
			cmd := exec.CommandContext(runCtx, clipdBinary(t), args...)
			var stderr strings.Builder
			cmd.Stdout, cmd.Stderr = io.Discard, &stderr
			cmd.Run()
			hung := runCtx.Err() != nil
			stop()
			if hung {
				t.Errorf("%s: still running after 30 s", what)
				continue
			}
			code := exitStatus(cmd)
			if code >= 0 && code < len(codes) {
				codes[code]++
			}
			switch {
			case code == exitOK:
			case code == exitInput:
				checkOneErrorLine(t, what, code, exitInput, stderr.String(), "...clipd: ")
			default:
				t.Errorf("%s: exit %d, want 0 or 3\n%.600s", what, code, stderr.String())
			}
			os.Remove(filepath.Join(dir, "out.h5"))
		}
	}
	t.Logf("%d flips, inspect and merge: exit 0 %d times, exit 3 %d times", n, codes[0], codes[3])
}

// libhdf5 1.10.8 can crash on a corrupted heap. inspect and merge run in a child process of
// clipd, so a crash there is one line and exit 3 (CLIPD_TEST_CHILD_CRASH=1 makes the child die
// of SIGSEGV as libhdf5 does), and an interrupt still reaches the child.
func TestContainedCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	good := writeOutput(t, filepath.Join(dir, "a"), []int64{1, 2, 3})
	for _, c := range []struct {
		args []string
		line string
	}{
		{[]string{"inspect", good}, "clipd: " + good + ": libhdf5 crashed reading it (SIGSEGV): the file is damaged; clipd cannot read it"},
		{[]string{"merge", "-o", filepath.Join(dir, "out.h5"), good}, "clipd: libhdf5 crashed reading one of the inputs (SIGSEGV): a file is damaged; find it with clipd inspect on each input"},
	} {
		cmd := exec.Command(clipdBinary(t), c.args...)
		cmd.Env = append(os.Environ(), "CLIPD_TEST_CHILD_CRASH=1")
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Run()
		checkOneErrorLine(t, "crashing clipd "+c.args[0], exitStatus(cmd), exitInput, stderr.String(), c.line)
		// without the hook the same command works
		cmd = exec.Command(clipdBinary(t), c.args...)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("clipd %s: %v\n%s", c.args[0], err, b)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(left) > 0 {
		t.Errorf("left %v", left)
	}
}

// copyFiles copies the regular files of folder from into folder to.
func copyFiles(t *testing.T, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			if err := os.WriteFile(filepath.Join(to, e.Name()), readFile(t, filepath.Join(from, e.Name())), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// A bounded, seeded sweep of bit flips over the chunk files of an interrupted run: every
// resume finishes (exit 0) with exactly the uninterrupted run's file, the damaged chunk
// discarded (said in the log) and its rows redone. (The trial: over 40 flipped chunk files a
// resume exited 0 with a wrong final file 3 times: URL bytes corrupted, a row twice, one missing.)
func TestResumeBitFlips(t *testing.T) {
	srv := newImageServer(t)
	urls := append(manyURLs(srv.URL, goodFiles(t), 40), srv.URL+"/missing", srv.URL+"/img/corrupt.jpg")
	list := writeList(t, urls)
	refDir := t.TempDir()
	if err := runEmbed(testCtx(t), testEmbedOptions(list, refDir)); err != nil {
		t.Fatal(err)
	}
	ref := readH5(t, filepath.Join(refDir, embed.FinalName))

	// An interrupted run: chunk files of 7 items on disk.
	stopped := t.TempDir()
	ctx, cancel := context.WithCancel(testCtx(t))
	o := testEmbedOptions(list, stopped)
	o.afterBatch = func(rows int64) {
		if rows >= 24 {
			cancel()
		}
	}
	if err := runEmbed(ctx, o); exitCode(err) != exitInterrupted {
		t.Fatalf("interrupted run: %v", err)
	}
	chunks, _ := filepath.Glob(filepath.Join(stopped, "Images_Embedded_*.h5"))
	if len(chunks) < 2 {
		t.Fatalf("%d chunks after the interruption, want >= 2", len(chunks))
	}
	n := sweepFlips(24)
	const seed = 16
	rng := rand.New(rand.NewSource(seed))
	for i := 0; i < n; i++ {
		dir := t.TempDir()
		copyFiles(t, stopped, dir)
		chunk := filepath.Join(dir, filepath.Base(chunks[rng.Intn(len(chunks))]))
		orig := readFile(t, chunk)
		at, b := rng.Intn(len(orig)), rng.Intn(8)
		if i == 0 { // the first flip lands in a URL's bytes: a file that reads well, with a wrong URL
			at = bytes.Index(orig, []byte("/img/")) + 2
		}
		flipBit(t, orig, chunk, at, b)
		what := fmt.Sprintf("flip %d (seed %d): %s byte %d bit %d", i, seed, filepath.Base(chunk), at, b)
		var log strings.Builder
		o := testEmbedOptions(list, dir)
		o.Logger = slog.New(slog.NewTextHandler(&log, nil))
		if err := runEmbed(testCtx(t), o); err != nil {
			t.Fatalf("%s: the resume failed: %v", what, err)
		}
		if !strings.Contains(log.String(), "damaged chunk file discarded; its rows will be redone") {
			t.Errorf("%s: the log does not say the chunk was discarded:\n%s", what, log.String())
		}
		sameResult(t, what, ref, readH5(t, filepath.Join(dir, embed.FinalName)))
	}
}

// runPeakRSS runs cmd and returns the largest peak resident set (VmHWM) seen of it and of its
// children (inspect and merge run in a child of clipd), sampled every 2 ms. The wait4 rusage
// cannot say it: a child started from this test process is charged this process's resident
// set from before its exec.
func runPeakRSS(cmd *exec.Cmd) int64 {
	if cmd.Start() != nil {
		return 0
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	var peak int64
	for {
		pid := cmd.Process.Pid
		peak = max(peak, vmHWM(pid))
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)); err == nil {
			for _, c := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(c); err == nil {
					peak = max(peak, vmHWM(n))
				}
			}
		}
		select {
		case <-done:
			return peak
		case <-time.After(2 * time.Millisecond):
		}
	}
}
