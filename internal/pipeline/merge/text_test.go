// text_test.go: merging outputs with text_embeddings keeps each row's text embedding with
// its URL (input order restored from shards, duplicates dropped whole); outputs with and
// without text embeddings, or of other text columns, are not merged.
package merge_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/cgo/h5"
	"github.com/clipd/clipd/internal/pipeline/item"
	"github.com/clipd/clipd/internal/pipeline/merge"
	"github.com/clipd/clipd/internal/pipeline/outfile"
	"github.com/clipd/clipd/internal/pipeline/sink/sinktest"
)

// textEmbOf is the test text embedding of line l of input in (unlike embOf).
func textEmbOf(in int, l int64) []float32 {
	e := make([]float32, testDim)
	for i := range e {
		e[i] = -float32(l)*4 - float32(i) - float32(in)*1000
	}
	return e
}

// writeTextShard writes a final file with text embeddings (text column caption) of lines of
// input in (line L has URL u<L> and fails when L%5 == 0); Seqs in line order, as a run's.
func writeTextShard(t *testing.T, dir string, in int, lines []int64, attrs outfile.Attrs) string {
	t.Helper()
	attrs.TextColumn, attrs.TokenizerSHA256 = "caption", "tok1"
	var rows []sinktest.Row
	for seq, l := range lines {
		r := sinktest.Row{Item: item.Item{Seq: int64(seq), Line: l, URL: fmt.Sprintf("http://h/u%d", l)}, Embedding: embOf(l), TextEmbedding: textEmbOf(in, l)}
		if l%5 == 0 {
			r.Fail = "timeout"
		}
		rows = append(rows, r)
	}
	return sinktest.WriteRun(t, dir, attrs, false, 2, rows)
}

// textRows reads urls, embeddings and text_embeddings of path.
func textRows(t *testing.T, path string) (urls []string, emb, text []float32) {
	t.Helper()
	f, err := h5.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tf, n, err := outfile.OpenTable(f, outfile.WithText(outfile.EmbeddedTable(false, false, h5.Float32, testDim), true), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tf.Close()
	urls, _ = tf.Dataset(outfile.ColURLs).ReadStrings(0, int(n))
	emb, _ = tf.Dataset(outfile.ColValues).ReadFloat32(0, int(n))
	text, err = tf.Dataset(outfile.ColText).ReadFloat32(0, int(n))
	if err != nil {
		t.Fatal(err)
	}
	return urls, emb, text
}

func TestMergeKeepsTextEmbeddings(t *testing.T) {
	tmp := t.TempDir()
	a := writeTextShard(t, filepath.Join(tmp, "a"), 0, []int64{2, 4, 6, 8, 10, 12}, testAttrs("float32", "0/2"))
	b := writeTextShard(t, filepath.Join(tmp, "b"), 0, []int64{3, 5, 7, 9, 11}, testAttrs("float32", "1/2"))
	other := testAttrs("float32", "0/1")
	other.Input, other.InputFingerprint = "other.txt", "sha256:22 size:3"
	c := writeTextShard(t, filepath.Join(tmp, "c"), 1, []int64{3, 13}, other) // u3 again: dropped, text and all
	out := filepath.Join(tmp, "merged.h5")
	st, err := merge.Files(context.Background(), []string{a, b, c}, out, merge.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Rows != 10 || st.DuplicateRows != 1 {
		t.Fatalf("stats %+v", st)
	}
	urls, emb, text := textRows(t, out)
	for i, u := range urls {
		var l int64
		fmt.Sscanf(u, "http://h/u%d", &l)
		in := 0
		if l == 13 {
			in = 1
		}
		if got := text[i*testDim : (i+1)*testDim]; fmt.Sprint(got) != fmt.Sprint(textEmbOf(in, l)) {
			t.Errorf("row %d (%s): text embedding %v, want %v", i, u, got, textEmbOf(in, l))
		}
		if got := emb[i*testDim : (i+1)*testDim]; fmt.Sprint(got) != fmt.Sprint(embOf(l)) {
			t.Errorf("row %d (%s): embedding %v, want %v", i, u, got, embOf(l))
		}
	}
	if got := strings.Join(urls, " "); got != "http://h/u2 http://h/u3 http://h/u4 http://h/u6 http://h/u7 http://h/u8 http://h/u9 http://h/u11 http://h/u12 http://h/u13" {
		t.Errorf("urls %s", got)
	}
	f, _ := outfile.Open(out)
	attrs, _ := outfile.ReadAttrs(f)
	f.Close()
	if attrs.TextColumn != "caption" {
		t.Errorf("merged text_column %q", attrs.TextColumn)
	}

	// Without text embeddings, or of another text column: not merged.
	plain := writeShard(t, filepath.Join(tmp, "plain"), []int64{1}, testAttrs("float32", "0/1"), false)
	title := testAttrs("float32", "0/1")
	title.Input = "third.txt"
	d := filepath.Join(tmp, "title")
	title.TextColumn = "title"
	tp := sinktest.WriteRun(t, d, title, false, 2, []sinktest.Row{{Item: item.Item{Line: 1, URL: "http://h/t"}, Embedding: embOf(1), TextEmbedding: textEmbOf(2, 1)}})
	retok := testAttrs("float32", "0/1")
	retok.Input, retok.TextColumn, retok.TokenizerSHA256 = "fourth.txt", "caption", "other"
	rt := sinktest.WriteRun(t, filepath.Join(tmp, "retok"), retok, false, 2, []sinktest.Row{{Item: item.Item{Line: 1, URL: "http://h/r"}, Embedding: embOf(1), TextEmbedding: textEmbOf(3, 1)}})
	for _, c := range []struct {
		files []string
		says  string
	}{
		{[]string{a, rt}, `tokenizer_sha256 tok1, ` + rt + ` has other`},
		{[]string{a, plain}, "text_embeddings true"},
		{[]string{plain, a}, "text_embeddings false"},
		{[]string{a, tp}, `text_column "caption", ` + tp + ` has "title"`},
	} {
		_, err := merge.Files(context.Background(), c.files, filepath.Join(tmp, "x.h5"), merge.Options{})
		if !errors.Is(err, outfile.ErrMismatch) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("merge %v: %v, want a mismatch saying %q", c.files, err, c.says)
		}
	}
}
