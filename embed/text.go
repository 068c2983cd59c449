// text.go: the text side of a run (Config.TextColumn): each engine's text tower, with the
// tokenizer of the weights' vocabulary, as the batch stage's TextEmbedder.

package embed

import "fmt"

// openTexts opens the text tower of every engine of es, for the weights at wpath.
//
// The engine's text tower (cgo/engine TextInfo/EmbedTokens, OpenTokenizer) is not in this
// build yet: a run with a text column is refused with one line rather than run without its
// text embeddings.
func (es *engines) openTexts(wpath string) error {
	return withKind(ErrConfig, fmt.Errorf("--text-column: this build's engine has no text tower (weights %s); run without --text-column", wpath))
}
