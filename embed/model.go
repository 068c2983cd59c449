// model.go: the model side of a run: the weights located and hashed (their identity), the
// memory plan made for the model's shapes and the backend, and the engine opened with the
// plan's batch size.

package embed

import (
	"bytes"
	"fmt"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/internal/pipeline/batch"
	"github.com/clipd/clipd/internal/pipeline/plan"
	"github.com/clipd/clipd/weights"
)

// openEngine resolves the weights and the backend, makes the plan for them and opens the
// engine once, with the plan's batch size.
func (r *run) openEngine() (*engine.Engine, engine.ModelInfo, error) {
	cfg := r.cfg
	wpath, err := weights.Resolve(cfg.Weights, cfg.CacheDir)
	if err != nil {
		return nil, engine.ModelInfo{}, err
	}
	r.weightsPath = wpath
	// The model's shapes from the library's own loader, without building an engine.
	info, err := engine.Probe(wpath)
	if err != nil {
		return nil, engine.ModelInfo{}, fmt.Errorf("weights %s: %w", wpath, err)
	}
	// The weights' identity from their bytes, before the engine maps them (after the header
	// proved them weights, so a broken file is not read whole first); checked again
	// after, so that the weights used are the weights hashed.
	wfile, err := weights.WeightsFile(wpath)
	if err != nil {
		return nil, engine.ModelInfo{}, err
	}
	if r.weights, err = weights.FileSHA256(wfile, cfg.CacheDir); err != nil {
		return nil, engine.ModelInfo{}, err
	}
	r.log.Info("weights", "file", wfile, "sha256", r.weights.SHA256, "hashed", r.weights.Hashed)
	if rec := r.weights.Recorded; rec != "" && rec != r.weights.SHA256 {
		r.log.Info("the weights file is not the one its recorded sha256 describes (replaced or damaged since it was fetched); the run records the sha256 of its bytes",
			"file", wfile, "sha256", r.weights.SHA256, "recorded", rec)
	}
	backend, device, deviceMemory, err := engine.ResolveBackend(cfg.Backend, cfg.Device)
	if err != nil {
		return nil, engine.ModelInfo{}, err
	}
	r.plan, err = plan.Make(plan.Inputs{
		MemoryBudget:  cfg.Memory,
		EmbedDim:      info.EmbedDim,
		ImageSize:     info.ImageSize,
		WeightsParams: info.Params(),
		Backend:       backend.String(),
		DeviceMemory:  deviceMemory,
		BatchSize:     cfg.BatchSize,
		ChunkSize:     cfg.ChunkSize,
		Connections:   cfg.Connections,
		Decoders:      cfg.Decoders,
	})
	if err != nil {
		return nil, engine.ModelInfo{}, withKind(ErrConfig, fmt.Errorf("memory plan: %v", err))
	}
	eng, err := engine.Open(engine.Options{WeightsPath: wpath, Backend: backend, Device: cfg.Device,
		MaxBatch: r.plan.BatchSize, Threads: cfg.Threads, Precision: cfg.Precision})
	if err != nil {
		return nil, engine.ModelInfo{}, fmt.Errorf("weights %s: %w", wpath, err)
	}
	if err := r.weights.Unchanged(); err != nil {
		eng.Close()
		return nil, engine.ModelInfo{}, err
	}
	if err := probe(eng, wpath); err != nil {
		eng.Close()
		return nil, engine.ModelInfo{}, err
	}
	r.log.Info("engine", "backend", eng.BackendName(), "device", device, "image_size", info.ImageSize, "embed_dim", info.EmbedDim)
	return eng, eng.Info(), nil
}

// probe embeds one plain mid-gray image, before the output folder is created: weights that
// embed even that to NaN or Inf (a NaN among them, or values that overflow) are refused
// here, with nothing written.
func probe(eng *engine.Engine, wpath string) error {
	info := eng.Info()
	s := info.ImageSize
	gray := bytes.Repeat([]byte{128}, s*s*3)
	out := make([]float32, info.EmbedDim)
	if err := eng.EmbedImages([]engine.Image{{RGB: gray, Width: s, Height: s}}, out); err != nil {
		return fmt.Errorf("weights %s: embedding a test image: %w", wpath, err)
	}
	if !batch.AllFinite(out) {
		return withKind(ErrBadWeights, fmt.Errorf("weights %s: the embedding of a plain gray test image is not finite (NaN or Inf): the weights are broken; nothing was written; check --weights", wpath))
	}
	return nil
}
