// s3test_test.go: the test server holds what a test package asks of it.
package s3test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/objstore"
)

// TestManyBuckets: one server stores an object in each of 12 buckets (a package's tests make
// one bucket each; with -volume.max=50 the 8th failed with HTTP 500, no free volumes).
func TestManyBuckets(t *testing.T) {
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := filepath.Join(t.TempDir(), "x")
	if err := os.WriteFile(f, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := s.Client(t)
	for i := 0; i < 12; i++ {
		l := objstore.Location{Bucket: s.Bucket(t), Key: "k"}
		if err := c.Upload(ctx, f, l, nil); err != nil {
			t.Fatalf("bucket %d: %v", i+1, err)
		}
		if b, err := c.ReadSmall(ctx, l, 10); err != nil || string(b) != "hello" {
			t.Fatalf("bucket %d: read back %q, %v", i+1, b, err)
		}
	}
}
