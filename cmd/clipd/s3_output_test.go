// s3_output_test.go: `clipd embed --output s3://bucket/prefix` against a real SeaweedFS on
// 127.0.0.1 (internal/objstore/s3test) and images from a server on 127.0.0.1: the final
// object equals a local run's file dataset by dataset; kill -9 of clipd, then a rerun with
// another staging folder (another machine) resumes from the bucket; the store SIGKILLed in
// the middle of the final upload and restarted, while a poller checks that no object ever
// stands under the final name unless complete; two shard runs to one prefix; and the
// refusals (wrong secret, missing bucket, unreachable endpoint) as exit 7 and one line, with
// nothing written. Each test starts its own store (a few seconds), so no TestMain is needed.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/embed"
	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/objstore/s3test"
)

// s3Objects lists the keys under prefix (recursively) with their sizes.
func s3Objects(t *testing.T, c *objstore.Client, bucket, prefix string) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	infos, err := c.List(ctx, objstore.Location{Bucket: bucket, Key: prefix})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, in := range infos {
		out[in.Key] = in.Size
	}
	return out
}

// s3Download fetches an object into a temporary file and returns its path.
func s3Download(t *testing.T, c *objstore.Client, bucket, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := filepath.Join(t.TempDir(), filepath.Base(key))
	if _, err := c.Download(ctx, objstore.Location{Bucket: bucket, Key: key}, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// sameFile checks that two clipd outputs hold the same datasets with the same values (the
// embeddings within float tolerance: batches may form differently) and the same attributes
// but the creation time and those named in ignore.
func sameFile(t *testing.T, what, want, got string, ignore ...string) {
	t.Helper()
	wd, wa := h5read(t, want)
	gd, ga := h5read(t, got)
	if !slices.Equal(slices.Sorted(slices.Values(datasetNames(wd))), slices.Sorted(slices.Values(datasetNames(gd)))) {
		t.Fatalf("%s: datasets %v, want %v", what, datasetNames(gd), datasetNames(wd))
	}
	for name, w := range wd {
		g := gd[name]
		if name == "embeddings" {
			wr, gr := w.([]any), g.([]any)
			if len(wr) != len(gr) {
				t.Fatalf("%s: %d embeddings, want %d", what, len(gr), len(wr))
			}
			for i := range wr {
				a, b := wr[i].([]any), gr[i].([]any)
				for k := range a {
					x, y := a[k].(float64), b[k].(float64)
					if math.Abs(x-y) > 1e-4*(1+math.Abs(x)) {
						t.Fatalf("%s: embeddings[%d][%d] = %v, want %v", what, i, k, y, x)
					}
				}
			}
			continue
		}
		if !reflect.DeepEqual(w, g) {
			t.Errorf("%s: dataset %s differs:\n got %.300v\nwant %.300v", what, name, g, w)
		}
	}
	for _, k := range append(ignore, "created") {
		delete(wa, k)
		delete(ga, k)
	}
	if !reflect.DeepEqual(wa, ga) {
		t.Errorf("%s: attributes differ:\n got %v\nwant %v", what, ga, wa)
	}
}

// s3Flags is the command line of a test run to an s3:// output.
func s3Flags(list, out, staging string, extra ...string) []string {
	return append(embedFlags(list, out, "--staging", staging), extra...)
}

// onlyLock checks that a staging folder holds nothing but its lock file.
func onlyLock(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != ".clipd.lock" {
			t.Errorf("the staging folder %s still holds %s", dir, e.Name())
		}
	}
}

// An embed to s3:// equals the same embed to a local folder, dataset by dataset; the bucket
// ends with the final object (and the --json statistics) only, the staging folder empty; the
// same command again is complete (exit 0) and another --limit is refused (exit 2).
func TestS3OutputEqualsLocal(t *testing.T) {
	s3 := s3test.Start(t)
	s3.SetEnv(t)
	bucket := s3.Bucket(t)
	c := s3.Client(t)
	img := newImageServer(t)
	list := writeList(t, append(manyURLs(img.URL, goodFiles(t), 30), img.URL+"/missing", img.URL+"/img/corrupt.jpg"))

	local := t.TempDir()
	if code, _, se := clipdRun(t, embedFlags(list, local)...); code != 0 {
		t.Fatalf("local run: exit %d: %s", code, se)
	}
	staging := t.TempDir()
	out := "s3://" + bucket + "/runs/a"
	code, so, se := clipdRun(t, s3Flags(list, out, staging, "--json")...)
	if code != 0 {
		t.Fatalf("s3 run: exit %d: %s", code, se)
	}
	if want := out + "/" + embed.FinalName; strings.TrimSpace(so) != want {
		t.Errorf("stdout %q, want the final object %s", so, want)
	}
	objs := s3Objects(t, c, bucket, "runs/")
	want := []string{"runs/a/" + embed.FinalName, "runs/a/Images_Embedded.stats.json"}
	if got := sortedKeys((objs)); !slices.Equal(got, want) {
		t.Errorf("the bucket holds %v, want %v (no chunks, no state)", got, want)
	}
	sameFile(t, "s3 output", embedFinal(local), s3Download(t, c, bucket, "runs/a/"+embed.FinalName))
	var st embed.Summary
	if err := json.Unmarshal(readFile(t, s3Download(t, c, bucket, "runs/a/Images_Embedded.stats.json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Output != out+"/"+embed.FinalName || st.Dir != out || st.Staging != staging || !st.Completed {
		t.Errorf("--json statistics: output %q dir %q staging %q completed %v", st.Output, st.Dir, st.Staging, st.Completed)
	}
	onlyLock(t, staging)

	// The same command, from another staging folder: complete, nothing fetched.
	before := img.requests.Load()
	code, so, se = clipdRun(t, s3Flags(list, out+"/", t.TempDir())...)
	if code != 0 || !strings.Contains(se, "run already complete") || strings.TrimSpace(so) != out+"/"+embed.FinalName {
		t.Errorf("the same run again: exit %d, %q %q", code, so, se)
	}
	if n := img.requests.Load() - before; n != 0 {
		t.Errorf("the complete run fetched %d URLs", n)
	}
	// --no-resume runs it all again and replaces the final object.
	before = img.requests.Load()
	if code, _, se := clipdRun(t, s3Flags(list, out, t.TempDir(), "--no-resume")...); code != 0 {
		t.Fatalf("--no-resume: exit %d: %s", code, se)
	}
	if n := img.requests.Load() - before; n < 30 {
		t.Errorf("--no-resume fetched %d URLs, want all 32", n)
	}
	sameFile(t, "s3 output after --no-resume", embedFinal(local), s3Download(t, c, bucket, "runs/a/"+embed.FinalName))
	if got := sortedKeys(s3Objects(t, c, bucket, "runs/")); !slices.Equal(got, want) {
		t.Errorf("after --no-resume the bucket holds %v, want %v", got, want)
	}
	code, _, se = clipdRun(t, s3Flags(list, out, staging, "--limit", "5")...)
	if code != exitUsage {
		t.Errorf("another --limit: exit %d, want %d", code, exitUsage)
	}
	oneLine(t, "another --limit", se, "was made by another run (limit 0, now 5)")

	// A run whose rows are known (here by --limit) and cannot fit in the staging folder's
	// free space says so in one line (and runs: the estimate may be wrong, and the rows
	// written are safe if the disk does fill up).
	code, _, se = clipdRun(t, s3Flags(list, "s3://"+bucket+"/runs/huge", t.TempDir(), "--limit", "1000000000000")...)
	if code != 0 {
		t.Errorf("a run with a huge --limit: exit %d: %s", code, se)
	}
	oneLine(t, "a run too large for the staging disk", se, "free, and this run is expected to need about")
}

func mapsKeys(m map[string]int64) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// countSums counts the chunk checksum files under prefix: the chunks complete in the bucket.
func countSums(c *objstore.Client, bucket, prefix string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	infos, err := c.List(ctx, objstore.Location{Bucket: bucket, Key: prefix})
	if err != nil {
		return 0
	}
	n := 0
	for _, in := range infos {
		if strings.HasSuffix(in.Key, ".h5.sha256") {
			n++
		}
	}
	return n
}

// kill -9 of clipd once the bucket holds 4 complete chunks, then a rerun with another staging
// folder (as on another machine): another --limit is refused by the bucket's state before any
// chunk is downloaded; the same command resumes from the bucket, fetches no URL of the uploaded
// chunks again, and the final object equals an uninterrupted run's, every URL once.
func TestS3OutputResumesOnAnotherMachine(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	s3 := s3test.Start(t)
	s3.SetEnv(t)
	bucket := s3.Bucket(t)
	c := s3.Client(t)
	img := newImageServer(t)
	img.delay.Store(int64(5 * time.Millisecond))
	urls := append(manyURLs(img.URL, goodFiles(t), 120), img.URL+"/missing")
	list := writeList(t, urls)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	ref := t.TempDir()
	if code, _, se := clipdRun(t, embedFlags(list, ref, "--chunk-size", "10")...); code != 0 {
		t.Fatalf("reference run: exit %d: %s", code, se)
	}
	out := "s3://" + bucket + "/job"
	const chunk = 10
	args := embedArgs(list, out, "--chunk-size", fmt.Sprint(chunk), "--staging", t.TempDir())
	cmd, log := startClipd(t, ctx, s3.Env(), args...)
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	killed := waitFor(ctx, exited, func() bool { return countSums(c, bucket, "job/") >= 4 })
	if killed {
		cmd.Process.Signal(syscall.SIGKILL)
	}
	<-exited
	if ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus); !killed || !ws.Signaled() {
		t.Fatalf("the first run ended before the kill: %s", log)
	}
	done := countSums(c, bucket, "job/")
	if _, ok := s3Objects(t, c, bucket, "job/")["job/"+embed.FinalName]; ok {
		t.Fatal("a killed run left a final object")
	}
	t.Logf("killed with %d complete chunks in the bucket", done)

	// Another run on the same prefix is refused by the state in the bucket, from any staging
	// folder, and the line names the bucket's folder.
	refused := t.TempDir()
	code, _, se := clipdRun(t, embedFlags(list, out, "--chunk-size", fmt.Sprint(chunk), "--staging", refused, "--limit", "7")...)
	if code != exitUsage {
		t.Errorf("another --limit on a run in progress: exit %d, want %d: %s", code, exitUsage, se)
	}
	oneLine(t, "another --limit on a run in progress", se, out+" (staged in ")
	if !strings.Contains(se, "limit 0, now 7") {
		t.Errorf("the refusal does not say what differs: %s", se)
	}
	if n := countChunks(refused); n != 0 || countSums(c, bucket, "job/") != done {
		t.Errorf("the refused run downloaded %d chunks, or changed the bucket", n)
	}

	before := img.requests.Load()
	other := t.TempDir()
	cmd, log = startClipd(t, ctx, s3.Env(), embedArgs(list, out, "--chunk-size", fmt.Sprint(chunk), "--staging", other, "--log-level", "info")...)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("rerun on another staging folder: %v\n%s", err, log)
	}
	if !strings.Contains(log.String(), "resuming from the bucket") {
		t.Errorf("the rerun did not say it resumed from the bucket:\n%s", log)
	}
	fetched := img.requests.Load() - before
	if max := int64(len(urls) - done*chunk); fetched > max || fetched == 0 {
		t.Errorf("the rerun fetched %d URLs; %d of %d were in the bucket's %d chunks, so at most %d were left", fetched, done*chunk, len(urls), done, max)
	}
	final := s3Download(t, c, bucket, "job/"+embed.FinalName)
	sameResult(t, "resumed from the bucket", readH5(t, embedFinal(ref)), readH5(t, final))
	if objs := s3Objects(t, c, bucket, "job/"); len(objs) != 1 {
		t.Errorf("the bucket holds %v, want the final object only", mapsKeys(objs))
	}
	onlyLock(t, other)
}

// syncBuffer is a bytes buffer safe for a process's output and a test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The store SIGKILLed in the middle of the final upload and restarted 3 s later: the run keeps
// trying, completes, and the final object equals an uninterrupted run's. A poller lists the
// bucket every 20 ms all along and records every size it sees under the final name: each must
// be the finished file's. The upload is made slow and many-parted: 1,600 URLs of 7 KB (the
// final file is over 11 MB), the hidden --test-s3-part-size at S3's smallest part (5 MiB,
// which SeaweedFS enforces as AWS does) and --test-s3-part-delay 1s (each part waits 1 s
// before it is sent), so the kill, 1.5 s after clipd logs "uploading the final file", lands
// between its first and its last part. Then clipd itself is killed -9 in its final upload, and
// the same command uploads the finished file its staging folder holds.
func TestS3OutputSurvivesStoreKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	s3 := s3test.Start(t)
	bucket := s3.Bucket(t)
	c := s3.Client(t)
	img := newImageServer(t)
	pad := "&pad=" + strings.Repeat("p", 7000)
	var urls []string
	for _, u := range manyURLs(img.URL, goodFiles(t), 1600) {
		urls = append(urls, u+pad)
	}
	urls = append(urls, img.URL+"/missing")
	list := writeList(t, urls)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	ref := t.TempDir()
	if code, _, se := clipdRun(t, embedFlags(list, ref, "--chunk-size", "800")...); code != 0 {
		t.Fatalf("reference run: exit %d: %s", code, se)
	}
	refInfo, err := os.Stat(embedFinal(ref))
	if err != nil {
		t.Fatal(err)
	}
	const partSize = 5 << 20
	if parts := (refInfo.Size() + partSize - 1) / partSize; parts < 3 {
		t.Fatalf("the final file is %d bytes: %d parts of 5 MiB are too few to stop the store between them", refInfo.Size(), parts)
	}

	finalKey := "kill/" + embed.FinalName
	var seen sync.Map // size -> true, of every object listed under the final name
	var listings, failedListings atomic.Int64
	stopPoll := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			select {
			case <-stopPoll:
				return
			case <-time.After(20 * time.Millisecond):
			}
			lctx, lcancel := context.WithTimeout(context.Background(), 2*time.Second)
			infos, err := c.List(lctx, objstore.Location{Bucket: bucket, Key: "kill/"})
			lcancel()
			if err != nil {
				failedListings.Add(1)
				continue
			}
			listings.Add(1)
			for _, in := range infos {
				if in.Key == finalKey {
					seen.Store(in.Size, true)
				}
			}
		}
	}()

	log := &syncBuffer{}
	args := embedArgs(list, "s3://"+bucket+"/kill", "--chunk-size", "800", "--staging", t.TempDir(), "--log-level", "info",
		"--test-s3-part-size", fmt.Sprint(partSize), "--test-s3-part-delay", "1s", "--test-s3-retry-for", "2m")
	args = slices.DeleteFunc(args, func(a string) bool { return a == "--quiet" })
	cmd := exec.CommandContext(ctx, clipdBinary(t), args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), s3.Env()...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var runErr error
	go func() { runErr = cmd.Wait(); close(exited) }()
	if !waitFor(ctx, exited, func() bool { return strings.Contains(log.String(), "uploading the final file") }) {
		t.Fatalf("no final upload:\n%s", log)
	}
	time.Sleep(1500 * time.Millisecond)
	s3.Kill()
	killedAt := listings.Load()
	time.Sleep(3 * time.Second)
	s3.Restart(t)
	select {
	case <-exited:
	case <-ctx.Done():
		t.Fatalf("the run did not end after the store came back:\n%s", log)
	}
	close(stopPoll)
	<-polled
	if runErr != nil {
		t.Fatalf("the run failed: %v\n%s", runErr, log)
	}
	var said []string
	for _, l := range strings.Split(log.String(), "\n") {
		if strings.Contains(l, "upload") || strings.Contains(l, "retrying") {
			said = append(said, l)
		}
	}
	t.Logf("clipd said:\n%s", strings.Join(said, "\n"))
	if !strings.Contains(log.String(), "retrying") {
		t.Errorf("the run never retried: the kill missed the upload\n%s", log)
	}
	final := s3Download(t, c, bucket, finalKey)
	st, _ := os.Stat(final)
	seen.Range(func(k, _ any) bool {
		if k.(int64) != st.Size() {
			t.Errorf("the poller saw %s with %d bytes; the finished object has %d", finalKey, k, st.Size())
		}
		return true
	})
	if killedAt == 0 || listings.Load() <= killedAt || failedListings.Load() == 0 {
		t.Errorf("the poller listed %d times before the kill, %d after, failed %d times: it did not watch the whole upload", killedAt, listings.Load()-killedAt, failedListings.Load())
	}
	sameResult(t, "after the store's kill", readH5(t, embedFinal(ref)), readH5(t, final))
	if objs := s3Objects(t, c, bucket, "kill/"); len(objs) != 1 {
		t.Errorf("the bucket holds %v, want the final object only", mapsKeys(objs))
	}
	actx, acancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer acancel()
	if n, err := c.AbortUploads(actx, objstore.Location{Bucket: bucket, Key: "kill/"}); err != nil || n != 0 {
		t.Errorf("%d unfinished uploads left in the bucket (%v)", n, err)
	}

	// clipd itself killed -9 in the middle of the final upload: the staging folder holds the
	// finished file, the bucket the chunks and state. The same command uploads the staged file
	// without fetching or merging anything again.
	staging := t.TempDir()
	args = embedArgs(list, "s3://"+bucket+"/kill2", "--chunk-size", "800", "--staging", staging, "--log-level", "info",
		"--test-s3-part-size", fmt.Sprint(partSize), "--test-s3-part-delay", "1s")
	args = slices.DeleteFunc(args, func(a string) bool { return a == "--quiet" })
	log2 := &syncBuffer{}
	cmd = exec.CommandContext(ctx, clipdBinary(t), args...)
	cmd.Stdout, cmd.Stderr = log2, log2
	cmd.Env = append(os.Environ(), s3.Env()...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited2 := make(chan struct{})
	go func() { cmd.Wait(); close(exited2) }()
	if !waitFor(ctx, exited2, func() bool { return strings.Contains(log2.String(), "uploading the final file") }) {
		t.Fatalf("no final upload:\n%s", log2)
	}
	time.Sleep(1500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited2
	if ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() {
		t.Fatalf("clipd ended before the kill:\n%s", log2)
	}
	objs := s3Objects(t, c, bucket, "kill2/")
	if _, ok := objs["kill2/"+embed.FinalName]; ok || len(objs) == 0 {
		t.Fatalf("after the kill the bucket holds %v: want the chunks and state, no final object", mapsKeys(objs))
	}
	// Had another run (here --limit 5) started on the prefix since, with --no-resume (its state
	// in the bucket), the staged file is not uploaded over it: refused, exit 2.
	stateLoc := objstore.Location{Bucket: bucket, Key: "kill2/.clipd-run.json"}
	state, err := c.ReadSmall(ctx, stateLoc, 1<<20)
	if err != nil || !strings.Contains(string(state), `"Limit": 0`) {
		t.Fatalf("the run's state in the bucket: %q (%v)", state, err)
	}
	if err := c.PutBytes(ctx, stateLoc, []byte(strings.Replace(string(state), `"Limit": 0`, `"Limit": 5`, 1)), nil); err != nil {
		t.Fatal(err)
	}
	s3.SetEnv(t)
	code, _, se := clipdRun(t, embedFlags(list, "s3://"+bucket+"/kill2", "--chunk-size", "800", "--staging", staging)...)
	if code != exitUsage {
		t.Errorf("the staged file over another run in progress: exit %d, want %d: %s", code, exitUsage, se)
	}
	oneLine(t, "the staged file over another run in progress", se, "s3://"+bucket+"/kill2 was written by a run with other settings (limit 5, now 0)")
	if err := c.PutBytes(ctx, stateLoc, state, nil); err != nil {
		t.Fatal(err)
	}

	before := img.requests.Load()
	cmd, out := startClipd(t, ctx, s3.Env(), args[:len(args)-4]...) // without the slow parts
	if err := cmd.Wait(); err != nil {
		t.Fatalf("rerun after the kill: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "holds this run's finished file: uploading it") {
		t.Errorf("the rerun did not upload the staged file:\n%s", out)
	}
	if n := img.requests.Load() - before; n != 0 {
		t.Errorf("the rerun fetched %d URLs", n)
	}
	sameResult(t, "after clipd's kill in the final upload", readH5(t, embedFinal(ref)), readH5(t, s3Download(t, c, bucket, "kill2/"+embed.FinalName)))
	if objs := s3Objects(t, c, bucket, "kill2/"); len(objs) != 1 {
		t.Errorf("the bucket holds %v, want the final object only", mapsKeys(objs))
	}
	onlyLock(t, staging)
}

// Two shard runs at once to one prefix, with the default staging folders of one cache: both
// shard folders complete in the bucket, nothing else; each with its rows, none in common, all
// URLs between them.
func TestS3OutputShards(t *testing.T) {
	s3 := s3test.Start(t)
	s3.SetEnv(t)
	bucket := s3.Bucket(t)
	c := s3.Client(t)
	img := newImageServer(t)
	urls := append(manyURLs(img.URL, goodFiles(t), 50), img.URL+"/missing")
	list := writeList(t, urls)
	cache := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]string, 2)
	for i := range 2 {
		wg.Go(func() {
			code, _, se := clipdRun(t, embedFlags(list, "s3://"+bucket+"/sharded/", "--shard", fmt.Sprintf("%d/2", i), "--cache-dir", cache)...)
			if code != 0 {
				errs[i] = fmt.Sprintf("shard %d: exit %d: %s", i, code, se)
			}
		})
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			t.Fatal(e)
		}
	}
	want := []string{"sharded/shard-00000-of-00002/" + embed.FinalName, "sharded/shard-00001-of-00002/" + embed.FinalName}
	if got := sortedKeys((s3Objects(t, c, bucket, "sharded/"))); !slices.Equal(got, want) {
		t.Fatalf("the bucket holds %v, want %v", got, want)
	}
	seen := map[string]int{}
	for i, key := range want {
		r := readH5(t, s3Download(t, c, bucket, key))
		if len(r.URLs) == 0 {
			t.Errorf("shard %d has no rows", i)
		}
		for _, u := range append(r.URLs, r.FailedURLs...) {
			if j, dup := seen[u]; dup {
				t.Errorf("%s in shard %d and shard %d", u, j, i)
			}
			seen[u] = i
		}
		if r.Attrs["shard"] != fmt.Sprintf("%d/2", i) {
			t.Errorf("shard %d's file says shard %q", i, r.Attrs["shard"])
		}
	}
	if len(seen) != len(urls) {
		t.Errorf("the shards hold %d URLs, want %d", len(seen), len(urls))
	}
	for i := range 2 {
		onlyLock(t, embed.Config{Output: "s3://" + bucket + "/sharded", CacheDir: cache, Shard: embed.Shard{Index: i, Count: 2}}.StagingDir())
	}

	// The end to end: `clipd merge s3://B/sharded/` joins what the two runs wrote:
	// every URL once, and the file equals the whole-input run's (the shard's attributes aside).
	code, so, se := clipdRun(t, "--quiet", "merge", "s3://"+bucket+"/sharded/", "--staging", t.TempDir())
	if code != 0 {
		t.Fatalf("clipd merge s3://%s/sharded/: exit %d: %s%s", bucket, code, so, se)
	}
	merged := readH5(t, s3Download(t, c, bucket, "sharded/"+embed.FinalName))
	once := map[string]int{}
	for _, u := range append(merged.URLs, merged.FailedURLs...) {
		once[u]++
	}
	for _, u := range urls {
		if once[u] != 1 {
			t.Errorf("%s is in the merged file %d times, want once", u, once[u])
		}
	}
	if len(once) != len(urls) {
		t.Errorf("the merged file holds %d URLs, want %d", len(once), len(urls))
	}
	whole := t.TempDir()
	if code, _, se := clipdRun(t, embedFlags(list, whole)...); code != 0 {
		t.Fatalf("whole-input run: exit %d: %s", code, se)
	}
	sameResult(t, "merged from the bucket", readH5(t, embedFinal(whole)), merged)
}

// The first end to end: an embed from an s3:// list of loopback URLs to an s3://
// output equals the same run from the local list to a local folder, dataset by dataset (the
// attributes that name the input, and so differ, aside).
func TestS3ListToS3OutputEqualsLocal(t *testing.T) {
	s3 := s3test.Start(t)
	s3.SetEnv(t)
	bucket := s3.Bucket(t)
	c := s3.Client(t)
	img := newImageServer(t)
	list := writeList(t, append(manyURLs(img.URL, goodFiles(t), 25), img.URL+"/missing", img.URL+"/img/corrupt.jpg"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Upload(ctx, list, objstore.Location{Bucket: bucket, Key: "lists/urls.txt"}, nil); err != nil {
		t.Fatal(err)
	}

	local := t.TempDir()
	if code, _, se := clipdRun(t, embedFlags(list, local)...); code != 0 {
		t.Fatalf("local run: exit %d: %s", code, se)
	}
	out := "s3://" + bucket + "/out"
	if code, _, se := clipdRun(t, s3Flags("s3://"+bucket+"/lists/urls.txt", out, t.TempDir())...); code != 0 {
		t.Fatalf("s3 -> s3 run: exit %d: %s", code, se)
	}
	got := s3Download(t, c, bucket, "out/"+embed.FinalName)
	sameFile(t, "s3 list to s3 output", embedFinal(local), got, "input", "input_fingerprint")
	if _, ga := h5read(t, got); ga["input"] != "s3://"+bucket+"/lists/urls.txt" || !strings.HasPrefix(fmt.Sprint(ga["input_fingerprint"]), "etag:") {
		t.Errorf("the s3 run's identity: input %v, fingerprint %v", ga["input"], ga["input_fingerprint"])
	}
}

// A store that refuses or cannot be reached: exit 7 and one line naming the location, before
// anything is written (no staging folder in the cache, no object in the bucket). An s3://
// output that names a file, and --staging with a local output, are exit 2.
func TestS3OutputRefused(t *testing.T) {
	s3 := s3test.Start(t)
	s3.SetEnv(t)
	bucket := s3.Bucket(t)
	c := s3.Client(t)
	img := newImageServer(t)
	list := writeList(t, manyURLs(img.URL, goodFiles(t), 5))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	for _, tc := range []struct {
		name   string
		env    map[string]string
		out    string
		extra  []string
		code   int
		wantIn string
	}{
		{"wrong secret", map[string]string{"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, "s3://" + bucket + "/x", nil, exitStorage, "rejects the credentials"},
		{"missing bucket", nil, "s3://no-such-bucket-" + bucket + "/x", nil, exitStorage, "does not exist"},
		{"unreachable endpoint", nil, "s3://" + bucket + "/x", []string{"--s3-endpoint", closed}, exitStorage, "cannot be reached"},
		{"a file name", nil, "s3://" + bucket + "/x/out.h5", nil, exitUsage, "wants a prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cache := t.TempDir()
			before := img.requests.Load()
			args := append(tc.extra, embedFlags(list, tc.out, "--cache-dir", cache)...)
			code, so, se := clipdRun(t, args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d: %s", code, tc.code, se)
			}
			oneLine(t, tc.name, se, tc.wantIn)
			t.Logf("exit %d: %s", code, strings.TrimSpace(se))
			if so != "" {
				t.Errorf("stdout %q", so)
			}
			if ents, _ := os.ReadDir(cache); len(ents) != 0 {
				t.Errorf("the cache folder holds %v", ents)
			}
			if n := img.requests.Load() - before; n != 0 {
				t.Errorf("%d URLs fetched", n)
			}
			if objs := s3Objects(t, c, bucket, ""); len(objs) != 0 {
				t.Errorf("the bucket holds %v", mapsKeys(objs))
			}
		})
	}
	code, _, se := clipdRun(t, embedFlags(list, t.TempDir(), "--staging", t.TempDir())...)
	if code != exitUsage {
		t.Errorf("--staging with a local output: exit %d, want %d", code, exitUsage)
	}
	oneLine(t, "--staging with a local output", se, "--staging applies only to s3:// outputs")
}

// Broken weights write nothing to an s3:// output either: the state and the chunks of other
// rows' failures (chunks of one row here, so that they are uploaded before the first batch's
// verdict) are removed from the bucket, and the staging folder the run created goes; the same
// command with good weights then runs as a first run.
func TestS3OutputBrokenWeightsLeaveNothing(t *testing.T) {
	s3 := s3test.Start(t)
	s3.SetEnv(t)
	bucket := s3.Bucket(t)
	c := s3.Client(t)
	img := newImageServer(t)
	colors := make([]color.RGBA, 24)
	for i := range colors {
		colors[i] = red
	}
	list, _ := imageList(t, colors)
	b, _ := os.ReadFile(list)
	os.WriteFile(list, append([]byte(img.URL+"/missing\n"+img.URL+"/missing?2\n"), b...), 0o644)
	staging := filepath.Join(t.TempDir(), "staging")
	out := "s3://" + bucket + "/broken"
	code, _, se := clipdRun(t, withWeights(s3Flags(list, out, staging, "--chunk-size", "1"), overflowingWeights(t))...)
	if code != exitBadWeights {
		t.Errorf("exit %d, want %d: %s", code, exitBadWeights, se)
	}
	oneLine(t, "broken weights", se, "are all non-finite (NaN or Inf)")
	if objs := s3Objects(t, c, bucket, ""); len(objs) != 0 {
		t.Errorf("the bucket holds %v", sortedKeys(objs))
	}
	if _, err := os.Stat(staging); err == nil {
		ents, _ := os.ReadDir(staging)
		t.Errorf("the staging folder %s was left behind: %v", staging, ents)
	}
	if code, _, se := clipdRun(t, s3Flags(list, out, staging)...); code != exitOK {
		t.Errorf("rerun with good weights: exit %d: %s", code, se)
	}
}
