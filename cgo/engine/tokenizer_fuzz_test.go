// tokenizer_fuzz_test.go: FuzzTokenize, any bytes through the tokenizer: valid UTF-8 gives
// the id layout, anything else the UTF-8 error, and spaces around a text change nothing.

package engine

import (
	"errors"
	"slices"
	"testing"
	"unicode/utf8"
)

func FuzzTokenize(f *testing.F) {
	tok, err := OpenTokenizer(refVocab(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { tok.Close() })
	for _, s := range []string{"", "a photo of a dog", "&amp;amp; &#x41; &notit;", "ΣΑΣ aΣ", "e\u0301\u0323",
		"<|endoftext|>", "don't 'ſ", "\xff\xfe", "東京 한국 \U0001F468\u200d\U0001F469", "\x00\x1c\u3000\u0085"} {
		f.Add(s, 77)
	}
	probe, _, _ := tok.Tokenize("", 2)
	sot, eot := probe[0], probe[1]
	f.Fuzz(func(t *testing.T, text string, ctx int) {
		ctx = 2 + (ctx&0x7fffffff)%300
		ids, n, err := tok.Tokenize(text, ctx)
		if !utf8.ValidString(text) {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("invalid UTF-8 %q: ids %v, err %v", text, ids, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		kept := min(n, ctx-2)
		if len(ids) != ctx || ids[0] != sot || ids[kept+1] != eot || n < 0 {
			t.Fatalf("%q ctx %d: n %d, ids %v", text, ctx, n, ids)
		}
		for _, id := range ids[kept+2:] {
			if id != 0 {
				t.Fatalf("%q ctx %d: not zero-padded: %v", text, ctx, ids)
			}
		}
		// str.strip() drops spaces around the text, whatever it holds
		spaced, n2, err := tok.Tokenize(" \t"+text+" ", ctx)
		if err != nil || n2 != n || !slices.Equal(spaced, ids) {
			t.Fatalf("%q: with spaces around it %v (n %d, %v), without %v (n %d)", text, spaced, n2, err, ids, n)
		}
	})
}
