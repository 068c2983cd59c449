package objstore_test

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/objstore/s3test"
)

// OpenFrom reads the rest of the same version of an object; a version written since is
// ErrChanged, not the other object's bytes.
func TestOpenFrom(t *testing.T) {
	srv := s3test.Shared(t)
	c := srv.Client(t)
	l := objstore.Location{Bucket: srv.Bucket(t), Key: "list.txt"}
	ctx := context.Background()
	if err := c.PutBytes(ctx, l, []byte("0123456789"), nil); err != nil {
		t.Fatal(err)
	}
	info, err := c.Head(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	body, rest, err := c.OpenFrom(ctx, l, 4, info.ETag)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(body)
	body.Close()
	if err != nil || string(b) != "456789" || rest.Size != 6 || rest.ETag != info.ETag {
		t.Fatalf("from 4: %q %v, info %+v", b, err, rest)
	}
	if err := c.PutBytes(ctx, l, []byte("other bytes"), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.OpenFrom(ctx, l, 4, info.ETag); !errors.Is(err, objstore.ErrChanged) || objstore.Refused(err) {
		t.Fatalf("after the object was written again: %v, want ErrChanged", err)
	}
}
