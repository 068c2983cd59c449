// read.go: the read stage (see package item for the stage contract): local paths and
// s3:// objects in, their bytes out; a missing, unreadable, empty, oversized or truncated
// file or object is a failure of stage "read".

package read

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clipd/clipd/internal/pipeline/budget"
	"github.com/clipd/clipd/internal/pipeline/item"
)

// Options tune the stage.
type Options struct {
	Workers      int   // files read at once; 0 = 4 (local disks gain little from more)
	MaxBodyBytes int64 // larger files fail "too large"; 0 = 32 MiB, as fetch
	Output       int   // capacity of the output channel; 0 = Workers
	// Budget, when set, bounds the bytes of the files alive at once: a file takes its size
	// before it is read (waiting while that does not fit) and gives it back when its body is
	// released. nil: no bound beyond MaxBodyBytes per file.
	Budget *budget.Budget

	// Objects reads the s3:// rows (see objects.go); nil: they fail "no S3 client".
	Objects Objects
	// ObjectWorkers is how many objects are read at once (their time is the network's, not
	// the disk's); 0 = 16.
	ObjectWorkers int
	// Timeout bounds one object's read, retries and the wait for the budget included;
	// 0 = 60 s.
	Timeout time.Duration
	// Fatal, when set, is told of an object read that every later one would fail the same
	// way: the store rejects the credentials or cannot be reached (objstore.ErrCredentials,
	// objstore.ErrUnreachable; the latter also after requests that all went unanswered
	// within Timeout). The row is left unjudged: the caller is expected to end the run, so
	// that a rerun once the store is fixed reads it. nil: such rows fail like any other.
	Fatal func(error)
}

// Stats are the stage's counters.
type Stats struct {
	OK, Failed int64
	Bytes      int64
	Busy       time.Duration // summed over workers
}

// Stage is a running read stage.
type Stage struct {
	opt                     Options
	out                     chan *item.Encoded
	ok, failed, bytes, busy atomic.Int64
	unanswered              atomic.Int64 // object requests in a row that timed out without an answer
}

// Start reads the file of each item of in (Item.URL is its absolute path). Bodies come out
// on Out; failures go to fails. Once ctx ends, items read from in are dropped unjudged.
func Start(ctx context.Context, in <-chan item.Item, fails chan<- item.Failure, opt Options) *Stage {
	if opt.Workers <= 0 {
		opt.Workers = 4
	}
	if opt.MaxBodyBytes <= 0 {
		opt.MaxBodyBytes = 32 << 20
	}
	if opt.Output <= 0 {
		opt.Output = opt.Workers
	}
	if opt.ObjectWorkers <= 0 {
		opt.ObjectWorkers = 16
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 60 * time.Second
	}
	s := &Stage{opt: opt, out: make(chan *item.Encoded, opt.Output)}
	// Objects have a pool of their own: a slow store does not hold up the disk. The file
	// workers pass them on.
	objects := make(chan item.Item)
	var wg, fileWorkers sync.WaitGroup
	work := func(in <-chan item.Item, load func(item.Item) (body []byte, held int64, reason string)) {
		for it := range in {
			if ctx.Err() != nil {
				continue // drain: unjudged, left for the next run
			}
			if in != objects && it.Object() {
				objects <- it
				continue
			}
			t := time.Now()
			body, held, reason := load(it)
			s.busy.Add(int64(time.Since(t)))
			if reason == reasonCanceled {
				continue // ctx ended while waiting for the budget: unjudged
			}
			if reason != "" {
				s.failed.Add(1)
				fails <- item.Failure{Item: it, Stage: "read", Reason: reason}
				continue
			}
			s.ok.Add(1)
			s.bytes.Add(int64(len(body)))
			s.out <- item.NewEncoded(it, body, func() { s.opt.Budget.Release(held) })
		}
	}
	for range opt.Workers {
		fileWorkers.Go(func() {
			work(in, func(it item.Item) ([]byte, int64, string) { return s.load(ctx, it.URL) })
		})
	}
	for range opt.ObjectWorkers {
		wg.Go(func() {
			work(objects, func(it item.Item) ([]byte, int64, string) { return s.loadObject(ctx, it.URL) })
		})
	}
	go func() { fileWorkers.Wait(); close(objects); wg.Wait(); close(s.out) }()
	return s
}

// Out is the stage's output, closed after the last body.
func (s *Stage) Out() <-chan *item.Encoded { return s.out }

// Stats returns the counters so far.
func (s *Stage) Stats() Stats {
	return Stats{OK: s.ok.Load(), Failed: s.failed.Load(), Bytes: s.bytes.Load(), Busy: time.Duration(s.busy.Load())}
}

// reasonCanceled is load's reason when ctx ended while it waited for the budget.
const reasonCanceled = "canceled"

// load reads path whole into a buffer of its size, after taking that size from the budget,
// and returns the bytes and what they hold of the budget, or says why not in a short reason
// (nothing is held then).
func (s *Stage) load(ctx context.Context, path string) (body []byte, held int64, reason string) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, reasonOf(err)
	}
	defer f.Close()
	st, err := f.Stat()
	switch {
	case err != nil:
		return nil, 0, reasonOf(err)
	case !st.Mode().IsRegular():
		return nil, 0, "not a regular file"
	case st.Size() > s.opt.MaxBodyBytes:
		return nil, 0, fmt.Sprintf("too large (%d bytes, limit %d)", st.Size(), s.opt.MaxBodyBytes)
	case st.Size() == 0:
		return nil, 0, "empty file"
	}
	// One byte past the size: a file that grew while it was read is seen to have grown.
	held = st.Size() + 1
	if err := s.opt.Budget.Acquire(ctx, held); err != nil {
		if ctx.Err() != nil {
			return nil, 0, reasonCanceled
		}
		return nil, 0, fmt.Sprintf("too large for --memory (%v)", err)
	}
	buf := make([]byte, held)
	n, err := io.ReadFull(f, buf)
	switch {
	case err == nil:
		s.opt.Budget.Release(held)
		return nil, 0, fmt.Sprintf("changed while it was read (grew past its %d bytes)", st.Size())
	case err != io.ErrUnexpectedEOF && err != io.EOF:
		s.opt.Budget.Release(held)
		return nil, 0, reasonOf(err)
	case int64(n) < st.Size():
		// the file shrank while it was read (being rewritten): not the image it was listed as
		s.opt.Budget.Release(held)
		return nil, 0, fmt.Sprintf("truncated (read %d of %d bytes)", n, st.Size())
	}
	return buf[:n], held, ""
}

func reasonOf(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "file not found"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return "read error: " + pe.Err.Error()
	}
	return "read error: " + err.Error()
}
