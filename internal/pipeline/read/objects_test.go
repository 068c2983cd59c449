package read

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/objstore/s3test"
	"github.com/clipd/clipd/internal/pipeline/budget"
	"github.com/clipd/clipd/internal/pipeline/item"
)

func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }

// readAll runs the stage over urls and returns the bodies by URL, the failures' reasons by
// URL and the errors told to Fatal.
func readAll(t *testing.T, opt Options, urls ...string) (map[string][]byte, map[string]string, []error) {
	t.Helper()
	var mu sync.Mutex
	var fatal []error
	opt.Fatal = func(err error) { mu.Lock(); fatal = append(fatal, err); mu.Unlock() }
	in := make(chan item.Item)
	fails := make(chan item.Failure, len(urls))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := Start(ctx, in, fails, opt)
	go func() {
		defer close(in)
		for i, u := range urls {
			in <- item.Item{Seq: int64(i), URL: u}
		}
	}()
	bodies := map[string][]byte{}
	for e := range s.Out() {
		bodies[e.URL] = e.Body
		e.Release()
	}
	close(fails)
	reasons := map[string]string{}
	for f := range fails {
		if f.Stage != "read" {
			t.Errorf("%s failed in stage %q", f.URL, f.Stage)
		}
		reasons[f.URL] = f.Reason
	}
	return bodies, reasons, fatal
}

// s3:// rows are read through the API, each ending once: a body, or a failure whose reason
// says what is wrong without the key (a missing object, a missing bucket, too large, empty);
// the budget is given back.
func TestReadObjects(t *testing.T) {
	srv := s3test.Shared(t)
	bucket := srv.Bucket(t)
	c := srv.Client(t)
	ctx := context.Background()
	put := func(key string, b []byte) string {
		l := objstore.Location{Bucket: bucket, Key: key}
		if err := c.PutBytes(ctx, l, b, nil); err != nil {
			t.Fatal(err)
		}
		return l.String()
	}
	ok := put("img/a b.jpg", []byte(strings.Repeat("x", 100)))
	big := put("img/big.jpg", make([]byte, 2000))
	empty := put("img/empty.jpg", nil)
	local := t.TempDir() + "/file.jpg"
	os.WriteFile(local, []byte("local bytes"), 0o644)
	want := map[string]string{
		"s3://" + bucket + "/img/missing.jpg": "s3 no such object",
		"s3://no-such-bucket-clipd/x.jpg":     "s3 no such bucket no-such-bucket-clipd",
		big:                                   "too large (2000 bytes, limit 1000)",
		empty:                                 "empty object",
	}
	b := budget.New("bodies", 10000)
	urls := []string{ok, local}
	for u := range want {
		urls = append(urls, u)
	}
	bodies, reasons, fatal := readAll(t, Options{MaxBodyBytes: 1000, Budget: b, Objects: c, ObjectWorkers: 3, Timeout: 20 * time.Second}, urls...)
	if len(bodies[ok]) != 100 || string(bodies[local]) != "local bytes" || len(bodies) != 2 {
		t.Errorf("bodies: %d of %s, %q of the file, %d in all", len(bodies[ok]), ok, bodies[local], len(bodies))
	}
	for u, r := range want {
		if reasons[u] != r {
			t.Errorf("%s: reason %q, want %q", u, reasons[u], r)
		}
	}
	if len(reasons) != len(want) || len(fatal) != 0 {
		t.Errorf("%d failures, fatal %v", len(reasons), fatal)
	}
	if b.Held() != 0 {
		t.Errorf("the budget holds %d after every body was released", b.Held())
	}
}

// A store that rejects the credentials, or that answers none of the requests within the
// timeout, would fail every row: it goes to Fatal, and no row is judged.
func TestReadObjectsFatal(t *testing.T) {
	srv := s3test.Shared(t)
	bucket := srv.Bucket(t)
	ctx := context.Background()
	wrong, err := objstore.New(ctx, objstore.Options{Endpoint: srv.Endpoint, AccessKey: s3test.AccessKey, SecretKey: "wrong", MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	u := "s3://" + bucket + "/x.jpg"
	_, reasons, fatal := readAll(t, Options{Objects: wrong, ObjectWorkers: 2, Timeout: 10 * time.Second}, u, u+"2", u+"3")
	if len(reasons) != 0 || len(fatal) == 0 || !errors.Is(fatal[0], objstore.ErrCredentials) {
		t.Errorf("wrong secret: failures %v, fatal %v", reasons, fatal)
	}

	// An endpoint that accepts connections and never answers.
	silent, err := objstore.New(ctx, objstore.Options{Endpoint: s3test.SilentEndpoint(t), AccessKey: "k", SecretKey: "s", MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	for i := range 12 {
		urls = append(urls, u+string(rune('a'+i)))
	}
	start := time.Now()
	_, reasons, fatal = readAll(t, Options{Objects: silent, ObjectWorkers: 2, Timeout: 300 * time.Millisecond}, urls...)
	if len(fatal) == 0 || !errors.Is(fatal[0], objstore.ErrUnreachable) || !strings.Contains(fatal[0].Error(), "answered none of 4 requests") {
		t.Errorf("silent endpoint: fatal %v", fatal)
	}
	// Without a caller that ends the run, the rows after the fatal error are judged too:
	// each within the timeout, so a dead endpoint cannot hang the run.
	for u, r := range reasons {
		if r != "s3 timeout" {
			t.Errorf("%s: %q", u, r)
		}
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("12 rows against a silent endpoint took %v", d)
	}
}
