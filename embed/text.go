// text.go: the text side of a run (Config.TextColumn): each engine's text tower, with the
// tokenizer of the weights' vocabulary, as the batch stage's TextEmbedder.

package embed

import (
	"fmt"

	"github.com/clipd/clipd/cgo/engine"
)

// textTower is the text side of an engine: n sequences of ctx ids in, n*EmbedDim floats out
// (not normalized), one call at a time.
type textTower interface {
	EmbedTokens(tokens []int32, n int, out []float32) error
}

// textEmbedder is one engine's batch.TextEmbedder: it tokenizes a batch's texts to the
// tower's context and embeds them in one call.
type textEmbedder struct {
	tower textTower
	tok   *engine.Tokenizer // shared by the engines: Tokenize is safe from many goroutines
	ctx   int               // the text tower's context length
	ids   []int32           // the batch's ids, reused
}

// EmbedTexts implements batch.TextEmbedder. A text longer than the context is cut to it
// (the tokenizer keeps the end token) and counted.
func (t *textEmbedder) EmbedTexts(texts []string, out []float32) (int, error) {
	t.ids = t.ids[:0]
	truncated := 0
	for _, s := range texts {
		ids, n, err := t.tok.Tokenize(s, t.ctx)
		if err != nil {
			return 0, fmt.Errorf("tokenizing %q: %w", s, err)
		}
		if n > t.ctx-2 {
			truncated++
		}
		t.ids = append(t.ids, ids...)
	}
	return truncated, t.tower.EmbedTokens(t.ids, len(texts), out)
}

// openTexts opens the text tower of every engine of es, for the weights at wpath.
//
// The engine's text tower (cgo/engine TextInfo/EmbedTokens) is not in this build yet: a run
// with a text column is refused with one line rather than run without its text embeddings.
func (es *engines) openTexts(wpath string) error {
	return withKind(ErrConfig, fmt.Errorf("--text-column: this build's engine has no text tower (weights %s); run without --text-column", wpath))
}
