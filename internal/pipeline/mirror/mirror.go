// mirror.go: the Mirror: what the bucket holds of a run (Look), filling the staging folder
// from it (Pull), the background uploader of finished chunks (Start, Committed, Wait), the
// final upload and the bucket's cleanup (Publish), and the retries that carry a run over a
// store that restarts.

package mirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/pipeline/outfile"
	"github.com/clipd/clipd/internal/pipeline/sink"
)

// DefaultRetryFor is how long one transfer is retried while the store fails or cannot be
// reached (a store restarting, a network outage) before the run gives up.
const DefaultRetryFor = 5 * time.Minute

// checksumSuffix is the suffix of a chunk's checksum file (outfile.ChecksumPath).
const checksumSuffix = ".sha256"

// Options configure a Mirror.
type Options struct {
	Client *objstore.Client
	Dir    string            // the staging folder: the run's local output folder
	Remote objstore.Location // the run's folder in the bucket (a prefix: P/ or P/shard-.../)
	// RetryFor bounds the retries of one transfer; 0 = DefaultRetryFor.
	RetryFor time.Duration
	// Queue is how many finished chunks may wait for their upload before Committed blocks
	// the writer; 0 = 64.
	Queue  int
	Logger *slog.Logger
}

// Mirror copies one run's output folder to its bucket prefix. Look, Pull, Start, Wait and
// Publish are called in that order from one goroutine; Committed from the sink's writer.
type Mirror struct {
	opt Options
	c   *objstore.Client
	log *slog.Logger

	same map[string]bool // chunk files whose bucket copy equals the staging folder's (Pull)

	queue chan string
	dead  chan struct{} // closed when the uploader stopped on an error
	wg    sync.WaitGroup
	err   error // the uploader's error; read after wg.Wait

	mu       sync.Mutex
	uploaded []string // names this run uploaded (Forget)
}

// New makes a Mirror; it does not connect.
func New(opt Options) *Mirror {
	if opt.RetryFor <= 0 {
		opt.RetryFor = DefaultRetryFor
	}
	if opt.Queue <= 0 {
		opt.Queue = 64
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	opt.Remote = opt.Remote.Dir()
	return &Mirror{opt: opt, c: opt.Client, log: opt.Logger, same: map[string]bool{}, dead: make(chan struct{})}
}

// Remote is the run's folder in the bucket.
func (m *Mirror) Remote() objstore.Location { return m.opt.Remote }

// FinalLocation is where the finished file goes.
func (m *Mirror) FinalLocation() objstore.Location { return m.opt.Remote.Join(outfile.FinalName) }

// Check fails when the bucket cannot be used (one line; objstore.Refused tells a refusal),
// and aborts the unfinished multipart uploads a killed run left under the run's names
// (invisible, but stored and billed).
func (m *Mirror) Check(ctx context.Context) error {
	if err := m.c.CheckBucket(ctx, m.opt.Remote.Bucket); err != nil {
		return err
	}
	n, err := m.c.AbortUploads(ctx, m.opt.Remote.Join("Images_Embedded"))
	if err != nil {
		return err
	}
	if n > 0 {
		m.log.Info("aborted unfinished uploads of an earlier run", "prefix", m.opt.Remote.String(), "uploads", n)
	}
	return nil
}

// Contents is what the bucket holds of the run.
type Contents struct {
	State  bool                     // the run's state file (.clipd-run.json)
	Final  *objstore.Info           // the finished file, with its user metadata; nil when none
	Chunks map[string]objstore.Info // chunk files and their checksum files, by name
}

// Look lists the run's folder in the bucket (its own objects, not those of shard folders
// below it) and describes its finished file.
func (m *Mirror) Look(ctx context.Context) (Contents, error) {
	c := Contents{Chunks: map[string]objstore.Info{}}
	var infos []objstore.Info
	err := m.retry(ctx, func() error {
		var err error
		infos, err = m.c.List(ctx, m.opt.Remote)
		return err
	})
	if err != nil {
		return c, err
	}
	final := false
	for _, in := range infos {
		name := strings.TrimPrefix(in.Key, m.opt.Remote.Key)
		switch {
		case strings.Contains(name, "/"): // a shard folder's, or another run's below this one
		case name == sink.StateName:
			c.State = true
		case name == outfile.FinalName:
			final = true
		case outfile.IsChunkName(strings.TrimSuffix(name, checksumSuffix)):
			c.Chunks[name] = in
		}
	}
	if final {
		var info objstore.Info
		err := m.retry(ctx, func() error {
			var err error
			info, err = m.c.Head(ctx, m.FinalLocation())
			return err
		})
		switch {
		case err == nil:
			c.Final = &info
		case !errors.Is(err, objstore.ErrNotFound): // removed since the listing: none
			return c, err
		}
	}
	return c, nil
}

// Clear removes the run's objects from the bucket: the state file first (chunks without it
// are never resumed), then the chunks, then the finished file when final is set.
func (m *Mirror) Clear(ctx context.Context, c Contents, final bool) error {
	var ls []objstore.Location
	if c.State {
		ls = append(ls, m.opt.Remote.Join(sink.StateName))
	}
	for _, name := range sortedNames(c.Chunks) {
		ls = append(ls, m.opt.Remote.Join(name))
	}
	if final && c.Final != nil {
		ls = append(ls, m.FinalLocation())
	}
	return m.delete(ctx, ls...)
}

// Pull makes the staging folder hold what the bucket holds of the run: its state file and
// every chunk with its checksum file that the folder lacks or holds differently (the
// bucket's copy wins). A chunk in the bucket without its checksum file is untrusted (an
// upload cut between the two) and removed from the bucket, and so is a checksum file
// without its chunk. Chunks only the folder holds (finished, not yet uploaded) stay; Start
// uploads them. sink.Open then verifies every chunk against its checksum.
func (m *Mirror) Pull(ctx context.Context, c Contents) error {
	if err := m.PullState(ctx, c); err != nil {
		return err
	}
	return m.PullChunks(ctx, c)
}

// PullState downloads the bucket's state file into the staging folder, when there is one:
// a run checks it (sink.CheckState) before it downloads any chunk.
func (m *Mirror) PullState(ctx context.Context, c Contents) error {
	return m.PullStateTo(ctx, c, m.opt.Dir)
}

// PullStateTo downloads the bucket's state file into dir, when there is one.
func (m *Mirror) PullStateTo(ctx context.Context, c Contents, dir string) error {
	if !c.State {
		return nil
	}
	loc := m.opt.Remote.Join(sink.StateName)
	return m.retry(ctx, func() error { _, err := m.c.Download(ctx, loc, filepath.Join(dir, sink.StateName)); return err })
}

// PullChunks is Pull's part after PullState: the chunks.
func (m *Mirror) PullChunks(ctx context.Context, c Contents) error {
	pulled, bytesPulled := 0, int64(0)
	for _, name := range sortedNames(c.Chunks) {
		info := c.Chunks[name]
		if chunk, ok := strings.CutSuffix(name, checksumSuffix); ok {
			if _, ok := c.Chunks[chunk]; !ok {
				if err := m.delete(ctx, info.Location); err != nil {
					return err
				}
			}
			continue
		}
		sumInfo, ok := c.Chunks[name+checksumSuffix]
		if !ok {
			m.log.Info("a chunk in the bucket has no checksum file (its upload was cut short): not trusted, removed from the bucket", "chunk", info.Location.String())
			if err := m.delete(ctx, info.Location); err != nil {
				return err
			}
			continue
		}
		var sum []byte
		if err := m.retry(ctx, func() error { var err error; sum, err = m.c.ReadSmall(ctx, sumInfo.Location, 1<<10); return err }); err != nil {
			return err
		}
		path := filepath.Join(m.opt.Dir, name)
		localSum, _ := os.ReadFile(outfile.ChecksumPath(path))
		if st, err := os.Stat(path); err == nil && st.Size() == info.Size && bytes.Equal(bytes.TrimSpace(sum), bytes.TrimSpace(localSum)) {
			m.same[name] = true
			continue
		}
		// The checksum goes first and comes back last: a crash in between leaves a chunk
		// without its checksum, which sink.Open removes, never a mismatched pair it trusts.
		if err := outfile.Remove(outfile.ChecksumPath(path)); err != nil {
			return err
		}
		if err := m.retry(ctx, func() error { _, err := m.c.Download(ctx, info.Location, path); return err }); err != nil {
			return err
		}
		if err := outfile.WriteFile(outfile.ChecksumPath(path), sum); err != nil {
			return err
		}
		m.same[name] = true
		pulled++
		bytesPulled += info.Size
		m.log.Debug("chunk downloaded from the bucket", "chunk", info.Location.String(), "bytes", info.Size)
	}
	if c.State || pulled > 0 {
		m.log.Info("resuming from the bucket", "prefix", m.opt.Remote.String(), "chunks downloaded", pulled, "bytes", bytesPulled, "chunks already staged", len(m.same)-pulled)
	}
	return nil
}

// Start brings the bucket in line with the staging folder as sink.Open left it: it removes
// the chunks the folder no longer holds (found damaged, or discarded by --no-resume),
// uploads the state file (before any chunk: a chunk is resumed only with its run's state),
// queues the folder's chunks the bucket lacks, and starts the uploader. onErr is called once,
// from the uploader, when an upload fails for good (after RetryFor).
func (m *Mirror) Start(ctx context.Context, onErr func(error)) error {
	c, err := m.Look(ctx)
	if err != nil {
		return err
	}
	local, err := outfile.ListChunks(m.opt.Dir)
	if err != nil {
		return outfile.WrapRead(m.opt.Dir, err)
	}
	have := map[string]bool{}
	for _, ch := range local {
		have[filepath.Base(ch.Path)] = true
	}
	var gone []objstore.Location
	for _, name := range sortedNames(c.Chunks) {
		if !have[strings.TrimSuffix(name, checksumSuffix)] {
			gone = append(gone, c.Chunks[name].Location)
		}
	}
	if len(gone) > 0 {
		m.log.Info("removing from the bucket the chunks the staging folder discarded", "objects", len(gone))
		if err := m.delete(ctx, gone...); err != nil {
			return err
		}
	}
	if err := m.put(ctx, filepath.Join(m.opt.Dir, sink.StateName)); err != nil {
		return err
	}
	// Uploads outlive an interruption of the run: the chunks it finished still go up (Wait
	// waits for them), so that a rerun on another machine finds them.
	up := context.WithoutCancel(ctx)
	m.queue = make(chan string, m.opt.Queue)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for path := range m.queue {
			if m.err != nil {
				continue // drain: Committed never blocks on a dead uploader
			}
			if err := m.pushChunk(up, path); err != nil {
				m.err = err
				close(m.dead)
				if onErr != nil {
					onErr(err)
				}
			}
		}
	}()
	for _, ch := range local {
		if !m.same[filepath.Base(ch.Path)] {
			m.Committed(ch.Path)
		}
	}
	return nil
}

// Committed queues a finished chunk for upload (sink.Options.Committed). It blocks while the
// queue is full, unless the uploader has stopped on an error.
func (m *Mirror) Committed(path string) {
	select {
	case m.queue <- path:
	case <-m.dead:
	}
}

// Wait waits until every queued chunk is uploaded and returns the uploader's error. No
// Committed may come after it.
func (m *Mirror) Wait() error {
	if m.queue == nil {
		return nil
	}
	close(m.queue)
	m.wg.Wait()
	return m.err
}

// pushChunk uploads a chunk, then its checksum file: a chunk in the bucket is trusted only
// once both are there.
func (m *Mirror) pushChunk(ctx context.Context, path string) error {
	if err := m.put(ctx, path); err != nil {
		return err
	}
	if err := m.put(ctx, outfile.ChecksumPath(path)); err != nil {
		return err
	}
	m.log.Debug("chunk uploaded", "chunk", m.opt.Remote.Join(filepath.Base(path)).String())
	return nil
}

// put uploads the staging folder's file path under its name, retrying.
func (m *Mirror) put(ctx context.Context, path string) error {
	loc := m.opt.Remote.Join(filepath.Base(path))
	if err := m.retry(ctx, func() error { return m.c.Upload(ctx, path, loc, nil) }); err != nil {
		return err
	}
	m.mu.Lock()
	m.uploaded = append(m.uploaded, filepath.Base(path))
	m.mu.Unlock()
	return nil
}

// Publish uploads the finished file at path with its user metadata (the object appears only
// once complete), then removes the run's state and chunks from the bucket (state first) and
// the unfinished uploads that killed attempts left. A crash at any point leaves the chunks
// with their state, or the finished file, complete in the bucket.
func (m *Mirror) Publish(ctx context.Context, path string, meta map[string]string) error {
	loc := m.FinalLocation()
	st, err := os.Stat(path)
	if err != nil {
		return outfile.WrapRead(path, err)
	}
	m.log.Info("uploading the final file", "to", loc.String(), "bytes", st.Size())
	t := time.Now()
	if err := m.retry(ctx, func() error { return m.c.Upload(ctx, path, loc, meta) }); err != nil {
		return err
	}
	m.log.Info("final file uploaded", "to", loc.String(), "bytes", st.Size(), "seconds", time.Since(t).Round(time.Millisecond).Seconds())
	c, err := m.Look(ctx)
	if err != nil {
		return err
	}
	if err := m.Clear(ctx, c, false); err != nil {
		return err
	}
	if _, err := m.c.AbortUploads(ctx, m.opt.Remote.Join("Images_Embedded")); err != nil {
		m.log.Warn("cannot abort the unfinished uploads of killed attempts", "prefix", m.opt.Remote.String(), "err", err.Error())
	}
	return nil
}

// Forget removes from the bucket what this run uploaded (its state file and chunks): for a
// run that must leave nothing (broken weights) and resumed nothing.
func (m *Mirror) Forget(ctx context.Context) error {
	m.mu.Lock()
	names := slices.Clone(m.uploaded)
	m.mu.Unlock()
	var ls []objstore.Location
	for _, n := range names {
		ls = append(ls, m.opt.Remote.Join(n))
	}
	return m.delete(ctx, ls...)
}

// delete removes objects, retrying.
func (m *Mirror) delete(ctx context.Context, ls ...objstore.Location) error {
	for _, l := range ls {
		if err := m.retry(ctx, func() error { return m.c.Delete(ctx, l) }); err != nil {
			return err
		}
	}
	return nil
}

// retry calls fn until it succeeds, fails in a way a retry cannot mend (credentials, access,
// a missing object, a local file), ctx ends, or RetryFor has passed since the first failure,
// waiting 0.5 s, 1 s, 2 s ... (at most 5 s) between tries. The SDK already retries 5xx and
// throttling; this carries a run over a store that refuses connections while it restarts.
func (m *Mirror) retry(ctx context.Context, fn func() error) error {
	var start time.Time
	wait := 500 * time.Millisecond
	for try := 1; ; try++ {
		err := fn()
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return err
		}
		if start.IsZero() {
			start = time.Now()
		}
		if time.Since(start) >= m.opt.RetryFor {
			return fmt.Errorf("%w (retried for %s)", err, m.opt.RetryFor)
		}
		m.log.Warn("object storage request failed; retrying", "try", try, "in", wait.String(), "err", err.Error())
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// retryable reports whether another try may succeed: not after a refusal of the
// credentials or access, a missing object, a local file's error, or a request the store
// calls malformed (HTTP 400: EntityTooSmall, InvalidArgument, ...). A missing bucket or
// upload is retried: a store that restarts may say so until it has loaded its metadata.
func retryable(err error) bool {
	var pe *fs.PathError
	var status interface{ HTTPStatusCode() int }
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, objstore.ErrCredentials), errors.Is(err, objstore.ErrAccessDenied), errors.Is(err, objstore.ErrNotFound):
		return false
	case errors.As(err, &pe): // a local file
		return false
	case errors.As(err, &status) && status.HTTPStatusCode() == 400:
		return false
	}
	return true
}

// sortedNames is the names of a listing in order (chunks before their checksum files).
func sortedNames(m map[string]objstore.Info) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
