// s3_input_test.go: s3:// inputs end to end (issue 20) against a real S3 server (SeaweedFS on
// 127.0.0.1, see internal/objstore/s3test) and images served on 127.0.0.1: lists (text,
// gzipped CSV, parquet) and tar shards in a bucket give the same file as the same inputs on
// disk, s3:// rows are read through the API, a changed list object is refused on resume, and
// a store that refuses or cannot be reached is exit 7 with one line.
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/clipd/clipd/embed"
	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/objstore/s3test"
)

// One server for the subtests (cmd/clipd has no TestMain of its own to share it through).
func TestS3Inputs(t *testing.T) {
	srv := s3test.Start(t)
	srv.SetEnv(t) // the in-process runs read the AWS configuration from the environment, as users' do
	c := srv.Client(t)
	bucket := srv.Bucket(t)
	images := newImageServer(t)
	put := func(t *testing.T, key, path string) string {
		t.Helper()
		l := objstore.Location{Bucket: bucket, Key: key}
		if err := c.Upload(context.Background(), path, l, nil); err != nil {
			t.Fatal(err)
		}
		return l.String()
	}
	embedTo := func(t *testing.T, input string) h5Result {
		t.Helper()
		out := t.TempDir()
		o := testEmbedOptions(input, out)
		o.CacheDir = t.TempDir()
		if err := runEmbed(testCtx(t), o); err != nil {
			t.Fatalf("%s: %v", input, err)
		}
		return readH5(t, filepath.Join(out, embed.FinalName))
	}

	t.Run("lists", func(t *testing.T) {
		urls := append(manyURLs(images.URL, goodFiles(t), 20), images.URL+"/missing")
		dir := t.TempDir()
		text := writeList(t, urls)
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		fmt.Fprintln(zw, "url,caption")
		for i, u := range urls {
			fmt.Fprintf(zw, "%s,row %d\n", u, i)
		}
		zw.Close()
		csvgz := filepath.Join(dir, "list.csv.gz")
		os.WriteFile(csvgz, gz.Bytes(), 0o644)
		pq := filepath.Join(dir, "list.parquet")
		f, _ := os.Create(pq)
		w := parquet.NewGenericWriter[listRow](f, parquet.MaxRowsPerRowGroup(8))
		for i, u := range urls {
			w.Write([]listRow{{URL: u, Caption: fmt.Sprintf("row %d", i)}})
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		for _, local := range []string{text, csvgz, pq} {
			spec := put(t, "lists/"+filepath.Base(local), local)
			want, got := embedTo(t, local), embedTo(t, spec)
			sameResult(t, spec, want, got)
			if len(got.URLs) != 20 || len(got.Reasons) != 1 || got.Reasons[0] != "http 404" {
				t.Errorf("%s: %d rows, failures %v", spec, len(got.URLs), got.Reasons)
			}
			if got.Attrs["input"] != spec || !strings.HasPrefix(got.Attrs["input_fingerprint"], "etag:") {
				t.Errorf("%s: the file records input %q, fingerprint %q", spec, got.Attrs["input"], got.Attrs["input_fingerprint"])
			}
		}
	})

	t.Run("tar shards", func(t *testing.T) {
		dir := t.TempDir()
		files := goodFiles(t)
		for s := range 2 {
			p := filepath.Join(dir, fmt.Sprintf("%05d.tar", s))
			writeShard(t, p, s*10, files[:10], 4)
			put(t, "shards/"+filepath.Base(p), p)
		}
		base := "s3://" + bucket + "/shards/"
		sameResult(t, "one shard", embedTo(t, filepath.Join(dir, "00000.tar")), embedTo(t, base+"00000.tar"))
		want := embedTo(t, filepath.Join(dir, "{00000..00001}.tar"))
		got := embedTo(t, base+"{00000..00001}.tar")
		sameResult(t, "two shards", want, got)
		if len(got.URLs) != 16 || len(got.FailedURLs) != 4 {
			t.Errorf("two shards: %d rows, %d failures; want 16 and 4", len(got.URLs), len(got.FailedURLs))
		}
	})

	t.Run("s3 rows", func(t *testing.T) {
		good := goodFiles(t)[:6]
		var rows []string
		for _, n := range good {
			rows = append(rows, put(t, "img/"+n, filepath.Join(e2eDir, n)))
		}
		missing := "s3://" + bucket + "/img/missing.jpg"
		noBucket := "s3://no-such-bucket-clipd/img/x.jpg"
		list := writeList(t, append(rows, missing, noBucket, images.URL+"/img/"+good[0]))
		got := embedTo(t, list)
		wantRows := append(append([]string{}, rows...), images.URL+"/img/"+good[0])
		if strings.Join(got.URLs, "\n") != strings.Join(wantRows, "\n") {
			t.Fatalf("rows %q, want %q", got.URLs, wantRows)
		}
		want := expectedEmbeddings(t, good)
		for i, n := range append(good, good[0]) {
			if !closeEnough(got.Embeddings[i], want[n]) {
				t.Errorf("%s: the embedding differs from the engine's for the same bytes", got.URLs[i])
			}
		}
		wantFailed := []string{missing + ": s3 no such object", noBucket + ": s3 no such bucket no-such-bucket-clipd"}
		var failed []string
		for i, u := range got.FailedURLs {
			failed = append(failed, u+": "+got.Reasons[i])
		}
		if strings.Join(failed, "\n") != strings.Join(wantFailed, "\n") {
			t.Errorf("failures %q, want %q", failed, wantFailed)
		}
	})

	t.Run("resume", func(t *testing.T) {
		urls := manyURLs(images.URL, goodFiles(t), 40)
		dir := t.TempDir()
		list := filepath.Join(dir, "list.txt")
		os.WriteFile(list, []byte(strings.Join(urls, "\n")+"\n"), 0o644)
		spec := put(t, "resume/list.txt", list)
		interrupted := func(out string) {
			t.Helper()
			ctx, cancel := context.WithCancel(testCtx(t))
			o := testEmbedOptions(spec, out)
			o.ChunkSize = 5
			o.afterBatch = func(rows int64) {
				if rows >= 12 {
					cancel()
				}
			}
			if err := runEmbed(ctx, o); exitCode(err) != exitInterrupted {
				t.Fatalf("interrupted run: %v", err)
			}
		}
		// Unchanged: the rerun resumes and finishes.
		out := t.TempDir()
		interrupted(out)
		if code, _, se := clipdRun(t, embedFlags(spec, out)...); code != 0 {
			t.Fatalf("resume of an unchanged list: exit %d: %s", code, se)
		}
		if r := readH5(t, embedFinal(out)); len(r.URLs) != len(urls) {
			t.Errorf("resumed run: %d rows of %d", len(r.URLs), len(urls))
		}
		// Changed (URLs inserted at the top): refused.
		out = t.TempDir()
		interrupted(out)
		inserted := append(manyURLs(images.URL+"/new", goodFiles(t), 10), urls...)
		os.WriteFile(list, []byte(strings.Join(inserted, "\n")+"\n"), 0o644)
		put(t, "resume/list.txt", list)
		code, _, se := clipdRun(t, embedFlags(spec, out)...)
		if code != exitUsage {
			t.Errorf("rerun on a changed list object: exit %d, want %d", code, exitUsage)
		}
		oneLine(t, "changed list object", se, "the input's content changed")
	})

	t.Run("refused", func(t *testing.T) {
		list := filepath.Join(t.TempDir(), "list.txt")
		os.WriteFile(list, []byte(strings.Join(manyURLs(images.URL, goodFiles(t), 3), "\n")+"\n"), 0o644)
		spec := put(t, "refused/list.txt", list)
		rows := writeList(t, []string{put(t, "refused/img.jpg", filepath.Join(e2eDir, goodFiles(t)[0]))})
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := "http://" + l.Addr().String()
		l.Close() // nothing listens there now: connections are refused
		silent := s3test.SilentEndpoint(t) // accepts connections and never answers
		var many []string
		for i := range 40 {
			many = append(many, fmt.Sprintf("s3://%s/refused/img%d.jpg", bucket, i))
		}
		manyRows := writeList(t, many)
		noBucketRows := writeList(t, []string{"s3://no-such-bucket-clipd/a.jpg", "s3://no-such-bucket-clipd/b.jpg"})
		for _, tc := range []struct {
			name, input string
			env         []string
			code        int
			want        string
			extra       []string
		}{
			{"wrong secret", spec, []string{"AWS_SECRET_ACCESS_KEY=wrong"}, exitStorage, "rejects the credentials (SignatureDoesNotMatch)", nil},
			{"missing bucket", "s3://no-such-bucket-clipd/list.txt", nil, exitStorage, `bucket "no-such-bucket-clipd" does not exist`, nil},
			{"unreachable endpoint", spec, []string{"AWS_ENDPOINT_URL=" + closed}, exitStorage, "cannot be reached", nil},
			{"missing key", "s3://" + bucket + "/refused/none.txt", nil, exitInput, "no such object; check the key", nil},
			// --s3-endpoint wins over AWS_ENDPOINT_URL.
			{"missing key, --s3-endpoint", "s3://" + bucket + "/refused/none.txt", []string{"AWS_ENDPOINT_URL=" + closed}, exitInput, "no such object; check the key", []string{"--s3-endpoint", srv.Endpoint}},
			// Every row's bucket is missing: nothing embedded (exit 6), and the line says why.
			{"rows, missing bucket", noBucketRows, nil, exitNothing, "all 2 rows failed (s3 no such bucket no-such-bucket-clipd 2)", nil},
			{"rows, wrong secret", rows, []string{"AWS_SECRET_ACCESS_KEY=wrong"}, exitStorage, "rejects the credentials", nil},
			// 8 connections, --timeout 2s: every worker waits out its deadline twice, then the
			// run stops instead of failing the 40 rows one timeout at a time.
			{"rows, silent endpoint", manyRows, []string{"AWS_ENDPOINT_URL=" + silent}, exitStorage, "answered none of 16 requests in a row within --timeout 2s", nil},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			cmd := exec.CommandContext(ctx, clipdBinary(t), embedArgs(tc.input, t.TempDir(), tc.extra...)...)
			cmd.Env = append(append(os.Environ(), srv.Env()...), tc.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			start := time.Now()
			cmd.Run()
			cancel()
			t.Logf("%s: exit %d after %v: %s", tc.name, exitStatus(cmd), time.Since(start).Round(time.Millisecond), strings.TrimSpace(stderr.String()))
			if code := exitStatus(cmd); code != tc.code {
				t.Errorf("%s: exit %d, want %d; stderr %q", tc.name, code, tc.code, stderr.String())
			}
			oneLine(t, tc.name, stderr.String(), tc.want)
		}
	})
}
