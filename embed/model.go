// model.go: the model side of a run: the weights located and hashed (their identity), the
// devices and the decode path checked against the backend, the memory plan made for the
// model's shapes and the backend, and the engines (one per device) opened with the plan's
// batch size.

package embed

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/internal/pipeline/batch"
	"github.com/clipd/clipd/internal/pipeline/plan"
	"github.com/clipd/clipd/weights"
)

// engines are a run's open engines: all alike, one per device (or per Hooks.CPUEngines).
type engines struct {
	list    []*engine.Engine
	devices []int // the device of each, as the run's log and summary name it
	decodes bool  // JPEGs go to the engines' encoded call
	backend engine.Backend
	info    engine.ModelInfo
	// texts are the engines' text towers (Config.TextColumn), one per engine, in list's
	// order; nil when no text is embedded.
	texts []batch.TextEmbedder
	close []func() // closes what texts hold (tokenizers)
}

// Close closes every engine.
func (es *engines) Close() {
	for _, c := range es.close {
		c()
	}
	for _, e := range es.list {
		e.Close()
	}
}

// embedders are the engines as the batch stage takes them: the first one and the others.
func (es *engines) embedders() (batch.Embedder, []batch.Embedder) {
	out := make([]batch.Embedder, len(es.list))
	for i, e := range es.list {
		out[i] = e
		if es.decodes {
			out[i] = encodedEngine{e}
		}
	}
	return out[0], out[1:]
}

// openEngines resolves the backend, the devices, the decode path and the weights, makes the
// plan for them and opens the engines, with the plan's batch size. A device list or a decode
// path the backend cannot serve is an ErrConfig saying why.
func (r *run) openEngines() (*engines, error) {
	cfg := r.cfg
	devices := cfg.Devices
	if len(devices) == 0 {
		devices = []int{cfg.Device}
	}
	bad := func(format string, args ...any) error { return withKind(ErrConfig, fmt.Errorf(format, args...)) }
	// The devices and the decode path first: what the backend cannot serve is refused
	// before the weights are read.
	backend, device, deviceMemory, err := engine.ResolveBackend(cfg.Backend, devices[0])
	switch {
	case err != nil && len(cfg.Devices) > 0:
		return nil, bad("--devices %s: device %d: %v; list the devices nvidia-smi shows", FormatDevices(cfg.Devices), devices[0], err)
	case err != nil:
		return nil, err
	}
	if len(cfg.Devices) > 0 {
		if backend != engine.BackendCUDA {
			return nil, bad("--devices %s: the cpu backend runs on the CPU, not on devices (%s); drop --devices, or run a CUDA build on a machine with those GPUs",
				FormatDevices(cfg.Devices), whyNoCUDA(cfg.Backend, devices[0]))
		}
		for _, d := range cfg.Devices[1:] {
			_, _, mem, err := engine.ResolveBackend(engine.BackendCUDA, d)
			if err != nil {
				return nil, bad("--devices %s: device %d: %v; list the devices nvidia-smi shows", FormatDevices(cfg.Devices), d, err)
			}
			deviceMemory = min(deviceMemory, mem)
		}
	}
	// A CUDA library without nvJPEG would decode inside the engine call on the CPU, one batch
	// after another: slower than the CPU decoders, which overlap the forward.
	nvjpeg := false
	if n, err := engine.DecodeDeviceBytes(0); err == nil && n > 0 {
		nvjpeg = true
	}
	decodes := false
	switch {
	case cfg.Decode == DecodeGPU && backend != engine.BackendCUDA:
		return nil, bad("--decode gpu needs the CUDA backend, which this run does not use (%s): use --decode cpu (or auto)", whyNoCUDA(cfg.Backend, devices[0]))
	case cfg.Decode == DecodeGPU && !nvjpeg:
		return nil, bad("--decode gpu: this libclipengine's CUDA backend was built without nvJPEG, so it cannot decode on the GPU: use --decode cpu (or auto), or rebuild with the CUDA toolkit's nvJPEG")
	case cfg.Decode == DecodeGPU:
		decodes = true
	case cfg.Decode == DecodeAuto:
		decodes = backend == engine.BackendCUDA && nvjpeg && cfg.Preprocess == Exact
	}
	if cfg.Hooks.EngineDecodesOnCPU && cfg.Preprocess == Exact {
		decodes = true
	}
	count := len(devices)
	if backend == engine.BackendCPU && cfg.Hooks.CPUEngines > 1 {
		count = cfg.Hooks.CPUEngines
	}
	wpath, err := weights.Resolve(cfg.Weights, cfg.CacheDir)
	if err != nil {
		return nil, err
	}
	r.weightsPath = wpath
	// The model's shapes from the library's own loader, without building an engine.
	info, err := engine.Probe(wpath)
	if err != nil {
		return nil, fmt.Errorf("weights %s: %w", wpath, err)
	}
	var text engine.TextInfo
	if cfg.TextColumn != "" {
		if text, err = probeText(wpath, info); err != nil {
			return nil, err
		}
		if r.tokenizerSHA256, err = tokenizerSHA256(wpath); err != nil {
			return nil, err
		}
	}
	// The weights' identity from their bytes, before the engine maps them (after the header
	// proved them weights, so a broken file is not read whole first); checked again
	// after, so that the weights used are the weights hashed.
	wfile, err := weights.WeightsFile(wpath)
	if err != nil {
		return nil, err
	}
	if r.weights, err = weights.FileSHA256(wfile, cfg.CacheDir); err != nil {
		return nil, err
	}
	r.log.Info("weights", "file", wfile, "sha256", r.weights.SHA256, "hashed", r.weights.Hashed)
	if rec := r.weights.Recorded; rec != "" && rec != r.weights.SHA256 {
		r.log.Info("the weights file is not the one its recorded sha256 describes (replaced or damaged since it was fetched); the run records the sha256 of its bytes",
			"file", wfile, "sha256", r.weights.SHA256, "recorded", rec)
	}
	r.plan, err = plan.Make(plan.Inputs{
		MemoryBudget:      cfg.Memory,
		EmbedDim:          info.EmbedDim,
		ImageSize:         info.ImageSize,
		WeightsParams:     info.Params() + textParams(text), // the text tower's share only when it runs
		Backend:           backend.String(),
		DeviceMemory:      deviceMemory,
		BatchSize:         cfg.BatchSize,
		ChunkSize:         cfg.ChunkSize,
		Connections:       cfg.Connections,
		Decoders:          cfg.Decoders,
		Engines:           count,
		EngineDecodes:     decodes,
		DecodeDeviceBytes: engine.DecodeDeviceBytes,
	})
	if err != nil {
		return nil, withKind(ErrConfig, fmt.Errorf("memory plan: %v", err))
	}
	es := &engines{decodes: decodes, backend: backend}
	for i := range count {
		d := devices[min(i, len(devices)-1)]
		eng, err := engine.Open(engine.Options{WeightsPath: wpath, Backend: backend, Device: d,
			MaxBatch: r.plan.BatchSize, Threads: cfg.Threads, Precision: cfg.Precision})
		if err != nil {
			es.Close()
			return nil, fmt.Errorf("weights %s: %w", wpath, err)
		}
		es.list = append(es.list, eng)
		es.devices = append(es.devices, d)
	}
	if err := r.weights.Unchanged(); err != nil {
		es.Close()
		return nil, err
	}
	if err := probe(es.list[0], wpath); err != nil {
		es.Close()
		return nil, err
	}
	if decodes {
		// The engines refuse what the split stage refuses (it reads the headers first), and
		// ignore EXIF orientation as the CPU decoders do.
		for _, e := range es.list {
			if err := e.SetDecodeOptions(engine.DecodeOptions{MaxPixels: r.plan.MaxPixels}); err != nil {
				es.Close()
				return nil, err
			}
		}
	}
	if cfg.TextColumn != "" {
		if err := es.openTexts(wpath, text); err != nil {
			es.Close()
			return nil, err
		}
	}
	es.info = es.list[0].Info()
	r.log.Info("engine", "backend", es.list[0].BackendName(), "device", device, "engines", count,
		"decode", decodeName(decodes, backend), "image_size", info.ImageSize, "embed_dim", info.EmbedDim)
	return es, nil
}

// decodeStats are the engines' decode counters, summed.
func (es *engines) decodeStats() engine.DecodeStats {
	var sum engine.DecodeStats
	for _, e := range es.list {
		s, err := e.DecodeStats()
		if err != nil {
			continue
		}
		sum.DeviceDecoded += s.DeviceDecoded
		sum.HardwareDecoded += s.HardwareDecoded
		sum.CPUDecoded += s.CPUDecoded
		sum.Failed += s.Failed
		sum.CPUFallbacks += s.CPUFallbacks
	}
	return sum
}

// whyNoCUDA says why the CUDA backend is not in use.
func whyNoCUDA(asked engine.Backend, device int) string {
	if asked == engine.BackendCPU {
		return "--backend cpu was asked for"
	}
	_, _, _, err := engine.ResolveBackend(engine.BackendCUDA, device)
	if err == nil {
		return "the CUDA backend was not chosen"
	}
	var ee *engine.Error
	if errors.As(err, &ee) && ee.Msg != "" {
		return ee.Msg
	}
	return err.Error()
}

// decodeName is where JPEGs are decoded, as the log and the summary say it.
func decodeName(engineDecodes bool, backend engine.Backend) string {
	switch {
	case !engineDecodes:
		return "cpu"
	case backend == engine.BackendCUDA:
		return "gpu"
	}
	return "engine (cpu)"
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
