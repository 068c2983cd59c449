// text_internal_test.go: textEmbedder, the batch stage's text side: one tower call per
// batch with each text's ids as the tokenizer gives them, in order, and the texts cut to the
// context counted.
package embed

import (
	"os"
	"os/exec"
	"slices"
	"testing"

	"github.com/clipd/clipd/cgo/engine"
)

// fakeTower records its calls and embeds a sequence as (its first 3 ids, its count of ids).
type fakeTower struct {
	calls  int
	tokens []int32
}

func (f *fakeTower) EmbedTokens(tokens []int32, n int, out []float32) error {
	f.calls++
	f.tokens = append([]int32(nil), tokens...)
	ctx := len(tokens) / n
	for i := range n {
		seq := tokens[i*ctx : (i+1)*ctx]
		nz := 0
		for _, id := range seq {
			if id != 0 {
				nz++
			}
		}
		out[i*4], out[i*4+1], out[i*4+2], out[i*4+3] = float32(seq[0]), float32(seq[1]), float32(seq[2]), float32(nz)
	}
	return nil
}

// testVocab writes the tokenizer reference's seeded vocabulary into a new folder.
func testVocab(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("needs /usr/bin/python3 with python3-regex (make deps)")
	}
	dir := t.TempDir()
	if b, err := exec.Command("/usr/bin/python3", "../tests/reference/tokenizer_ref.py", "make-vocab", dir).CombinedOutput(); err != nil {
		t.Fatalf("tokenizer_ref.py make-vocab: %v\n%s", err, b)
	}
	return dir
}

func TestTextEmbedderTokenizesEachText(t *testing.T) {
	tok, err := engine.OpenTokenizer(testVocab(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	const ctx = 8
	texts := []string{"a cat", "", "a very long caption that does not fit in eight tokens at all", "Ünïcödé, and digits 123"}
	tower := &fakeTower{}
	te := &textEmbedder{tower: tower, tok: tok, ctx: ctx}
	out := make([]float32, len(texts)*4)
	truncated, err := te.EmbedTexts(texts, out)
	if err != nil {
		t.Fatal(err)
	}
	var want []int32
	wantTrunc := 0
	for _, s := range texts {
		ids, n, err := tok.Tokenize(s, ctx)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, ids...)
		if n > ctx-2 {
			wantTrunc++
		}
	}
	if tower.calls != 1 || !slices.Equal(tower.tokens, want) {
		t.Fatalf("%d calls with %v, want 1 with %v", tower.calls, tower.tokens, want)
	}
	if truncated != 2 || wantTrunc != 2 {
		t.Errorf("truncated %d (the tokenizer's counts say %d), want 2", truncated, wantTrunc)
	}
	// "" is the start and end tokens alone; a cut text keeps its end token last.
	if out[1*4+3] != 2 || want[2*ctx+ctx-1] != want[1*ctx+1] {
		t.Errorf("empty text %v; the cut text ends with %d, the end token is %d", out[4:8], want[2*ctx+ctx-1], want[1*ctx+1])
	}
	// The ids buffer is reused: a second, smaller batch sends only its own ids.
	if _, err := te.EmbedTexts(texts[:1], out[:4]); err != nil || len(tower.tokens) != ctx || !slices.Equal(tower.tokens, want[:ctx]) {
		t.Errorf("second batch: %v %v", tower.tokens, err)
	}
}
