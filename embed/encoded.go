// encoded.go: the engine's encoded-bytes call (clip_engine_embed_encoded) as the batch stage
// takes it.

package embed

import (
	"errors"

	"github.com/clipd/clipd/cgo/engine"
)

// encodedEngine is an engine whose JPEGs the batch stage hands over undecoded.
type encodedEngine struct{ *engine.Engine }

// EmbedEncoded implements batch.EncodedEmbedder.
func (e encodedEngine) EmbedEncoded(data [][]byte, out []float32, failed []error) error {
	return errors.New("this libclipengine binding has no encoded-bytes call")
}

// checkEncoded fails when the engine cannot take encoded images.
func checkEncoded(e *engine.Engine) error {
	return withKind(ErrConfig, errors.New("--decode gpu: this libclipengine binding has no encoded-bytes call; use --decode cpu"))
}
