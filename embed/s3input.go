// s3input.go: the S3 client of a run's s3:// input and of the s3:// rows of its lists, made
// on first use, so that a run that names no object never reads the AWS configuration.

package embed

import (
	"context"
	"io"
	"sync"

	"github.com/clipd/clipd/internal/objstore"
)

// objects is an objstore.Client made from the run's S3 settings when first needed; a
// configuration that cannot be read is every call's error (objstore.ErrCredentials).
type objects struct {
	opt  objstore.Options
	once sync.Once
	c    *objstore.Client
	err  error
}

func newObjects(s S3) *objects { return &objects{opt: s.Options()} }

func (o *objects) client(ctx context.Context) (*objstore.Client, error) {
	o.once.Do(func() { o.c, o.err = objstore.New(context.WithoutCancel(ctx), o.opt) })
	return o.c, o.err
}

// Open streams an object (source and read stages).
func (o *objects) Open(ctx context.Context, l objstore.Location) (io.ReadCloser, objstore.Info, error) {
	c, err := o.client(ctx)
	if err != nil {
		return nil, objstore.Info{}, err
	}
	return c.Open(ctx, l)
}

// OpenFrom streams an object from an offset on, while it is the same version (a list's
// stream that lost its connection goes on).
func (o *objects) OpenFrom(ctx context.Context, l objstore.Location, offset int64, etag string) (io.ReadCloser, objstore.Info, error) {
	c, err := o.client(ctx)
	if err != nil {
		return nil, objstore.Info{}, err
	}
	return c.OpenFrom(ctx, l, offset, etag)
}

// Head describes an object (tar shards named one by one).
func (o *objects) Head(ctx context.Context, l objstore.Location) (objstore.Info, error) {
	c, err := o.client(ctx)
	if err != nil {
		return objstore.Info{}, err
	}
	return c.Head(ctx, l)
}

// List lists a prefix (tar shards named by a glob).
func (o *objects) List(ctx context.Context, l objstore.Location) ([]objstore.Info, error) {
	c, err := o.client(ctx)
	if err != nil {
		return nil, err
	}
	return c.List(ctx, l)
}

// Endpoint names the store in messages.
func (o *objects) Endpoint() string {
	if o.c == nil {
		if o.opt.Endpoint != "" {
			return o.opt.Endpoint
		}
		return "the S3 endpoint"
	}
	return o.c.Endpoint()
}
