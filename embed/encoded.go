// encoded.go: the engine's encoded-bytes call (clip_engine_embed_encoded, through
// engine.EmbedEncoded) as the batch stage takes it.

package embed

import (
	"github.com/clipd/clipd/cgo/engine"
)

// encodedEngine is an engine whose JPEGs the batch stage hands over undecoded.
type encodedEngine struct{ *engine.Engine }

// EmbedEncoded implements batch.EncodedEmbedder: the binding's per-image errors (the
// engine's reason, worded as the CPU decoder words it) go into failed.
func (e encodedEngine) EmbedEncoded(data [][]byte, out []float32, failed []error) error {
	f, err := e.Engine.EmbedEncoded(data, out)
	if err != nil {
		return err
	}
	copy(failed, f)
	return nil
}
