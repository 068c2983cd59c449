// objects.go: rows that name s3:// objects, read through the S3 API with the run's
// credentials: bounded by MaxBodyBytes and the body budget like files, each within Timeout;
// a missing object, bucket or permission fails its row; a store that rejects the credentials
// or cannot be reached is reported to Options.Fatal instead, since every row would fail.

package read

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/pipeline/budget"
)

// Objects is what the stage needs of an S3 client; *objstore.Client is one.
type Objects interface {
	Open(ctx context.Context, l objstore.Location) (io.ReadCloser, objstore.Info, error)
	// Endpoint names the store in messages.
	Endpoint() string
}

// unansweredPerWorker times ObjectWorkers is how many object requests in a row may go
// unanswered within Timeout before the store counts as unreachable: every worker has waited
// out its deadline twice with not one answer between.
const unansweredPerWorker = 2

// loadObject reads the object u names, after taking its size from the budget; see load.
func (s *Stage) loadObject(ctx context.Context, u string) (body []byte, held int64, reason string) {
	loc, err := objstore.Parse(u)
	if err != nil {
		return nil, 0, "bad s3 URL"
	}
	if s.opt.Objects == nil {
		return nil, 0, "no S3 client for s3:// rows"
	}
	tctx, cancel := context.WithTimeout(ctx, s.opt.Timeout)
	defer cancel()
	rc, info, err := s.opt.Objects.Open(tctx, loc)
	if err != nil {
		return nil, 0, s.objectFailure(ctx, tctx, loc, err)
	}
	defer rc.Close()
	s.unanswered.Store(0)
	switch {
	case info.Size > s.opt.MaxBodyBytes:
		return nil, 0, fmt.Sprintf("too large (%d bytes, limit %d)", info.Size, s.opt.MaxBodyBytes)
	case info.Size <= 0:
		return nil, 0, "empty object"
	}
	held = info.Size
	if err := s.opt.Budget.Acquire(tctx, held); err != nil {
		var tooLarge *budget.TooLarge
		switch {
		case ctx.Err() != nil:
			return nil, 0, reasonCanceled
		case errors.As(err, &tooLarge):
			return nil, 0, fmt.Sprintf("too large for --memory (%v)", err)
		}
		return nil, 0, "s3 timeout"
	}
	buf := make([]byte, held)
	if _, err := io.ReadFull(rc, buf); err != nil {
		s.opt.Budget.Release(held)
		switch {
		case ctx.Err() != nil:
			return nil, 0, reasonCanceled
		case tctx.Err() != nil:
			return nil, 0, "s3 timeout"
		}
		return nil, 0, objstore.Reason(loc, err)
	}
	return buf, held, ""
}

// objectFailure is the reason of a request that got no object; reasonCanceled when ctx ended
// or when the failure went to Options.Fatal.
func (s *Stage) objectFailure(ctx, tctx context.Context, loc objstore.Location, err error) string {
	if ctx.Err() != nil {
		return reasonCanceled
	}
	if tctx.Err() != nil {
		most := int64(unansweredPerWorker * s.opt.ObjectWorkers)
		if n := s.unanswered.Add(1); n >= most && s.opt.Fatal != nil {
			s.opt.Fatal(&silentStore{msg: fmt.Sprintf("%s: %s answered none of %d requests in a row within --timeout %v; check --s3-endpoint / AWS_ENDPOINT_URL and the network",
				loc, s.opt.Objects.Endpoint(), n, s.opt.Timeout)})
			return reasonCanceled
		}
		return "s3 timeout"
	}
	if !errors.Is(err, objstore.ErrUnreachable) {
		s.unanswered.Store(0) // the store answered
	}
	if s.opt.Fatal != nil && (errors.Is(err, objstore.ErrCredentials) || errors.Is(err, objstore.ErrUnreachable)) {
		s.opt.Fatal(err)
		return reasonCanceled
	}
	return objstore.Reason(loc, err)
}

// silentStore is the error of a store that answers nothing: objstore.ErrUnreachable.
type silentStore struct{ msg string }

func (e *silentStore) Error() string { return e.msg }
func (e *silentStore) Unwrap() error { return objstore.ErrUnreachable }
