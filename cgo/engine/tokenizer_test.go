// tokenizer_test.go: the tokenizer against the Python reference (tests/reference/
// tokenizer_ref.py) id for id on a seeded vocabulary and a few thousand texts, its errors,
// concurrent use, and its speed.

package engine

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

const tokenizerRef = "../../tests/reference/tokenizer_ref.py"

// refVocab writes the reference's seeded vocabulary (vocab.json + merges.txt) into a new
// folder; args go to tokenizer_ref.py make-vocab.
func refVocab(t testing.TB, args ...string) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("needs /usr/bin/python3 with python3-regex (make deps)")
	}
	dir := t.TempDir()
	if b, err := exec.Command("/usr/bin/python3", append([]string{tokenizerRef, "make-vocab", dir}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("tokenizer_ref.py make-vocab: %v\n%s(python3-regex is installed by make deps)", err, b)
	}
	return dir
}

type tokenizerCase struct {
	Hex   string  `json:"hex"`
	Ctx   int     `json:"ctx"`
	IDs   []int32 `json:"ids"`
	N     int     `json:"n"`
	BPE   []int32 `json:"bpe"`
	Error string  `json:"error"`
}

// The learnt vocabulary ranks merges as BPE learnt them; the shuffled one ranks them at
// random, so that a pair made of a merge's result often outranks that merge and only
// SimpleTokenizer's rounds (all occurrences of the best pair, then the pairs that made)
// give the reference's ids.
func TestTokenizerMatchesReference(t *testing.T) {
	t.Run("learnt", func(t *testing.T) { matchReference(t, refVocab(t), 20000) })
	t.Run("shuffled", func(t *testing.T) { matchReference(t, refVocab(t, "--shuffle"), 0) })
}

// matchReference compares the reference's cases (tokenizer_ref.py expect) with codePoints
// texts of single code points, a seeded sample; CLIP_TOKENIZER_CODE_POINTS=-1 checks every
// code point instead (a minute of Python).
func matchReference(t *testing.T, dir string, codePoints int) {
	out := filepath.Join(dir, "cases.jsonl")
	k := fmt.Sprint(codePoints)
	if env := os.Getenv("CLIP_TOKENIZER_CODE_POINTS"); env != "" && codePoints > 0 {
		k = env
	}
	args := []string{tokenizerRef, "expect", dir, out, "--code-points", k}
	if b, err := exec.Command("/usr/bin/python3", args...).CombinedOutput(); err != nil {
		t.Fatalf("tokenizer_ref.py expect: %v\n%s", err, b)
	}
	tok, err := OpenTokenizer(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	cases, bad, cut, invalid := 0, 0, 0, 0
	for sc.Scan() {
		var c tokenizerCase
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		raw, err := hex.DecodeString(c.Hex)
		if err != nil {
			t.Fatal(err)
		}
		cases++
		ids, n, err := tok.Tokenize(string(raw), c.Ctx)
		if c.Error != "" {
			invalid++
			if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "not valid UTF-8") {
				bad++
				t.Errorf("%q: want the invalid UTF-8 error, got ids %v, err %v", raw, ids, err)
			}
			continue
		}
		if c.N > c.Ctx-2 {
			cut++
		}
		if err != nil || n != c.N || !slices.Equal(ids, c.IDs) {
			bad++
			if bad <= 20 {
				t.Errorf("%q (ctx %d):\n got  %v n=%d err=%v\n want %v n=%d", raw, c.Ctx, ids, n, err, c.IDs, c.N)
			}
			continue
		}
		// every BPE id, not only those before the cut: a context that holds them all
		all, _, err := tok.Tokenize(string(raw), c.N+2)
		if err != nil || !slices.Equal(all[1:c.N+1], c.BPE) {
			bad++
			if bad <= 20 {
				t.Errorf("%q, all ids:\n got  %v err=%v\n want %v", raw, all, err, c.BPE)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if bad > 0 {
		t.Errorf("%d of %d texts differ from the reference", bad, cases)
	}
	// the cases must exercise what they claim to: thousands of texts, cut ones, bad UTF-8
	if cases < 3000+codePoints || cut < 20 || invalid < 10 {
		t.Errorf("only %d cases (%d cut, %d invalid UTF-8)", cases, cut, invalid)
	}
	t.Logf("%d texts equal to the reference (%d cut to the context, %d invalid UTF-8)", cases-bad, cut, invalid)
}

// The ids are the reference's for a hand-checked caption: <|startoftext|>, BPE, <|endoftext|>.
func TestTokenizeLayout(t *testing.T) {
	dir := refVocab(t)
	tok, err := OpenTokenizer(filepath.Join(dir, "model.safetensors")) // the folder of a weights file
	if err == nil || !errors.Is(err, ErrIO) {
		t.Fatalf("a weights path that does not exist: want ErrIO, got %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err = OpenTokenizer(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	var vocab map[string]int32
	b, err := os.ReadFile(filepath.Join(dir, "vocab.json"))
	if err != nil || json.Unmarshal(b, &vocab) != nil {
		t.Fatalf("vocab.json: %v", err)
	}
	sot, eot := vocab["<|startoftext|>"], vocab["<|endoftext|>"]
	if sot != int32(len(vocab)-2) || eot != int32(len(vocab)-1) {
		t.Fatalf("special tokens %d %d in a vocabulary of %d", sot, eot, len(vocab))
	}
	ids, n, err := tok.Tokenize("A  Dog!", ContextLength)
	if err != nil {
		t.Fatal(err)
	}
	// "a" "dog" "!" are single pieces; "a</w>" and "!</w>" are byte tokens
	want := []int32{sot, vocab["a</w>"]}
	if len(ids) != ContextLength || n < 3 || ids[0] != sot || ids[1] != want[1] || ids[n+1] != eot || ids[n] != vocab["!</w>"] {
		t.Fatalf("ids %v n %d", ids, n)
	}
	for _, id := range ids[n+2:] {
		if id != 0 {
			t.Fatalf("not zero-padded: %v", ids)
		}
	}
	// a cut text keeps the end token last and reports the count before the cut
	long := strings.Repeat("x ", 200)
	ids, n, err = tok.Tokenize(long, ContextLength)
	if err != nil || n != 200 || ids[76] != eot || ids[75] != vocab["x</w>"] || ids[0] != sot {
		t.Fatalf("long text: n %d err %v ids %v", n, err, ids)
	}
	ids, n, err = tok.Tokenize("", 2)
	if err != nil || n != 0 || !slices.Equal(ids, []int32{sot, eot}) {
		t.Fatalf("empty text, ctx 2: %v %d %v", ids, n, err)
	}
}

func TestTokenizerErrors(t *testing.T) {
	dir := refVocab(t)
	empty := t.TempDir()
	_, err := OpenTokenizer(empty)
	if !errors.Is(err, ErrIO) || !strings.Contains(err.Error(), "no vocab.json beside the weights") || !strings.Contains(err.Error(), "clipd weights fetch") {
		t.Errorf("empty folder: %v", err)
	}
	write := func(name, body string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	merges := filepath.Join(dir, "merges.txt")
	vocab := filepath.Join(dir, "vocab.json")
	for _, c := range []struct{ name, vocab, merges, want string }{
		{"not json", write("vocab.json", "{"), merges, "not a JSON object"},
		{"no specials", write("vocab.json", `{"a": 1}`), merges, "no <|startoftext|> token"},
		{"not ids", write("vocab.json", `{"a": "x"}`), merges, "is not a token id"},
		{"missing byte", write("vocab.json", `{"<|startoftext|>": 1, "<|endoftext|>": 2}`), merges, "lacks the byte token"},
		{"foreign merges", vocab, write("merges.txt", "#version: 0.2\nq z\n"), `has no token "qz"`},
	} {
		_, err := NewTokenizer(c.vocab, c.merges)
		if !errors.Is(err, ErrBadWeights) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: want ErrBadWeights with %q, got %v", c.name, c.want, err)
		}
	}
	tok, err := OpenTokenizer(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tok.Tokenize("ok \xe2\x82", ContextLength); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "not valid UTF-8 (at byte 3)") {
		t.Errorf("invalid UTF-8: %v", err)
	}
	if _, _, err := tok.Tokenize("ok", 1); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("context length 1: %v", err)
	}
	tok.Close()
	tok.Close()
	if _, _, err := tok.Tokenize("ok", ContextLength); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "closed") {
		t.Errorf("after Close: %v", err)
	}
}

// Many goroutines share one tokenizer (run with -race); each gets what one goroutine gets.
func TestTokenizerConcurrent(t *testing.T) {
	tok, err := OpenTokenizer(refVocab(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	texts := []string{"a photo of a dog", "Ελληνικά ΣΑΣ", "東京タワーの写真", strings.Repeat("long text ", 60), "&amp;amp; café"}
	want := make([][]int32, len(texts))
	for i, s := range texts {
		if want[i], _, err = tok.Tokenize(s, ContextLength); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for k := 0; k < 200; k++ {
				i := (g + k) % len(texts)
				got, _, err := tok.Tokenize(texts[i], ContextLength)
				if err != nil || !slices.Equal(got, want[i]) {
					errs <- fmt.Errorf("goroutine %d, %q: %v %v", g, texts[i], got, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// BenchmarkTokenize: one caption, and a text past the context (the whole text is encoded to
// count its tokens), with the reference's learnt vocabulary (877 tokens) padded to CLIP's
// 49,408 so that the lookups go to tables of the real size.
func BenchmarkTokenize(b *testing.B) {
	tok, err := OpenTokenizer(refVocab(b, "--pad-to", "49408"))
	if err != nil {
		b.Fatal(err)
	}
	defer tok.Close()
	for _, c := range []struct{ name, text string }{
		{"caption", "A photo of a brown dog sitting on the red couch, next to a café window."},
		{"long", strings.Repeat("The quick brown fox jumps over the lazy dog. ", 40)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.text)))
			for b.Loop() {
				if _, _, err := tok.Tokenize(c.text, ContextLength); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpenTokenizer: loading a vocabulary of CLIP's size (vocab.json + merges.txt).
func BenchmarkOpenTokenizer(b *testing.B) {
	dir := refVocab(b, "--pad-to", "49408")
	for b.Loop() {
		tok, err := OpenTokenizer(dir)
		if err != nil {
			b.Fatal(err)
		}
		tok.Close()
	}
}
