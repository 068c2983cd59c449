// text.go: the text side of a run (Config.TextColumn): each engine's text tower, with the
// tokenizer of the weights' vocabulary, as the batch stage's TextEmbedder.

package embed

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/internal/pipeline/batch"
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

// probeText checks, before any engine is built, that the weights at wpath can embed texts:
// a text tower (of the vision tower's embed_dim) and the tokenizer's vocab.json and
// merges.txt beside them. Its errors are ErrBadWeights (exit 4): these weights cannot do what
// the run asks; other weights (or no --text-column) can.
func probeText(wpath string, vision engine.ModelInfo) (engine.TextInfo, error) {
	bad := func(format string, args ...any) error { return withKind(ErrBadWeights, fmt.Errorf(format, args...)) }
	ti, err := engine.ProbeText(wpath)
	if err != nil {
		return ti, bad("--text-column: weights %s have no usable text tower (%v): give the weights of a whole CLIP model (image and text towers), or run without --text-column", wpath, engineMsg(err))
	}
	if ti.EmbedDim != vision.EmbedDim {
		return ti, bad("--text-column: weights %s: the text tower embeds to %d values, the image tower to %d: the two towers are not one CLIP model", wpath, ti.EmbedDim, vision.EmbedDim)
	}
	tok, err := engine.OpenTokenizer(wpath)
	if err != nil {
		return ti, bad("--text-column: the tokenizer of weights %s: %v; put the model's vocab.json and merges.txt beside the weights (clipd weights fetch downloads them)", wpath, engineMsg(err))
	}
	tok.Close()
	return ti, nil
}

// tokenizerSHA256 identifies the tokenizer OpenTokenizer(wpath) loads, for the run's
// identity: the sha256 of its vocab.json, a NUL byte, and its merges.txt (the folder of the
// weights file, or the weights folder itself).
func tokenizerSHA256(wpath string) (string, error) {
	dir := wpath
	if st, err := os.Stat(wpath); err == nil && !st.IsDir() {
		dir = filepath.Dir(wpath)
	}
	h := sha256.New()
	for i, name := range []string{"vocab.json", "merges.txt"} {
		if i > 0 {
			h.Write([]byte{0})
		}
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return "", withKind(ErrBadWeights, fmt.Errorf("--text-column: the tokenizer of weights %s: %v", wpath, err))
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", withKind(ErrBadWeights, fmt.Errorf("--text-column: the tokenizer of weights %s: %v", wpath, err))
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// openTexts opens the text side of every engine of es (probed by probeText): one tokenizer
// for all, and a textEmbedder per engine. A first text ("") is embedded on each engine, so a
// backend without a text forward, a vocabulary with ids past the tower's, or a tower that
// embeds to NaN fails here, before the output is touched.
func (es *engines) openTexts(wpath string, ti engine.TextInfo) error {
	tok, err := engine.OpenTokenizer(wpath)
	if err != nil {
		return withKind(ErrBadWeights, fmt.Errorf("--text-column: the tokenizer of weights %s: %v", wpath, engineMsg(err)))
	}
	es.close = append(es.close, func() { tok.Close() })
	out := make([]float32, ti.EmbedDim)
	for i, e := range es.list {
		te := &textEmbedder{tower: e, tok: tok, ctx: ti.ContextLength}
		if _, err := te.EmbedTexts([]string{""}, out); err != nil {
			switch {
			case errors.Is(err, engine.ErrUnsupported):
				return withKind(ErrConfig, fmt.Errorf("--text-column: %v; run the text tower on another backend (--backend cpu), or without --text-column", engineMsg(err)))
			case errors.Is(err, engine.ErrInvalidArgument):
				return withKind(ErrBadWeights, fmt.Errorf("--text-column: weights %s: the tokenizer's vocabulary does not fit the text tower (%d ids): %v; use the vocab.json and merges.txt of these weights", wpath, ti.VocabSize, engineMsg(err)))
			}
			return fmt.Errorf("--text-column: weights %s: embedding a test text on engine %d: %w", wpath, i, err)
		}
		if !batch.AllFinite(out) {
			return withKind(ErrBadWeights, fmt.Errorf("--text-column: weights %s: the embedding of an empty text is not finite (NaN or Inf): the text tower is broken; nothing was written", wpath))
		}
		es.texts = append(es.texts, te)
	}
	return nil
}

// engineMsg is an engine error's message without its status name, for a one-line error.
func engineMsg(err error) string {
	var ee *engine.Error
	if errors.As(err, &ee) && ee.Msg != "" {
		return ee.Msg
	}
	return err.Error()
}

// textParams is the parameter count of a text tower (0 for none), for the memory plan: the
// token and position embeddings, the blocks, ln_final and the projection.
func textParams(ti engine.TextInfo) int64 {
	if ti.Width == 0 {
		return 0
	}
	V, C, W, L, E := int64(ti.VocabSize), int64(ti.ContextLength), int64(ti.Width), int64(ti.Layers), int64(ti.EmbedDim)
	const mlpRatio = 4 // CLIP's text towers; the info does not give the MLP width
	M := mlpRatio * W
	block := 2*W + 3*W*W + 3*W + W*W + W + 2*W + M*W + M + W*M + W
	return V*W + C*W + L*block + 2*W + W*E
}
