// text_test.go: `clipd merge`, `clipd inspect` and `clipd export` on outputs with
// text_embeddings (clipd embed --text-column): merged row for row, listed, exported as
// text_emb/text_emb_K.npy (locally and to s3://); an output without them does not merge with
// one that has them.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/objstore/s3test"
	"github.com/clipd/clipd/internal/pipeline/export"
	"github.com/clipd/clipd/internal/pipeline/item"
	"github.com/clipd/clipd/internal/pipeline/outfile"
	"github.com/clipd/clipd/internal/pipeline/sink/sinktest"
)

// writeTextRun writes a final file with text embeddings of column caption: line L has URL
// http://h/L, embedding [L .5 -1 2], text embedding [-L 0.25 L 3]; L%4 == 0 fails.
func writeTextRun(t *testing.T, dir string, lines []int64, attrs outfile.Attrs) string {
	t.Helper()
	attrs.TextColumn = "caption"
	var rows []sinktest.Row
	for seq, l := range lines {
		r := sinktest.Row{Item: item.Item{Seq: int64(seq), Line: l, URL: fmt.Sprintf("http://h/%d", l)},
			Embedding: []float32{float32(l), 0.5, -1, 2}, TextEmbedding: []float32{-float32(l), 0.25, float32(l), 3}}
		if l%4 == 0 {
			r.Fail = "http 404"
		}
		rows = append(rows, r)
	}
	return sinktest.WriteRun(t, dir, attrs, false, 2, rows)
}

func TestTextEmbeddingsMergeInspectExport(t *testing.T) {
	tmp := t.TempDir()
	out := filepath.Join(tmp, "OUT")
	writeTextRun(t, filepath.Join(out, "shard-00000-of-00002"), []int64{1, 3, 5, 7}, testRunAttrs("in.csv", "0/2"))
	writeTextRun(t, filepath.Join(out, "shard-00001-of-00002"), []int64{2, 4, 6}, testRunAttrs("in.csv", "1/2"))
	if code, stdout, stderr := runClipd("merge", out); code != 0 {
		t.Fatalf("merge: exit %d\n%s%s", code, stdout, stderr)
	}
	final := filepath.Join(out, outfile.FinalName)

	code, stdout, stderr := runClipd("inspect", "-n", "2", out)
	if code != 0 {
		t.Fatalf("inspect: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{"datasets    urls, embeddings, text_embeddings,", `text        text_embeddings of column "caption"`,
		"0  http://h/1  [1 0.5 -1 2 ...]\n     text  [-1 0.25 1 3 ...]", "1  http://h/2  [2 0.5 -1 2 ...]\n     text  [-2 0.25 2 3 ...]",
		"text_column     caption"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, stdout)
		}
	}

	exp := filepath.Join(tmp, "exp")
	code, stdout, stderr = runClipd("export", out, "--format", "npy", "-o", exp, "--rows-per-part", "4")
	if code != 0 || !strings.Contains(stdout, "text embeddings in text_emb") {
		t.Fatalf("export: exit %d\n%s%s", code, stdout, stderr)
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import h5py").Run(); err != nil {
		t.Skipf("/usr/bin/python3 with h5py is needed: %v", err)
	}
	script := `
import sys, numpy as np, h5py
f = h5py.File(sys.argv[1], "r")
urls = list(f["urls"].asstr()[:])
assert urls == ["http://h/%d" % l for l in (1, 2, 3, 5, 6, 7)], urls
t = np.concatenate([np.load(sys.argv[2] + "/text_emb/text_emb_%d.npy" % k) for k in (0, 1)])
i = np.concatenate([np.load(sys.argv[2] + "/img_emb/img_emb_%d.npy" % k) for k in (0, 1)])
ls = [int(u.rsplit("/", 1)[1]) for u in urls]
assert (t == np.array([[-l, 0.25, l, 3] for l in ls], np.float32)).all(), t
assert (i == np.array([[l, 0.5, -1, 2] for l in ls], np.float32)).all(), i
assert (f["text_embeddings"][:] == t).all()
print("ok")
`
	if b, err := exec.Command("/usr/bin/python3", "-W", "ignore", "-c", script, final, exp).CombinedOutput(); err != nil || strings.TrimSpace(string(b)) != "ok" {
		t.Fatalf("h5py/numpy check: %v\n%s", err, b)
	}

	// An output without text embeddings does not merge with one that has them: exit 3.
	plain := writeRun(t, filepath.Join(tmp, "plain"), []int64{9}, testRunAttrs("other.csv", "0/1"), false)
	code, _, stderr = runClipd("merge", final, plain, "-o", filepath.Join(tmp, "x.h5"))
	if code != exitInput || !strings.Contains(stderr, "text_embeddings true") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("merge with and without text: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(tmp, "x.h5")); err == nil {
		t.Error("a refused merge left its output")
	}
}

// An export of a file with text_embeddings to s3:// holds the local export's files, text_emb
// parts included, byte for byte; a stale text part of an earlier, longer export goes, and an
// export of a file without text embeddings to the same prefix removes every text part.
func TestS3ExportTextEmbeddings(t *testing.T) {
	srv := s3test.Shared(t)
	srv.SetEnv(t)
	bucket := srv.Bucket(t)
	file := writeTextRun(t, filepath.Join(t.TempDir(), "run"), []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, testRunAttrs("in.csv", "0/1"))
	localExp := filepath.Join(t.TempDir(), "exp")
	if code, _, stderr := runClipd("export", file, "-o", localExp, "--rows-per-part", "4"); code != exitOK {
		t.Fatalf("local export: exit %d: %s", code, stderr)
	}
	want := filesUnder(t, localExp)
	if len(want) != 9 { // 3 parts x (img_emb, text_emb, metadata)
		t.Fatalf("the local export wrote %v", sortedKeys(want))
	}
	stale := objstore.Location{Bucket: bucket, Key: "exp/" + export.TextEmbDir + "/text_emb_5.npy"}
	if err := srv.Client(t).PutBytes(s3Ctx(t), stale, []byte("old"), nil); err != nil {
		t.Fatal(err)
	}
	stg := t.TempDir()
	code, stdout, stderr := runClipd("export", file, "-o", "s3://"+bucket+"/exp", "--rows-per-part", "4", "--staging", stg)
	if code != exitOK || !strings.Contains(stdout, "text embeddings in text_emb") {
		t.Fatalf("export to s3://B/exp: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	emptyDir(t, stg)
	sameFiles(t, "export with text to the bucket", objectsUnder(t, srv, bucket, "exp/"), want)

	plain := writeRun(t, filepath.Join(t.TempDir(), "plain"), []int64{1, 2, 3}, testRunAttrs("in.txt", "0/1"), true)
	if code, _, stderr := runClipd("export", plain, "-o", "s3://"+bucket+"/exp/", "--staging", stg); code != exitOK {
		t.Fatalf("plain export: exit %d: %s", code, stderr)
	}
	if got := sortedKeys(objectsUnder(t, srv, bucket, "exp/")); !slices.Equal(got, []string{"img_emb/img_emb_0.npy", "metadata/metadata_0.parquet"}) {
		t.Errorf("after an export without text the bucket holds %v", got)
	}
}
