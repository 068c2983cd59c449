// s3_tools_test.go: clipd merge, export and inspect over s3:// against a real S3 server
// (SeaweedFS, internal/objstore/s3test, on 127.0.0.1): shard files made by the real clipd
// embed --shard i/2, uploaded in the bucket layout, merged from the bucket (equal to the local
// merge, every URL once), a missing shard refused or --allow-missing; exports to and from a
// bucket equal to the local export byte for byte; inspect of an object prints what a local
// inspect prints; refusals (wrong secret, no bucket, no endpoint) are exit 7 and one line;
// Ctrl-C during a download or an upload is exit 130 with nothing left behind.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/embed"
	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/objstore/s3test"
	"github.com/clipd/clipd/internal/pipeline/export"
	"github.com/clipd/clipd/internal/pipeline/outfile"
)

func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }

// s3Ctx bounds a test's requests.
func s3Ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// embedShards runs the real clipd embed --shard i/2 (in-process, tiny weights) over 40 URLs
// of a local image server into one local output folder, as an array job's tasks do; it
// returns the folder and the shard files.
func embedShards(t *testing.T) (string, []string) {
	t.Helper()
	srv := newImageServer(t)
	list := writeList(t, append(manyURLs(srv.URL, goodFiles(t), 40), srv.URL+"/missing"))
	out := t.TempDir()
	var files []string
	for i := 0; i < 2; i++ {
		o := testEmbedOptions(list, out)
		o.Shard = embed.Shard{Index: i, Count: 2}
		if err := runEmbed(testCtx(t), o); err != nil {
			t.Fatal(err)
		}
		files = append(files, filepath.Join(out, outfile.ShardDirName(i, 2), outfile.FinalName))
	}
	return out, files
}

// uploadAs uploads the local file to s3://bucket/key.
func uploadAs(t *testing.T, srv *s3test.Server, file, bucket, key string) objstore.Location {
	t.Helper()
	l := objstore.Location{Bucket: bucket, Key: key}
	if err := srv.Client(t).Upload(s3Ctx(t), file, l, nil); err != nil {
		t.Fatal(err)
	}
	return l
}

// uploadShards puts the shard files at s3://bucket/prefix/shard-0000i-of-00002/Images_Embedded.h5.
func uploadShards(t *testing.T, srv *s3test.Server, files []string, bucket, prefix string, which ...int) {
	t.Helper()
	for _, i := range which {
		uploadAs(t, srv, files[i], bucket, prefix+outfile.ShardDirName(i, 2)+"/"+outfile.FinalName)
	}
}

// downloadObject copies s3://bucket/key into a local file.
func downloadObject(t *testing.T, srv *s3test.Server, bucket, key string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), filepath.Base(key))
	if _, err := srv.Client(t).Download(s3Ctx(t), objstore.Location{Bucket: bucket, Key: key}, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// emptyDir fails when dir holds anything (a staging folder left behind).
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("%s holds %v after the command: the staging folder was not removed", dir, names)
	}
}

// sameH5 compares two files as h5py reads them: every dataset, every attribute but the
// merge's time and version.
func sameH5(t *testing.T, what, got, want string) {
	t.Helper()
	gd, ga := h5read(t, got)
	wd, wa := h5read(t, want)
	if !slices.Equal(sortedKeys(gd), sortedKeys(wd)) {
		t.Errorf("%s: datasets %v, want %v", what, sortedKeys(gd), sortedKeys(wd))
	}
	for k, v := range wd {
		if fmt.Sprint(gd[k]) != fmt.Sprint(v) {
			t.Errorf("%s: dataset %s differs:\n got %v\nwant %v", what, k, gd[k], v)
		}
	}
	for k, v := range wa {
		if k != "created" && k != "clipd_version" && fmt.Sprint(ga[k]) != fmt.Sprint(v) {
			t.Errorf("%s: attribute %s = %v, want %v", what, k, ga[k], v)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for n := range m {
		k = append(k, n)
	}
	slices.Sort(k)
	return k
}

// TestS3MergeShards: the two shards of a real clipd embed run uploaded in the bucket layout,
// then `clipd merge s3://B/run/`: s3://B/run/Images_Embedded.h5 holds every URL once and
// equals the local merge of the same shard files; the staging folder is gone. The same
// shards merged to a local -o, and local shards merged to an s3:// -o, are the same file.
func TestS3MergeShards(t *testing.T) {
	srv := s3test.Shared(t)
	srv.SetEnv(t)
	bucket := srv.Bucket(t)
	local, files := embedShards(t)
	uploadShards(t, srv, files, bucket, "run/", 0, 1)

	// the local merge of the same files: the reference
	if code, _, stderr := runClipd("merge", local); code != exitOK {
		t.Fatalf("local merge: exit %d: %s", code, stderr)
	}
	ref := filepath.Join(local, outfile.FinalName)

	stg := t.TempDir()
	code, stdout, stderr := runClipd("merge", "--staging", stg, "s3://"+bucket+"/run/")
	final := "s3://" + bucket + "/run/" + outfile.FinalName
	if code != exitOK || stderr != "" || !strings.HasPrefix(stdout, final+": ") || !strings.Contains(stdout, " from 2 files (") {
		t.Fatalf("clipd merge s3://B/run/: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	emptyDir(t, stg)
	got := downloadObject(t, srv, bucket, "run/"+outfile.FinalName)
	sameH5(t, "merge from the bucket", got, ref)
	ds, attrs := h5read(t, got)
	urls, _ := ds["urls"].([]any)
	failed, _ := ds["failed_urls"].([]any)
	seen := map[string]bool{}
	for _, u := range append(slices.Clone(urls), failed...) {
		if seen[fmt.Sprint(u)] {
			t.Errorf("%v twice in the merged file", u)
		}
		seen[fmt.Sprint(u)] = true
	}
	if len(seen) != 41 || len(failed) != 1 || attrs["shard"] != "0/1" {
		t.Errorf("merged file: %d distinct URLs (want 41), %d failures (want 1), shard %v (want 0/1)", len(seen), len(failed), attrs["shard"])
	}

	// Merging again finds the final file beside the shards and replaces it (as locally).
	if code, _, stderr := runClipd("merge", "s3://"+bucket+"/run"); code != exitOK {
		t.Fatalf("clipd merge s3://B/run (again, no slash): exit %d: %s", code, stderr)
	}

	// s3:// shards to a local file, and local shards to an s3:// file
	localOut := filepath.Join(t.TempDir(), "all.h5")
	if code, _, stderr := runClipd("merge", "-o", localOut, "s3://"+bucket+"/run/"); code != exitOK {
		t.Fatalf("merge s3:// to a local -o: exit %d: %s", code, stderr)
	}
	sameH5(t, "merge from the bucket to a local file", localOut, ref)
	code, stdout, stderr = runClipd("merge", "-o", "s3://"+bucket+"/other/all.h5", files[0], files[1])
	if code != exitOK || !strings.HasPrefix(stdout, "s3://"+bucket+"/other/all.h5: ") {
		t.Fatalf("merge local files to s3://B/other/all.h5: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	sameH5(t, "merge of local files to the bucket", downloadObject(t, srv, bucket, "other/all.h5"), ref)
	code, stdout, stderr = runClipd("merge", "-o", "s3://"+bucket+"/other2", local)
	if code != exitOK || !strings.HasPrefix(stdout, "s3://"+bucket+"/other2/"+outfile.FinalName+": ") {
		t.Fatalf("merge to the prefix s3://B/other2: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	// A prefix with the whole run only: nothing to merge.
	uploadAs(t, srv, ref, bucket, "whole/"+outfile.FinalName)
	code, stdout, _ = runClipd("merge", "s3://"+bucket+"/whole/")
	if code != exitOK || !strings.Contains(stdout, "is the whole run already") {
		t.Errorf("merge of a prefix with the whole run: exit %d, stdout %q", code, stdout)
	}
}

// TestS3MergeMissingShard: a prefix with shard 1 of 2 unfinished (a chunk, no final file):
// refused with one line (exit 3, as locally), naming the unfinished folder; --allow-missing
// merges shard 0; an empty prefix and a missing object are exit 3, one line.
func TestS3MergeMissingShard(t *testing.T) {
	srv := s3test.Shared(t)
	srv.SetEnv(t)
	bucket := srv.Bucket(t)
	_, files := embedShards(t)
	uploadShards(t, srv, files, bucket, "run/", 0)
	if err := srv.Client(t).PutBytes(s3Ctx(t), objstore.Location{Bucket: bucket, Key: "run/" + outfile.ShardDirName(1, 2) + "/Images_Embedded_0.h5"}, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	stg := t.TempDir()
	code, stdout, stderr := runClipd("merge", "--staging", stg, "s3://"+bucket+"/run/")
	checkOneErrorLine(t, "merge with shard 1 missing", code, exitInput, stderr,
		"...shard 1 of 2 missing (have 0): finish it (rerun that array task, or clipd embed --shard 1/2 with the run's flags) and merge again"+
			" (unfinished: shard-00001-of-00002 has 1 chunk files), or pass --allow-missing to merge the 1 present")
	if stdout != "" {
		t.Errorf("stdout %q", stdout)
	}
	emptyDir(t, stg)
	if _, err := srv.Client(t).Head(s3Ctx(t), objstore.Location{Bucket: bucket, Key: "run/" + outfile.FinalName}); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("a refused merge left run/%s (%v)", outfile.FinalName, err)
	}

	code, stdout, stderr = runClipd("merge", "--allow-missing", "s3://"+bucket+"/run/")
	if code != exitOK || !strings.Contains(stdout, "from 1 files (shards 0/2 only)") {
		t.Fatalf("--allow-missing: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if _, attrs := h5read(t, downloadObject(t, srv, bucket, "run/"+outfile.FinalName)); attrs["shard"] != "0/2" {
		t.Errorf("partial merge's shard attribute %v", attrs["shard"])
	}

	// a damaged shard file is named by its location, not by its copy in the staging folder
	if err := srv.Client(t).PutBytes(s3Ctx(t), objstore.Location{Bucket: bucket, Key: "bad/" + outfile.ShardDirName(0, 1) + "/" + outfile.FinalName}, []byte("remember the milk\n"), nil); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runClipd("merge", "--staging", stg, "s3://"+bucket+"/bad/")
	checkOneErrorLine(t, "merge of a damaged shard", code, exitInput, stderr,
		"...clipd: s3://"+bucket+"/bad/"+outfile.ShardDirName(0, 1)+"/"+outfile.FinalName+": not an HDF5 file")
	if strings.Contains(stderr, stg) {
		t.Errorf("the message names the staging folder: %s", stderr)
	}
	emptyDir(t, stg)
	// a staging folder that cannot be made: exit 5, one line
	code, _, stderr = runClipd("merge", "--staging", filepath.Join(stg, "missing"), "s3://"+bucket+"/run/")
	checkOneErrorLine(t, "merge with a missing --staging folder", code, exitOutput, stderr,
		"clipd: staging folder for s3:// files: writing "+filepath.Join(stg, "missing")+": no such file or directory; give --staging a writable folder (or set TMPDIR)")

	code, _, stderr = runClipd("merge", "s3://"+bucket+"/nothing/")
	checkOneErrorLine(t, "merge of an empty prefix", code, exitInput, stderr,
		"clipd: s3://"+bucket+"/nothing/: no clipd output under this prefix (no Images_Embedded.h5, no shard-*-of-*/Images_Embedded.h5); give clipd embed's s3:// output or its files")
	code, _, stderr = runClipd("merge", "-o", filepath.Join(t.TempDir(), "x.h5"), "s3://"+bucket+"/run/missing.h5")
	checkOneErrorLine(t, "merge of a missing object", code, exitInput, stderr, "clipd: s3://"+bucket+"/run/missing.h5: no such object")
}

// TestS3MergeStagingTooSmall: a staging disk smaller than the shards: exit 5 and one line
// before anything is downloaded, saying how much is needed; nothing is left on it.
func TestS3MergeStagingTooSmall(t *testing.T) {
	srv := s3test.Shared(t)
	srv.SetEnv(t)
	bucket := srv.Bucket(t)
	big := filepath.Join(t.TempDir(), "big.h5")
	writeManyFailures(t, big, 20000) // a valid clipd file of a few hundred KB
	uploadAs(t, srv, big, bucket, "run/"+outfile.ShardDirName(0, 1)+"/"+outfile.FinalName)
	small := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", small).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v %s", err, out)
	}
	defer exec.Command("umount", "-l", small).Run()
	code, _, stderr := runClipd("merge", "--staging", small, "s3://"+bucket+"/run/")
	checkOneErrorLine(t, "merge with a 64 KiB staging disk", code, exitOutput, stderr, "...clipd: merging these files needs about ")
	if !strings.Contains(stderr, " of disk in "+small+", which has ") || !strings.HasSuffix(stderr, "free: give --staging a folder on a larger disk (or set TMPDIR)\n") {
		t.Errorf("stderr %q", stderr)
	}
	emptyDir(t, small)
}

// TestS3Inspect: inspect of an object, and of its prefix, prints what inspect of the local
// file prints (the location instead of the path); a prefix with shard files only says how to
// merge them; a missing object is exit 3, one line.
func TestS3Inspect(t *testing.T) {
	srv := s3test.Shared(t)
	srv.SetEnv(t)
	bucket := srv.Bucket(t)
	local, files := embedShards(t)
	if code, _, stderr := runClipd("merge", local); code != exitOK {
		t.Fatalf("local merge: exit %d: %s", code, stderr)
	}
	file := filepath.Join(local, outfile.FinalName)
	uploadAs(t, srv, file, bucket, "run/"+outfile.FinalName)
	_, want, _ := runClipd("inspect", "--rows", "3", file)
	obj := "s3://" + bucket + "/run/" + outfile.FinalName
	want = strings.Replace(want, file+"\n", obj+"\n", 1)
	stg := t.TempDir()
	for _, arg := range []string{obj, "s3://" + bucket + "/run/", "s3://" + bucket + "/run"} {
		code, got, stderr := runClipd("inspect", "--rows", "3", "--staging", stg, arg)
		if code != exitOK || got != want || !strings.Contains(got, "first 3 rows:") {
			t.Errorf("clipd inspect %s: exit %d, stderr %q\n got %s\nwant %s", arg, code, stderr, got, want)
		}
	}
	emptyDir(t, stg)
	_, wantJSON, _ := runClipd("inspect", "--json", file)
	_, gotJSON, _ := runClipd("inspect", "--json", obj)
	if strings.Replace(wantJSON, `"`+file+`"`, `"`+obj+`"`, 1) != gotJSON {
		t.Errorf("inspect --json of the object:\n%s\nof the file:\n%s", gotJSON, wantJSON)
	}

	uploadShards(t, srv, files, bucket, "sharded/", 0, 1)
	code, _, stderr := runClipd("inspect", "s3://"+bucket+"/sharded/")
	checkOneErrorLine(t, "inspect of a prefix with shards only", code, exitInput, stderr,
		"clipd: s3://"+bucket+"/sharded/ has no Images_Embedded.h5 but 2 shard files (shard-00000-of-00002/Images_Embedded.h5, shard-00001-of-00002/Images_Embedded.h5):"+
			" join them with \"clipd merge s3://"+bucket+"/sharded/\", or inspect one: clipd inspect s3://"+bucket+"/sharded/shard-00000-of-00002/Images_Embedded.h5")
	code, _, stderr = runClipd("inspect", "s3://"+bucket+"/run/missing.h5")
	checkOneErrorLine(t, "inspect of a missing object", code, exitInput, stderr, "clipd: s3://"+bucket+"/run/missing.h5: no such object")
	// not an HDF5 file: the location, not the local copy, is named
	if err := srv.Client(t).PutBytes(s3Ctx(t), objstore.Location{Bucket: bucket, Key: "notes.h5"}, []byte("remember the milk\n"), nil); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runClipd("inspect", "--staging", stg, "s3://"+bucket+"/notes.h5")
	checkOneErrorLine(t, "inspect of an object that is not HDF5", code, exitInput, stderr, "...clipd: s3://"+bucket+"/notes.h5: not an HDF5 file")
	emptyDir(t, stg)
}

// objectsUnder downloads every object under prefix into a map key (relative) -> bytes.
func objectsUnder(t *testing.T, srv *s3test.Server, bucket, prefix string) map[string][]byte {
	t.Helper()
	c := srv.Client(t)
	objs, err := c.List(s3Ctx(t), objstore.Location{Bucket: bucket, Key: prefix})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, o := range objs {
		b, err := c.ReadSmall(s3Ctx(t), o.Location, 64<<20)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimPrefix(o.Key, prefix)] = b
	}
	return out
}

// filesUnder reads every file under dir into a map path (relative, slashes) -> bytes.
func filesUnder(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = readFile(t, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameFiles(t *testing.T, what string, got, want map[string][]byte) {
	t.Helper()
	if !slices.Equal(sortedKeys(got), sortedKeys(want)) {
		t.Errorf("%s: files %v, want %v", what, sortedKeys(got), sortedKeys(want))
		return
	}
	for k, w := range want {
		if !bytes.Equal(got[k], w) {
			t.Errorf("%s: %s differs from the local export's (%d bytes vs %d)", what, k, len(got[k]), len(w))
		}
	}
}

// TestS3Export: an export to s3://B/exp/ holds the local export's files under the same names,
// byte for byte, and leaves nothing in the staging folder; an export of an s3:// file (to its
// default export/ prefix beside it) too; a rerun with fewer parts removes the parts beyond.
func TestS3Export(t *testing.T) {
	srv := s3test.Shared(t)
	srv.SetEnv(t)
	bucket := srv.Bucket(t)
	out := filepath.Join(t.TempDir(), "run")
	file := writeRun(t, out, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, testRunAttrs("in.txt", "0/1"), true) // 9 rows, 2 failures
	localExp := filepath.Join(t.TempDir(), "exp")
	if code, _, stderr := runClipd("export", file, "-o", localExp, "--rows-per-part", "4"); code != exitOK {
		t.Fatalf("local export: exit %d: %s", code, stderr)
	}
	want := filesUnder(t, localExp)
	if len(want) != 6 { // 3 parts x (npy, parquet)
		t.Fatalf("the local export wrote %v", sortedKeys(want))
	}

	// a stale part of an earlier, longer export
	stale := objstore.Location{Bucket: bucket, Key: "exp/" + export.EmbDir + "/img_emb_7.npy"}
	if err := srv.Client(t).PutBytes(s3Ctx(t), stale, []byte("old"), nil); err != nil {
		t.Fatal(err)
	}
	stg := t.TempDir()
	code, stdout, stderr := runClipd("export", file, "-o", "s3://"+bucket+"/exp", "--rows-per-part", "4", "--staging", stg)
	if code != exitOK || stdout != "s3://"+bucket+"/exp/: 9 rows x 4 float32 in 3 parts (img_emb, metadata: url, image_id, width, height)\n" {
		t.Fatalf("export to s3://B/exp: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	emptyDir(t, stg)
	sameFiles(t, "export to the bucket", objectsUnder(t, srv, bucket, "exp/"), want)

	// from the bucket: the default output is export/ beside the object
	uploadAs(t, srv, file, bucket, "run/"+outfile.FinalName)
	code, stdout, stderr = runClipd("export", "s3://"+bucket+"/run/", "--rows-per-part", "4", "--staging", stg)
	if code != exitOK || !strings.HasPrefix(stdout, "s3://"+bucket+"/run/export/: 9 rows") {
		t.Fatalf("export of s3://B/run/: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	emptyDir(t, stg)
	sameFiles(t, "export from the bucket", objectsUnder(t, srv, bucket, "run/export/"), want)

	// from the bucket to a local folder
	localToo := filepath.Join(t.TempDir(), "x")
	if code, _, stderr := runClipd("export", "s3://"+bucket+"/run/"+outfile.FinalName, "-o", localToo, "--rows-per-part", "4"); code != exitOK {
		t.Fatalf("export of an object to a local folder: exit %d: %s", code, stderr)
	}
	sameFiles(t, "export from the bucket to a local folder", filesUnder(t, localToo), want)

	// a rerun in one part replaces the three
	if code, _, stderr := runClipd("export", file, "-o", "s3://"+bucket+"/exp/"); code != exitOK {
		t.Fatalf("export rerun: exit %d: %s", code, stderr)
	}
	if got := sortedKeys(objectsUnder(t, srv, bucket, "exp/")); !slices.Equal(got, []string{"img_emb/img_emb_0.npy", "metadata/metadata_0.parquet"}) {
		t.Errorf("after a rerun in one part the bucket holds %v", got)
	}

	code, _, stderr = runClipd("export", "s3://"+bucket+"/run/missing.h5")
	checkOneErrorLine(t, "export of a missing object", code, exitInput, stderr, "clipd: s3://"+bucket+"/run/missing.h5: no such object")
}

// TestS3Refused: a wrong secret, a missing bucket and an unreachable endpoint are exit 7 and
// one line for merge, export and inspect, whichever side the s3:// location is on.
func TestS3Refused(t *testing.T) {
	srv := s3test.Shared(t)
	srv.SetEnv(t)
	bucket := srv.Bucket(t)
	file := writeRun(t, filepath.Join(t.TempDir(), "run"), []int64{1, 2, 3}, testRunAttrs("in.txt", "0/1"), true)
	uploadAs(t, srv, file, bucket, "run/"+outfile.FinalName)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close() // a port nothing listens on

	commands := func(b string) [][]string {
		return [][]string{
			{"merge", "s3://" + b + "/run/"},
			{"merge", "-o", "s3://" + b + "/out.h5", file},
			{"inspect", "s3://" + b + "/run/" + outfile.FinalName},
			{"inspect", "s3://" + b + "/run/"},
			{"export", "s3://" + b + "/run/"},
			{"export", file, "-o", "s3://" + b + "/exp/"},
		}
	}
	for _, c := range []struct {
		what, bucket string
		env          []string
		flags        []string
		want         string
	}{
		{"wrong secret", bucket, []string{"AWS_SECRET_ACCESS_KEY=wrong"}, nil, "rejects the credentials (SignatureDoesNotMatch); check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"},
		{"unknown key", bucket, []string{"AWS_ACCESS_KEY_ID=nobody"}, nil, "rejects the credentials (InvalidAccessKeyId)"},
		{"missing bucket", "no-such-bucket-clipd", nil, nil, `bucket "no-such-bucket-clipd" does not exist at ` + srv.Endpoint},
		{"unreachable endpoint", bucket, nil, []string{"--s3-endpoint", closed.URL}, closed.URL + " cannot be reached"},
	} {
		for _, args := range commands(c.bucket) {
			t.Run(c.what+"/"+strings.Join(args[:1], ""), func(t *testing.T) {
				for _, kv := range c.env {
					k, v, _ := strings.Cut(kv, "=")
					t.Setenv(k, v)
				}
				stg := t.TempDir()
				all := append(append(append([]string{}, args...), "--staging", stg), c.flags...)
				code, stdout, stderr := runClipd(all...)
				checkOneErrorLine(t, c.what+": clipd "+strings.Join(all, " "), code, exitStorage, stderr, "..."+c.want)
				if stdout != "" {
					t.Errorf("stdout %q", stdout)
				}
				emptyDir(t, stg)
			})
		}
	}
}

// TestS3InspectContained: the binary runs inspect and merge in a child process (contain.go);
// with an s3:// argument the parent makes the staging folder and removes it whatever the
// child's end: a success, and a crash of the child (as libhdf5's on a corrupted heap) with
// its downloaded copy on disk.
func TestS3InspectContained(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	srv := s3test.Shared(t)
	bucket := srv.Bucket(t)
	file := writeRun(t, filepath.Join(t.TempDir(), "run"), []int64{1, 2, 3}, testRunAttrs("in.txt", "0/1"), true)
	uploadAs(t, srv, file, bucket, "run/"+outfile.FinalName)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	obj := "s3://" + bucket + "/run/" + outfile.FinalName
	for _, c := range []struct {
		what  string
		env   []string
		args  []string
		code  int
		wants string
	}{
		{"inspect", nil, []string{"inspect", obj}, exitOK, obj + "\n  rows        3\n"},
		{"merge", nil, []string{"merge", "-o", "s3://" + bucket + "/m.h5", "s3://" + bucket + "/run/"}, exitOK, "s3://" + bucket + "/m.h5: 3 rows, 0 failures from 1 files"},
		{"inspect, the child crashes", []string{"CLIPD_TEST_CHILD_CRASH=after-download"}, []string{"inspect", obj}, exitInput, "clipd: " + obj + ": libhdf5 crashed reading it (SIGSEGV)"},
		{"merge, the child crashes", []string{"CLIPD_TEST_CHILD_CRASH=after-download"}, []string{"merge", "-o", "s3://" + bucket + "/m2.h5", "s3://" + bucket + "/run/"}, exitInput, "libhdf5 crashed reading one of the inputs (SIGSEGV)"},
	} {
		stg := t.TempDir()
		cmd, out := startClipd(t, ctx, append(srv.Env(), c.env...), append(c.args, "--staging", stg)...)
		cmd.Wait()
		if code := cmd.ProcessState.ExitCode(); code != c.code || !strings.Contains(out.String(), c.wants) {
			t.Errorf("%s: exit %d (want %d), output %q (want %q)", c.what, code, c.code, out, c.wants)
		}
		emptyDir(t, stg)
	}
}

// TestS3DownloadMemoryFlat: the download of an s3:// file is streamed: the binary's peak
// resident set (parent and child) downloading 200 MiB is that of downloading 8 MiB. The
// objects are random bytes (inspect then says "not an HDF5 file", after the download).
func TestS3DownloadMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and moves 200 MiB through the S3 server")
	}
	srv := s3test.Shared(t)
	bucket := srv.Bucket(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	peak := func(size int64) int64 {
		f := filepath.Join(t.TempDir(), "x.h5")
		w, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.CopyN(w, rand.NewChaCha8([32]byte{byte(size >> 20)}), size); err != nil {
			t.Fatal(err)
		}
		w.Close()
		key := fmt.Sprintf("mem/%d.h5", size)
		uploadAs(t, srv, f, bucket, key)
		os.Remove(f)
		stg := t.TempDir()
		cmd := exec.CommandContext(ctx, clipdBinary(t), "inspect", "--staging", stg, "s3://"+bucket+"/"+key)
		cmd.Env = append(os.Environ(), srv.Env()...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		p := runPeakRSS(cmd)
		if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != exitInput || !strings.Contains(out.String(), "s3://"+bucket+"/"+key+": not an HDF5 file") {
			t.Fatalf("inspect of %d random bytes: %v, %q", size, cmd.ProcessState, out.String())
		}
		emptyDir(t, stg)
		return p
	}
	small, large := peak(8<<20), peak(200<<20)
	t.Logf("peak RSS downloading: 8 MiB %.1f MB, 200 MiB %.1f MB", float64(small)/1e6, float64(large)/1e6)
	if small == 0 || float64(large) > float64(small)+30e6 {
		t.Errorf("peak RSS grew from %.1f MB (8 MiB object) to %.1f MB (200 MiB object)", float64(small)/1e6, float64(large)/1e6)
	}
}

// stallProxy is a reverse proxy in front of the S3 server that passes every request on,
// except the first GET or PUT of an object whose key ends in name: of a GET it sends the
// answer's first bytes, of a PUT it reads the body's first bytes, then it holds the request
// until the client goes away (the object is never stored). stalled is closed then.
type stallProxy struct {
	*httptest.Server
	stalled chan struct{}
	once    sync.Once
}

func newStallProxy(t *testing.T, target, method, name string) *stallProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u) // keeps the Host header the request was signed with
	p := &stallProxy{stalled: make(chan struct{})}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method || !strings.HasSuffix(r.URL.Path, name) {
			rp.ServeHTTP(w, r)
			return
		}
		hold := func() {
			p.once.Do(func() { close(p.stalled) })
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Minute):
			}
		}
		if method == http.MethodPut {
			io.CopyN(io.Discard, r.Body, 1000)
			p.once.Do(func() { close(p.stalled) })
			// The rest of the body, so that the server notices the client going away.
			io.Copy(io.Discard, r.Body)
			hold()
			return
		}
		rp.ServeHTTP(&stallWriter{ResponseWriter: w, hold: hold}, r)
	}))
	t.Cleanup(p.Close)
	return p
}

// stallWriter passes the answer's first 1000 bytes, then holds.
type stallWriter struct {
	http.ResponseWriter
	hold    func()
	written int
}

func (w *stallWriter) Write(b []byte) (int, error) {
	if w.written+len(b) > 1000 {
		b = b[:1000-w.written]
	}
	n, err := w.ResponseWriter.Write(b)
	w.written += n
	if w.written >= 1000 {
		w.ResponseWriter.(http.Flusher).Flush()
		w.hold()
		return n, errors.New("held")
	}
	return n, err
}

// TestS3Interrupt: SIGINT (Ctrl-C) to the clipd binary while it downloads a shard, and while
// it uploads the merged file or an export part: exit 130 with one line, no object under the
// final name, no unfinished upload, the staging folder removed.
func TestS3Interrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	srv := s3test.Shared(t)
	bucket := srv.Bucket(t)
	file := writeRun(t, filepath.Join(t.TempDir(), "run"), []int64{1, 2, 3, 4, 5}, testRunAttrs("in.txt", "0/1"), true)
	uploadAs(t, srv, file, bucket, "run/"+outfile.ShardDirName(0, 1)+"/"+outfile.FinalName)
	c := srv.Client(t)
	for _, tc := range []struct {
		what, method, name string
		args               []string
		final              string // the key that must not exist after
	}{
		{"download", http.MethodGet, outfile.FinalName, []string{"merge", "s3://" + bucket + "/run/"}, "run/" + outfile.FinalName},
		{"upload of the merge", http.MethodPut, outfile.FinalName, []string{"merge", "-o", "s3://" + bucket + "/up/" + outfile.FinalName, file}, "up/" + outfile.FinalName},
		{"upload of an export part", http.MethodPut, ".npy", []string{"export", file, "-o", "s3://" + bucket + "/exp/"}, "exp/img_emb/img_emb_0.npy"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			proxy := newStallProxy(t, srv.Endpoint, tc.method, tc.name)
			stg := t.TempDir()
			args := append(append([]string{}, tc.args...), "--staging", stg, "--s3-endpoint", proxy.URL)
			cmd, out := startClipd(t, ctx, srv.Env(), args...)
			exited := make(chan struct{})
			go func() { cmd.Wait(); close(exited) }()
			select {
			case <-proxy.stalled:
			case <-exited:
				t.Fatalf("clipd %v ended before the transfer stalled: %s", args, out)
			case <-ctx.Done():
				t.Fatal("the transfer never started")
			}
			cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-exited:
			case <-ctx.Done():
				cmd.Process.Kill()
				t.Fatalf("clipd did not stop on SIGINT: %s", out)
			}
			if code := cmd.ProcessState.ExitCode(); code != exitInterrupted || out.String() != "clipd: interrupted\n" {
				t.Errorf("after SIGINT: exit %d, output %q; want 130 and one line", code, out)
			}
			emptyDir(t, stg)
			if _, err := c.Head(ctx, objstore.Location{Bucket: bucket, Key: tc.final}); !errors.Is(err, objstore.ErrNotFound) {
				t.Errorf("%s exists after the interrupted command (%v)", tc.final, err)
			}
			if n, err := c.AbortUploads(ctx, objstore.Location{Bucket: bucket}); err != nil || n != 0 {
				t.Errorf("unfinished multipart uploads left: %d (%v)", n, err)
			}
		})
	}
}
