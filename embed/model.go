// model.go: the model side of a run: the weights located, the memory plan made for the
// model's shapes and the backend, and the engine opened with the plan's batch size.

package embed

import (
	"fmt"
	"math"
	"strings"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/internal/pipeline/plan"
	"github.com/clipd/clipd/weights"
)

// openEngine resolves the weights, makes the plan and opens the engine.
func (r *run) openEngine() (*engine.Engine, engine.ModelInfo, error) {
	cfg := r.cfg
	wpath, err := weights.Resolve(cfg.Weights, cfg.CacheDir)
	if err != nil {
		return nil, engine.ModelInfo{}, err
	}
	r.weightsPath = wpath
	wfile, err := weights.WeightsFile(wpath)
	if err != nil {
		return nil, engine.ModelInfo{}, err
	}
	dims, err := modelDims(wfile)
	if err != nil {
		return nil, engine.ModelInfo{}, err
	}
	in := plan.Inputs{
		MemoryBudget:  cfg.Memory,
		EmbedDim:      dims.embedDim,
		ImageSize:     dims.imageSize,
		WeightsParams: dims.params,
		Backend:       backendName(cfg.Backend),
		BatchSize:     cfg.BatchSize,
		ChunkSize:     cfg.ChunkSize,
		Connections:   cfg.Connections,
		Decoders:      cfg.Decoders,
	}
	if r.plan, err = plan.Make(in); err != nil {
		return nil, engine.ModelInfo{}, withKind(ErrConfig, fmt.Errorf("memory plan: %v", err))
	}
	open := func(b engine.Backend) (*engine.Engine, error) {
		e, err := engine.Open(engine.Options{WeightsPath: wpath, Backend: b, Device: cfg.Device, MaxBatch: r.plan.BatchSize, Threads: cfg.Threads, Precision: cfg.Precision})
		if err != nil {
			return nil, fmt.Errorf("weights %s: %w", wpath, err)
		}
		return e, nil
	}
	eng, err := open(cfg.Backend)
	if err != nil {
		return nil, engine.ModelInfo{}, err
	}
	if cfg.Backend == engine.BackendAuto && strings.HasPrefix(eng.BackendName(), "cuda") {
		in.Backend = eng.BackendName()
		eng.Close()
		if r.plan, err = plan.Make(in); err != nil {
			return nil, engine.ModelInfo{}, withKind(ErrConfig, fmt.Errorf("memory plan: %v", err))
		}
		if eng, err = open(engine.BackendCUDA); err != nil {
			return nil, engine.ModelInfo{}, err
		}
	}
	info := eng.Info()
	r.log.slog.Info("engine", "backend", eng.BackendName(), "image_size", info.ImageSize, "embed_dim", info.EmbedDim)
	return eng, info, nil
}

func backendName(b engine.Backend) string {
	switch b {
	case engine.BackendCPU:
		return "cpu"
	case engine.BackendCUDA:
		return "cuda"
	}
	return "auto"
}

type modelShape struct {
	embedDim, imageSize int
	params              int64
}

// modelDims reads the embedding size and input size from the weights' header (so the plan
// can be made before the engine, which needs the plan's batch size, is created).
func modelDims(file string) (modelShape, error) {
	h, err := weights.ReadHeader(file)
	if err != nil {
		return modelShape{}, err
	}
	d := modelShape{embedDim: 512, imageSize: 224, params: h.Params()}
	var patch, positions int64
	for _, t := range h.Tensors {
		switch {
		case strings.HasSuffix(t.Name, "visual.proj") && len(t.Shape) == 2:
			d.embedDim = int(t.Shape[1])
		case strings.HasSuffix(t.Name, "visual_projection.weight") && len(t.Shape) == 2:
			d.embedDim = int(t.Shape[0])
		case (strings.HasSuffix(t.Name, "visual.conv1.weight") || strings.HasSuffix(t.Name, "embeddings.patch_embedding.weight")) && len(t.Shape) == 4:
			patch = t.Shape[3]
		case (strings.HasSuffix(t.Name, "visual.positional_embedding") || strings.HasSuffix(t.Name, "embeddings.position_embedding.weight")) && len(t.Shape) == 2:
			positions = t.Shape[0]
		}
	}
	if patch > 0 && positions > 1 {
		if side := int64(math.Round(math.Sqrt(float64(positions - 1)))); side*side == positions-1 {
			d.imageSize = int(side * patch)
		}
	}
	return d, nil
}
