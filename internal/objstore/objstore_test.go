package objstore_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/objstore/s3test"
)

func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in, bucket, key string
		bad             bool
	}{
		{in: "s3://b/k/x.txt", bucket: "b", key: "k/x.txt"},
		{in: "S3://b/", bucket: "b", key: ""},
		{in: "s3://b", bucket: "b", key: ""},
		{in: "s3:///k", bad: true},
		{in: "http://b/k", bad: true},
		{in: "s3://b c/k", bad: true},
	} {
		l, err := objstore.Parse(c.in)
		if (err != nil) != c.bad {
			t.Errorf("Parse(%q) error %v, want bad=%v", c.in, err, c.bad)
			continue
		}
		if !c.bad && (l.Bucket != c.bucket || l.Key != c.key) {
			t.Errorf("Parse(%q) = %+v, want %s %s", c.in, l, c.bucket, c.key)
		}
	}
	l, _ := objstore.Parse("s3://b/out")
	if got := l.Join("shard-1", "x.h5").String(); got != "s3://b/out/shard-1/x.h5" {
		t.Errorf("Join = %s", got)
	}
	if got := l.Dir().Join("x").String(); got != "s3://b/out/x" {
		t.Errorf("Dir.Join = %s", got)
	}
}

// A multipart upload of 3 parts and a one-PUT upload read back byte for byte; listing,
// removal and the unfinished uploads a killed one leaves.
func TestUploadDownloadListDelete(t *testing.T) {
	srv := s3test.Shared(t)
	bucket := srv.Bucket(t)
	ctx := context.Background()
	c, err := objstore.New(ctx, objstore.Options{Endpoint: srv.Endpoint, AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey, PartSize: 5 << 20})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	big := make([]byte, 12<<20+12345)
	rand.NewChaCha8([32]byte{1}).Read(big)
	small := []byte("hello s3")
	for name, data := range map[string][]byte{"big.bin": big, "small.bin": small} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		l := objstore.Location{Bucket: bucket, Key: "in/" + name}
		if err := c.Upload(ctx, p, l, map[string]string{"clipd-test": "1"}); err != nil {
			t.Fatal(err)
		}
		got := filepath.Join(dir, name+".back")
		info, err := c.Download(ctx, l, got)
		if err != nil {
			t.Fatal(err)
		}
		back, _ := os.ReadFile(got)
		if !bytes.Equal(back, data) || info.Size != int64(len(data)) {
			t.Fatalf("%s: read back %d bytes (info %d), want %d equal", name, len(back), info.Size, len(data))
		}
		h, err := c.Head(ctx, l)
		if err != nil || h.Metadata["clipd-test"] != "1" {
			t.Fatalf("%s: head %+v %v: want metadata clipd-test=1", name, h, err)
		}
	}
	list, err := c.List(ctx, objstore.Location{Bucket: bucket, Key: "in/"})
	if err != nil || len(list) != 2 || list[0].Key != "in/big.bin" || list[1].Key != "in/small.bin" {
		t.Fatalf("List = %+v %v", list, err)
	}
	if err := c.Delete(ctx, list[0].Location, objstore.Location{Bucket: bucket, Key: "in/never-there"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Head(ctx, list[0].Location); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("head of a removed object: %v, want ErrNotFound", err)
	}
	if n, err := c.AbortUploads(ctx, objstore.Location{Bucket: bucket, Key: "in/"}); err != nil || n != 0 {
		t.Fatalf("AbortUploads = %d, %v; want 0 (every upload completed or aborted)", n, err)
	}
}

// The failures a user meets first, each one line naming the cause and what to do.
func TestErrorsAreClassified(t *testing.T) {
	srv := s3test.Shared(t)
	bucket := srv.Bucket(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	good := objstore.Options{Endpoint: srv.Endpoint, AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey, MaxAttempts: 2}

	wrong := good
	wrong.SecretKey = "not-the-secret"
	c, _ := objstore.New(ctx, wrong)
	err := c.CheckBucket(ctx, bucket)
	expect(t, "wrong secret", err, objstore.ErrCredentials, "rejects the credentials")

	unknown := good
	unknown.AccessKey = "nobody"
	c, _ = objstore.New(ctx, unknown)
	_, err = c.List(ctx, objstore.Location{Bucket: bucket})
	expect(t, "unknown key", err, objstore.ErrCredentials, "rejects the credentials")

	c, _ = objstore.New(ctx, good)
	expect(t, "missing bucket", c.CheckBucket(ctx, "no-such-bucket-here"), objstore.ErrNoBucket, `bucket "no-such-bucket-here" does not exist`)
	_, err = c.List(ctx, objstore.Location{Bucket: "no-such-bucket-here", Key: "x/"})
	expect(t, "listing a missing bucket", err, objstore.ErrNoBucket, "does not exist")
	_, err = c.Head(ctx, objstore.Location{Bucket: bucket, Key: "nothing"})
	expect(t, "missing key", err, objstore.ErrNotFound, "no such object")

	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	down := good
	down.Endpoint = dead
	c, _ = objstore.New(ctx, down)
	start := time.Now()
	expect(t, "unreachable endpoint", c.CheckBucket(ctx, bucket), objstore.ErrUnreachable, "cannot be reached")
	t.Logf("unreachable endpoint reported after %v", time.Since(start).Round(time.Millisecond))
}

func expect(t *testing.T, what string, err, class error, text string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: no error", what)
	case !errors.Is(err, class):
		t.Errorf("%s: %v; want %v", what, err, class)
	case !objstore.Refused(err) && class != objstore.ErrNotFound:
		t.Errorf("%s: Refused(%v) = false", what, err)
	case !strings.Contains(err.Error(), text) || strings.Contains(err.Error(), "\n"):
		t.Errorf("%s: message %q; want one line containing %q", what, err, text)
	default:
		t.Logf("%s: %v", what, err)
	}
}
