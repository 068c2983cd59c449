// text_test.go: a run with a text column: text_embeddings row-aligned with urls through
// chunks written in a shuffled order, a crash and resume, and Finalize (read back by h5py);
// the text column is part of the run's identity.
package sink

import (
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/pipeline/item"
)

// textOf is the test text embedding of seq: unlike embOf(seq), so a row whose text
// embedding came from another row, or from its image, is seen.
func textOf(seq int64) []float32 {
	e := make([]float32, testDim)
	for i := range e {
		e[i] = -float32(seq)*3 - float32(i)*0.5 - 1
	}
	return e
}

func addAllText(t *testing.T, w *Writer, seqs []int64) {
	t.Helper()
	for _, s := range seqs {
		var err error
		if isFailed(s) {
			err = w.AddFailure(item.Failure{Item: itemOf(s), Stage: "fetch", Reason: fmt.Sprintf("http %d", 400+s%5)})
		} else {
			err = w.Add(Row{Item: itemOf(s), Embedding: embOf(s), TextEmbedding: textOf(s)})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestTextEmbeddingsResumeAndFinalize(t *testing.T) {
	for _, dtype := range []string{"float32", "float16"} {
		t.Run(dtype, func(t *testing.T) {
			dir := t.TempDir()
			opt := testOptions(dir, 10)
			opt.Attrs.Dtype = dtype
			opt.Attrs.TextColumn = "caption"
			order := shuffled(60, 7)
			w, err := Open(opt)
			if err != nil {
				t.Fatal(err)
			}
			addAllText(t, w, order[:33]) // 3 complete chunks and 3 items of the fourth
			for {
				if _, _, c := w.Stats(); c == 3 {
					break
				}
				runtimeGosched()
			}
			// A crash: the writer is dropped; its copy of the folder is resumed.
			crashed := t.TempDir()
			copyDir(t, dir, crashed)
			w.Close()
			opt.Dir = crashed
			w2, err := Open(opt)
			if err != nil {
				t.Fatal(err)
			}
			if rows, fails := w2.Resumed(); rows+fails != 30 {
				t.Fatalf("resumed %d rows + %d failures, want 30", rows, fails)
			}
			var todo []int64
			for _, s := range order {
				if !w2.Done(s) {
					todo = append(todo, s)
				}
			}
			addAllText(t, w2, todo)
			if err := w2.Close(); err != nil {
				t.Fatal(err)
			}
			path, err := Finalize(crashed, opt.Attrs)
			if err != nil {
				t.Fatal(err)
			}
			checkFinal(t, path, 60, dtype)
			checkTextH5py(t, path, dtype, 60)
		})
	}
}

// checkTextH5py checks with h5py that text_embeddings[i] is textOf of the seq of urls[i].
func checkTextH5py(t *testing.T, path, dtype string, n int) {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import h5py").Run(); err != nil {
		t.Skipf("/usr/bin/python3 with h5py is needed: %v", err)
	}
	script := `
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
n = int(sys.argv[3])
t = f["text_embeddings"][:]
e = f["embeddings"][:]
assert t.dtype == e.dtype == np.dtype(sys.argv[2]) and t.shape == e.shape, (t.dtype, t.shape, e.shape)
seqs = [int(u.rsplit("/", 1)[1].split(".")[0]) for u in f["urls"].asstr()[:]]
assert seqs == [s for s in range(n) if s % 7 != 3], seqs
exp = np.array([[-s * 3 - i * 0.5 - 1 for i in range(8)] for s in seqs], np.float32).astype(sys.argv[2])
assert (t == exp).all()
assert f.attrs["text_column"] == "caption"
print("ok")
`
	out, err := exec.Command("/usr/bin/python3", "-W", "ignore", "-c", script, path, dtype, strconv.Itoa(n)).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("h5py check: %v\n%s", err, out)
	}
}

// The text column is part of the run: a rerun with another one, or without one, is refused,
// before and after Finalize; a row without its text embedding (or with one in a run without
// a text column) is an error, not a row of zeros.
func TestTextColumnIsPartOfTheRun(t *testing.T) {
	dir := t.TempDir()
	opt := testOptions(dir, 4)
	opt.Attrs.TextColumn, opt.Attrs.TokenizerSHA256 = "caption", "aaaa"
	w, err := Open(opt)
	if err != nil {
		t.Fatal(err)
	}
	addAllText(t, w, []int64{0, 1, 2})
	if err := w.Add(Row{Item: itemOf(4), Embedding: embOf(4)}); err == nil || !strings.Contains(err.Error(), "text embedding of 0 values") {
		t.Errorf("a row without its text embedding: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ column, tokenizer, says string }{
		{"title", "aaaa", "text column caption, now title"},
		{"", "", "text column caption, now none"},
		{"caption", "bbbb", "the tokenizer's vocab.json or merges.txt changed (sha256 aaaa, now bbbb)"},
	} {
		other := opt
		other.Attrs.TextColumn, other.Attrs.TokenizerSHA256 = c.column, c.tokenizer
		if _, err := Open(other); !errors.Is(err, ErrRunMismatch) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("text column %q: %v, want ErrRunMismatch saying %q", c.column, err, c.says)
		}
	}
	if _, err := Finalize(dir, opt.Attrs); err != nil {
		t.Fatal(err)
	}
	other := opt
	other.Attrs.TextColumn, other.Attrs.TokenizerSHA256 = "", ""
	if _, err := Open(other); !errors.Is(err, ErrRunMismatch) || !strings.Contains(err.Error(), "text column caption, now none") {
		t.Errorf("after Finalize, without a text column: %v", err)
	}
	if _, err := Open(opt); !errors.Is(err, ErrAlreadyComplete) {
		t.Errorf("after Finalize, the same run: %v", err)
	}

	plain := testOptions(t.TempDir(), 4)
	w, err = Open(plain)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(Row{Item: itemOf(0), Embedding: embOf(0), TextEmbedding: textOf(0)}); err == nil {
		t.Error("a text embedding in a run without a text column: no error")
	}
	w.Close()
}
