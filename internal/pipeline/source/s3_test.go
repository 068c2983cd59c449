package source

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/objstore/s3test"
)

func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }

// putFile stores the file at p as s3://bucket/key and returns the location.
func putFile(t *testing.T, c *objstore.Client, bucket, key, p string) string {
	t.Helper()
	l := objstore.Location{Bucket: bucket, Key: key}
	if err := c.Upload(context.Background(), p, l, nil); err != nil {
		t.Fatal(err)
	}
	return l.String()
}

// itemsOf opens spec and returns its items and failures as "URL line" strings.
func itemsOf(t *testing.T, spec string, opt Options) ([]string, Info) {
	t.Helper()
	s, err := Open(testContext(t), spec, opt)
	if err != nil {
		t.Fatalf("Open(%s): %v", spec, err)
	}
	defer s.Close()
	var out []string
	for _, r := range drainRecords(t, s) {
		it := recItem(r)
		line := fmt.Sprintf("%s %d", it.URL, it.Line)
		if r.Failure != nil {
			line += " failed: " + r.Failure.Reason
		}
		if r.Body != nil {
			line += fmt.Sprintf(" %d bytes", len(r.Body))
			r.Release()
		}
		out = append(out, line)
	}
	return out, s.Info()
}

// A list in a bucket (gzipped CSV, plain text, parquet) gives the same rows as the same file
// on disk, s3:// rows included; its fingerprint is the object's and changes when the object
// is written again; a parquet list's local copy is gone once the Source is closed.
func TestS3Lists(t *testing.T) {
	srv := s3test.Shared(t)
	bucket := srv.Bucket(t)
	c := srv.Client(t)
	dir := t.TempDir()
	rows := []string{"https://a.example/1.jpg", "s3://" + bucket + "/img/2.jpg", "s3://other/k with space.jpg", "ftp://x/3.jpg", "s3://" + bucket + "/", "https://a.example/4.jpg"}
	var csv bytes.Buffer
	zw := gzip.NewWriter(&csv)
	fmt.Fprintf(zw, "url,caption\n")
	for i, r := range rows {
		fmt.Fprintf(zw, "%s,cap %d\n", r, i)
	}
	zw.Close()
	writeFile(t, filepath.Join(dir, "list.csv.gz"), csv.Bytes())
	writeFile(t, filepath.Join(dir, "list.txt"), []byte("# urls\n"+strings.Join(rows, "\n")+"\n"))
	var prows []img2datasetRow
	for i, r := range rows {
		prows = append(prows, img2datasetRow{URL: r, Caption: fmt.Sprintf("cap %d", i)})
	}
	writeParquet(t, dir, "list.parquet", prows, 2)
	cache := t.TempDir()
	opt := Options{Objects: c, CacheDir: cache, Columns: []string{"caption"}}
	for _, name := range []string{"list.csv.gz", "list.txt", "list.parquet"} {
		o := opt
		if name == "list.txt" {
			o.Columns = nil
		}
		local, linfo := itemsOf(t, filepath.Join(dir, name), o)
		spec := putFile(t, c, bucket, "lists/"+name, filepath.Join(dir, name))
		remote, rinfo := itemsOf(t, spec, o)
		if !slices.Equal(local, remote) {
			t.Errorf("%s: rows in the bucket\n%s\nwant the file's\n%s", name, strings.Join(remote, "\n"), strings.Join(local, "\n"))
		}
		if rinfo.Format != linfo.Format || rinfo.Gzip != linfo.Gzip || !strings.HasPrefix(rinfo.Fingerprint, "etag:") || rinfo.TotalBytes != linfo.TotalBytes {
			t.Errorf("%s: info %+v, the file's %+v", name, rinfo, linfo)
		}
		if n := len(remote); n != len(rows) || !strings.Contains(remote[3], `unsupported scheme "ftp"`) || !strings.Contains(remote[4], "s3 URL names no object") ||
			strings.Contains(remote[1], "failed") || strings.Contains(remote[2], "failed") {
			t.Errorf("%s: rows %q", name, remote)
		}
		// Other content under the same key: another fingerprint.
		putFile(t, c, bucket, "lists/"+name, filepath.Join(dir, "list.csv.gz"))
		if name == "list.csv.gz" {
			putFile(t, c, bucket, "lists/"+name, filepath.Join(dir, "list.txt"))
		}
		if _, again := itemsOf(t, spec, Options{Objects: c, CacheDir: cache}); again.Fingerprint == rinfo.Fingerprint {
			t.Errorf("%s: fingerprint %s unchanged after the object was written again", name, again.Fingerprint)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(cache, "tmp", "*")); len(left) != 0 {
		t.Errorf("the parquet list's local copies are left: %v", left)
	}
}

// Tar shards in a bucket, by name, by brace pattern and by glob, give the same samples as the
// same shards on disk; the fallback URL of a sample without json names the object.
func TestS3TarShards(t *testing.T) {
	srv := s3test.Shared(t)
	bucket := srv.Bucket(t)
	c := srv.Client(t)
	dir := t.TempDir()
	threeShards(t, dir)
	writeFile(t, filepath.Join(dir, "nojson.tar"), tarBytes(t, []member{{"k1.jpg", testImage(t, "tiny_7x3.jpg")}}))
	for _, n := range []string{"00000.tar", "00001.tar", "00002.tar", "nojson.tar"} {
		putFile(t, c, bucket, "shards/"+n, filepath.Join(dir, n))
	}
	putFile(t, c, bucket, "shards/readme.txt", filepath.Join(dir, "nojson.tar"))
	opt := Options{Objects: c}
	local, _ := itemsOf(t, filepath.Join(dir, "{00000..00002}.tar"), opt)
	base := "s3://" + bucket + "/shards/"
	for _, spec := range []string{base + "{00000..00002}.tar", base + "0000*.tar", base + "{00000,0000[12]}.tar"} {
		got, info := itemsOf(t, spec, opt)
		if !slices.Equal(got, local) || info.Format != FormatTar || !strings.HasPrefix(info.Fingerprint, "shards:3 ") {
			t.Errorf("%s: %d rows (%s), want the files' %d", spec, len(got), info.Fingerprint, len(local))
		}
	}
	if got, _ := itemsOf(t, base+"nojson.tar", opt); len(got) != 1 || !strings.HasPrefix(got[0], base+"nojson.tar/k1 1 ") {
		t.Errorf("a sample without json: %q, want the URL %snojson.tar/k1", got, base)
	}
	// A shard written again while the run reads the shards before it ends the stream: its
	// samples are no longer those the run's identity describes.
	s, err := Open(testContext(t), base+"{00000..00002}.tar", Options{Objects: c, Buffer: 1}) // reads no further than shard 0 until drained
	if err != nil {
		t.Fatal(err)
	}
	first := <-s.Records()
	first.Release()
	putFile(t, c, bucket, "shards/00002.tar", filepath.Join(dir, "nojson.tar"))
	drainErr(s)
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), base+"00002.tar was written again since the run began") {
		t.Errorf("a shard rewritten during the run: Err %v", err)
	}
	s.Close()
	for spec, want := range map[string]string{
		base + "{00000..00003}.tar": "1 of the 4 shards named do not exist",
		base + "*.zip":              "matches no tar shard",
		base + "{00000,readme}.txt": "is not a tar shard",
	} {
		if _, err := Open(testContext(t), spec, opt); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", spec, err, want)
		}
	}
}

// A missing key is a plain input error naming the location; a missing bucket and a wrong
// secret are the store's refusals (objstore.Refused), each one line.
func TestS3InputErrors(t *testing.T) {
	srv := s3test.Shared(t)
	bucket := srv.Bucket(t)
	c := srv.Client(t)
	wrong, err := objstore.New(context.Background(), objstore.Options{Endpoint: srv.Endpoint, AccessKey: s3test.AccessKey, SecretKey: "wrong", MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		spec    string
		store   ObjectStore
		refused bool
		want    string
	}{
		{"s3://" + bucket + "/missing.txt", c, false, "source s3://" + bucket + "/missing.txt: no such object; check the key"},
		{"s3://" + bucket + "/shards/{0,1}.tar", c, false, "2 of the 2 shards named do not exist"},
		{"s3://no-such-bucket-clipd/list.txt", c, true, `bucket "no-such-bucket-clipd" does not exist`},
		{"s3://" + bucket + "/list.txt", wrong, true, "rejects the credentials"},
		{"s3://" + bucket + "/", c, false, "names a prefix, not an object"},
	} {
		_, err := Open(testContext(t), tc.spec, Options{Objects: tc.store})
		if err == nil || objstore.Refused(err) != tc.refused || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v (refused %v), want %q (refused %v)", tc.spec, err, errors.Is(err, objstore.ErrNoBucket), tc.want, tc.refused)
		}
	}
}

// A list object is streamed: the first rows come out after reading a small part of it, not
// after downloading it whole (memory does not grow with the list).
func TestS3ListStreamed(t *testing.T) {
	srv := s3test.Shared(t)
	bucket := srv.Bucket(t)
	c := srv.Client(t)
	var b bytes.Buffer
	for i := 0; b.Len() < 16<<20; i++ {
		fmt.Fprintf(&b, "https://images.example/some/longer/path/%09d.jpg\n", i)
	}
	l := objstore.Location{Bucket: bucket, Key: "big.txt"}
	if err := c.PutBytes(context.Background(), l, b.Bytes(), nil); err != nil {
		t.Fatal(err)
	}
	s, err := Open(testContext(t), l.String(), Options{Objects: c, Buffer: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 100 {
		if r, ok := <-s.Records(); !ok || r.Failure != nil {
			t.Fatalf("record %+v, open %v", r, ok)
		}
	}
	if n := s.Stats().Bytes; n > 2<<20 {
		t.Errorf("%d bytes of the %d-byte list read for its first 100 rows", n, b.Len())
	}
	if info := s.Info(); info.TotalBytes != int64(b.Len()) {
		t.Errorf("TotalBytes %d, want %d", info.TotalBytes, b.Len())
	}
}

// A list's stream that loses its connection (the store killed and started again while the
// run reads) goes on from the byte it reached: every row once, in order, and no error.
func TestS3ListSurvivesStoreRestart(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t)
	c := srv.Client(t)
	var b bytes.Buffer
	const rows = 300_000
	for i := range rows {
		fmt.Fprintf(&b, "https://images.example/%09d.jpg\n", i)
	}
	l := objstore.Location{Bucket: bucket, Key: "big.txt"}
	if err := c.PutBytes(context.Background(), l, b.Bytes(), nil); err != nil {
		t.Fatal(err)
	}
	s, err := Open(testContext(t), l.String(), Options{Objects: c, Buffer: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	next := 0
	check := func(r Record) {
		if want := fmt.Sprintf("https://images.example/%09d.jpg", next); r.Failure != nil || r.Item.URL != want {
			t.Fatalf("row %d: %+v, want %s", next, r, want)
		}
		next++
	}
	for range 100 {
		check(<-s.Records())
	}
	srv.Kill()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for r := range s.Records() {
			check(r)
		}
	}()
	time.Sleep(time.Second) // the reader meets the lost connection while the store is down
	srv.Restart(t)
	<-drained
	if err := s.Err(); err != nil || next != rows {
		t.Fatalf("%d rows of %d, Err %v", next, rows, err)
	}
}

// A store that answers 503 SlowDown (throttling) and 500 before the object: the request is
// retried with backoff and the list read whole.
func TestS3ListRetriedOnThrottling(t *testing.T) {
	srv := s3test.Shared(t)
	bucket := srv.Bucket(t)
	l := objstore.Location{Bucket: bucket, Key: "list.txt"}
	if err := srv.Client(t).PutBytes(context.Background(), l, []byte("https://a.example/1.jpg\nhttps://a.example/2.jpg\n"), nil); err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse(srv.Endpoint)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var gets atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/list.txt") {
			switch gets.Add(1) {
			case 1:
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
				return
			case 2:
				w.WriteHeader(http.StatusInternalServerError)
				fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>`)
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	c, err := objstore.New(context.Background(), objstore.Options{Endpoint: front.URL, AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := itemsOf(t, l.String(), Options{Objects: c})
	if len(got) != 2 || gets.Load() != 3 {
		t.Errorf("rows %q after %d GETs, want 2 rows after 3", got, gets.Load())
	}
}
