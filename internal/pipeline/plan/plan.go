// plan.go: the memory plan: a model of clipd's peak memory as a sum over the pipeline's
// buffers, the ideal sizes of those buffers, and Make, which shrinks them, largest consumer
// first, until the modelled peak fits the budget.
//
// The pipeline's variable memory lives in two byte budgets (package budget) that the stages
// acquire from before they allocate: BodyBudget (downloads in flight, queued bodies, local
// files and tar members) and DecodedBudget (each decode's modelled footprint, and decoded
// images until the engine is done with them). A pool holds one worst-case item (a
// MaxBodyBytes body, a MaxPixels image with its intermediate) plus typical items for every
// other slot, so the counts (connections, queue depths, workers) multiply typical sizes
// only; a run of large items waits for memory instead of exceeding it. What the budgets do
// not hold (the engine, the runtimes, connection buffers, chunk rows) is modelled as fixed.

package plan

import (
	"fmt"
	"runtime"
	"strings"
)

// Inputs are what the plan is made from. Zero fields are chosen or estimated.
type Inputs struct {
	MemoryBudget int64 // bytes the run may use; 0 = DefaultFraction of Available, at most MaxDefaultBudget
	EmbedDim     int   // floats per embedding; 0 = 512 (B/32)
	ImageSize    int   // the model's input side; 0 = 224 (B/32)
	Backend      string
	// Backend is the engine's resolved backend: "cuda..." plans for a GPU, anything else
	// (including engine.BackendName's "cpu 2 threads fp32") for the CPU. "auto" or "" plans
	// for CUDA only when DeviceMemory > 0.
	DeviceMemory int64 // bytes of GPU memory (CUDA); 0 = unknown, the batch is not limited by it
	BatchSize    int   // images per engine call; 0 = choose
	ChunkSize    int   // rows per chunk file; 0 = choose
	Connections  int   // concurrent downloads; 0 = choose
	Decoders     int   // decoding goroutines; 0 = choose
	Cores        int   // CPU cores; 0 = runtime.NumCPU()

	// Additions beyond the shared contract; zero values keep the behaviour it describes.
	Available     int64 // available memory; 0 = measure it with Available()
	WeightsParams int64 // parameters in the weights (weights.Header.Params()); 0 = ViT-B/32's 88M
	// Engines is the number of engines (one per device, --devices); 0 = 1. Each holds its
	// own weights and batch; DeviceMemory is then the smallest device's.
	Engines int
	// EngineDecodes: the engine decodes JPEGs itself (--decode gpu): on CUDA each engine
	// keeps nvJPEG's state and, per batch image, the encoded bytes and a decoded image for
	// the batch being decoded while the previous one runs, in device memory.
	EngineDecodes bool
	// DecodeDeviceBytes is the device memory the engine's JPEG decoding adds for batches of
	// the given size (engine.DecodeDeviceBytes); nil = an estimate (see decodeDeviceBytes).
	DecodeDeviceBytes func(batch int) (int64, error)
}

// Plan is the pipeline's sizing. Every count is at least 1.
type Plan struct {
	MemoryBudget, Available int64 // the budget planned for; the available memory it was measured against (0 = unknown)
	BatchSize               int   // images per engine call (also the engine's max_batch)
	ChunkSize               int   // rows (embedded + failed items) per chunk file
	Connections             int   // concurrent downloads (fetch.Options.Concurrency)
	FetchQueue              int   // downloaded bodies waiting for a decoder (fetch.Options.OutputBuffer)
	DecodeWorkers           int   // decoding goroutines
	DecodeQueue             int   // decoded images waiting to be batched
	MaxBodyBytes            int64 // largest download (fetch.Options.MaxBodyBytes)
	MaxPixels               int64 // largest image decoded (decode.Options.MaxPixels)
	// DecodedBudget bounds the bytes decoding holds at once: the footprints of the decodes
	// in progress (output pixels plus the decoder's intermediate, decode.Footprint) and the
	// decoded images waiting in the queue and the two batches (the one the engine runs and
	// the one being filled). It holds one MaxPixels image at DecodeBytesPerPixel plus typical
	// images for the other workers and the queue; an image whose decode needs more than all
	// of it fails "too large for --memory".
	DecodedBudget int64
	// BodyBudget bounds the bytes of encoded bodies alive at once: downloads being read
	// (each takes its Content-Length, or MaxBodyBytes when unknown), bodies queued for the
	// decoders and those being decoded, local files and tar members. It holds one
	// MaxBodyBytes body plus typical bodies for every connection, queue slot and worker.
	BodyBudget int64
	// GoMemoryLimit is the Go runtime's soft memory limit (debug.SetMemoryLimit) for the
	// run: the budget less what the engine holds outside the Go heap, so the collector
	// returns the budgets' freed bytes before the heap outgrows them.
	GoMemoryLimit int64

	// Additions beyond the shared contract.
	Source        string // where Available came from (see Available)
	Backend       string // "cpu" or "cuda": what the plan was made for
	Engines       int    // engines planned for (one per device)
	EngineDecodes bool   // the engine decodes JPEGs (device memory counted for nvJPEG on CUDA)
	DeviceBytes   int64  // CUDA: modelled device memory per engine (weights, reserve, nvJPEG, batch); 0 on the CPU
	EngineBytes   int64  // host memory modelled for the engine and the runtimes (weights, scratch, Go, CUDA)
	Peak          int64  // the modelled peak RSS of this plan; never above MemoryBudget
}

// Defaults and model constants. The typical sizes are Open Images' mirror: JPEGs of about
// 300 KB, at most 1024 px on the long side (1024x768 decodes to 2.4 MB of RGB8).
const (
	DefaultFraction  = 0.5      // of Available, when no budget is given
	MaxDefaultBudget = 32 << 30 // cap on the default budget (the ideal plan needs far less)

	TypicalBody    = 300 << 10      // bytes of a typical download
	TypicalDecoded = 1024 * 768 * 3 // bytes of a typical decoded image
	// DecodeBytesPerPixel is what the plan gives one decode per pixel: 3 for the RGB8 output
	// plus 4 for the common worst intermediate (Go decodes 8-bit RGB/RGBA PNGs to 4 B/px; a
	// progressive 4:2:0 JPEG keeps 3 B/px of coefficients). 16-bit PNGs (8 B/px) and
	// lossless WebP need more and wait for it.
	DecodeBytesPerPixel = 7
	typicalFootprint    = 1024 * 768 * DecodeBytesPerPixel // a typical image while it decodes
	connOverhead        = 32 << 10                         // fasthttp read/write buffers and state per connection
	rowOverhead         = 256                              // URL, image ID and bookkeeping per chunk row, beyond the embedding
	// goRuntime is the process's baseline, measured (RssFile and RssAnon of clipd with the
	// tiny test model, Debian 12 x86-64): idle with the engine loaded, 57 MiB of file-backed
	// pages (the binary, OpenBLAS, libhdf5, libjpeg-turbo) and 42 MiB anonymous (the Go
	// runtime and its stacks, OpenBLAS's buffers, libhdf5's caches); 67 MiB file-backed once
	// every stage has run. Rounded up to 72 + 56 MiB.
	goRuntime    = goFiles + goHeapBase
	goFiles      = 72 << 20   // file-backed: not Go memory, outside its soft limit
	goHeapBase   = 56 << 20   // the runtime's and the C libraries' own anonymous memory
	cudaRuntime  = 512 << 20  // host memory of a CUDA context, cuBLASLt and pinned staging
	cudaReserve  = 1 << 30    // device memory kept free for the context and GEMM workspaces
	cudaPerImage = 6 << 20    // device bytes per batch image at fp16 (see batchForDevice)
	b32Params    = 88_000_000 // ViT-B/32 vision tower parameters (87.8M)
	// nvjpegFixed: device bytes of nvJPEG's handles, states and buffers per engine, when the
	// library does not say (decodeDeviceBytes).
	nvjpegFixed = 256 << 20

	PillowMaxPixels = 89_478_485 // Pillow's Image.MAX_IMAGE_PIXELS, the default MaxPixels
	minMaxPixels    = 24_000_000 // a 6000x4000 camera original still decodes on the smallest plan
	DefaultMaxBody  = 32 << 20   // fetch's default MaxBodyBytes
	minMaxBody      = 16 << 20   // a 24 MP original JPEG is 8-15 MB

	idealConnections = 256 // fetch's default: enough to hide internet latency at ~1000 img/s
	idealFetchQueue  = 256
	idealChunk       = 10_000 // 20 MB of float32 512-d rows in memory
	idealBatchCPU    = 32
	idealBatchCUDA   = 256
	minConnections   = 8
	minFetchQueue    = 8
	minChunk         = 500
)

// Make sizes the pipeline for in. It fails, saying what to change, when the budget cannot
// hold the engine and the smallest pipeline, or the values fixed in in.
func Make(in Inputs) (Plan, error) {
	in = withDefaults(in)
	p := Plan{Available: in.Available, Backend: "cpu", Engines: in.Engines, EngineDecodes: in.EngineDecodes}
	if in.Available > 0 {
		p.Source = "given"
	} else if avail, src, err := Available(); err == nil {
		p.Available, p.Source = avail, src
	} else if in.MemoryBudget <= 0 {
		return Plan{}, err
	}
	cuda := isCUDA(in)
	if cuda {
		p.Backend = "cuda"
	}
	p.MemoryBudget = in.MemoryBudget
	if p.MemoryBudget <= 0 {
		p.MemoryBudget = min(int64(float64(p.Available)*DefaultFraction), MaxDefaultBudget)
	}

	m := model{cuda: cuda, in: in}
	m.fixed = goRuntime + int64(in.Engines)*in.WeightsParams*4 // fp32 copies on the CPU backend, one per engine
	if cuda {
		// fp16 weights go to the device; the host keeps (at most) the read file's pages, and
		// a CUDA context per engine.
		m.fixed = goRuntime + int64(in.Engines)*cudaRuntime + in.WeightsParams*2
	}
	c, err := m.ideal()
	if err != nil {
		return Plan{}, err
	}
	for m.peak(c) > p.MemoryBudget {
		if !m.shrink(&c) {
			return Plan{}, m.tooSmall(p.MemoryBudget, c)
		}
	}
	p.BatchSize, p.ChunkSize, p.Connections = c.batch, c.chunk, c.conns
	p.FetchQueue, p.DecodeWorkers, p.DecodeQueue = c.fetchQ, c.workers, c.decodeQ
	p.MaxBodyBytes, p.MaxPixels = c.maxBody, c.maxPixels
	p.DecodedBudget = m.decodedPool(c)
	p.BodyBudget = m.bodyPool(c)
	p.EngineBytes = m.fixed + int64(in.Engines*c.batch)*m.enginePerImage()
	if cuda {
		p.DeviceBytes = m.deviceBytes(c.batch)
	}
	p.Peak = m.peak(c)
	// The Go heap holds the pools, connection buffers and chunk rows; the engine's weights
	// and scratch are C memory (on CUDA its pinned staging), and so is not the heap's to use.
	p.GoMemoryLimit = p.MemoryBudget - p.EngineBytes + goHeapBase
	return p, nil
}

func withDefaults(in Inputs) Inputs {
	if in.EmbedDim <= 0 {
		in.EmbedDim = 512
	}
	if in.ImageSize <= 0 {
		in.ImageSize = 224
	}
	if in.Cores <= 0 {
		in.Cores = runtime.NumCPU()
	}
	if in.WeightsParams <= 0 {
		in.WeightsParams = b32Params
	}
	if in.Engines <= 0 {
		in.Engines = 1
	}
	return in
}

func isCUDA(in Inputs) bool {
	b := strings.ToLower(strings.TrimSpace(in.Backend))
	if b == "" || b == "auto" {
		return in.DeviceMemory > 0
	}
	return strings.HasPrefix(b, "cuda")
}

// sizes is one candidate configuration.
type sizes struct {
	batch, chunk, conns, fetchQ, workers, decodeQ int
	maxBody, maxPixels                            int64
}

type model struct {
	cuda  bool
	in    Inputs
	fixed int64
}

// enginePerImage is the host memory one batch image costs inside the engine. CPU: the
// float32 input tensor (3*S*S*4 bytes) plus the forward pass's scratch, which for B/32's
// shapes (50 tokens x 768, the 3072-wide MLP) is about 1.5x the input: 1.5 MB per image in
// all at S=224. CUDA: the RGB8 image's pinned staging copy, a typical decoded image.
func (m model) enginePerImage() int64 {
	if m.cuda {
		return TypicalDecoded
	}
	s := int64(m.in.ImageSize)
	return 3 * s * s * 4 * 5 / 2
}

// peak is the modelled peak RSS of c:
//
//	fixed (engine weights, Go and CUDA runtimes)
//	+ connections x connection buffers                    fasthttp's per-connection state
//	+ body pool                                           see bodyPool
//	+ decoded pool                                        see decodedPool
//	+ engines x batch x engine memory per image           each engine's input and scratch
//	+ 2 x chunk rows x row bytes                          the chunk being filled and the one being written
func (m model) peak(c sizes) int64 {
	row := int64(m.in.EmbedDim)*4 + rowOverhead
	return m.fixed +
		int64(c.conns)*connOverhead +
		m.bodyPool(c) +
		m.decodedPool(c) +
		int64(c.batch)*int64(m.in.Engines)*m.enginePerImage() +
		2*int64(c.chunk)*row
}

// bodyPool: one MaxBodyBytes body, plus a typical body for every connection, fetch queue
// slot (the fetcher's output and the stage's, FetchQueue each) and decode worker, and, when
// the engine decodes JPEGs, the batches of JPEG bodies waiting for and inside its calls.
func (m model) bodyPool(c sizes) int64 {
	n := int64(c.conns+2*c.fetchQ+c.workers) * TypicalBody
	if m.in.EngineDecodes {
		// JPEG bodies wait undecoded in the split stage's queue, the batch being filled and
		// each engine's batch, until the engine call returns.
		n += int64((m.in.Engines+2)*c.batch) * TypicalBody
	}
	return c.maxBody + 1 + n
}

// decodedPool: one MaxPixels image decoding at DecodeBytesPerPixel, a typical decode for
// every other worker, and typical decoded images for the queue and the batches (one in each
// engine and the one being filled).
func (m model) decodedPool(c sizes) int64 {
	return c.maxPixels*DecodeBytesPerPixel + int64(c.workers-1)*typicalFootprint +
		int64(c.decodeQ+(m.in.Engines+1)*c.batch)*TypicalDecoded
}

// ideal is the plan with memory to spare: user-fixed values, else the defaults.
func (m model) ideal() (sizes, error) {
	in := m.in
	c := sizes{
		batch: idealBatchCPU, chunk: idealChunk, conns: idealConnections, fetchQ: idealFetchQueue,
		maxBody: DefaultMaxBody, maxPixels: PillowMaxPixels,
	}
	if m.cuda {
		c.batch = idealBatchCUDA
		if in.DeviceMemory > 0 {
			b, err := m.batchForDevice()
			if err != nil {
				return c, err
			}
			c.batch = min(c.batch, b)
		}
	}
	c.workers = m.idealWorkers()
	if in.BatchSize > 0 {
		c.batch = in.BatchSize
	}
	if in.ChunkSize > 0 {
		c.chunk = in.ChunkSize
	}
	if in.Connections > 0 {
		c.conns = in.Connections
	}
	if in.Decoders > 0 {
		c.workers = in.Decoders
	}
	// One whole batch can wait decoded while the engine runs the previous one.
	c.decodeQ = max(c.batch, 2*c.workers)
	return c, nil
}

// idealWorkers: on the CPU backend the forward pass (8.8 GFLOP per B/32 image) costs 50-100x
// an exact decode of a 1024x768 JPEG, so the engine takes every core and a few decoders keep
// it fed: cores/8, at least 2 so one decode overlaps another's wait (a blocked goroutine
// costs no CPU). On CUDA decoding is the bottleneck: every core but one (left for the
// network and feeding the GPU), at most 64.
func (m model) idealWorkers() int {
	cores := m.in.Cores
	if m.cuda {
		return min(max(cores-1, 1), 64)
	}
	return max(cores/8, 2)
}

// batchForDevice is the largest batch (a multiple of 8, at most idealBatchCUDA) whose
// activations fit the GPU beside the fp16 weights and cudaReserve. Per image we count
// cudaPerImage = 6 MB: B/32 at fp16 keeps ~0.8 MB of activations per image live (50 tokens
// x ~8000 values x 2 bytes across QKV, attention and the MLP), plus the raw RGB8 upload (2.4
// MB typical) and its 224x224 preprocessed copy, with 2x slack for allocator rounding. When
// the engine decodes JPEGs, its decode buffers are added (see decodeDeviceBytes).
func (m model) batchForDevice() (int, error) {
	b := int((m.in.DeviceMemory - m.deviceFixed()) / cudaPerImage)
	if b >= 8 {
		b -= b % 8
	}
	b = min(b, idealBatchCUDA)
	for b >= 1 && m.deviceBytes(b) > m.in.DeviceMemory {
		if b > 8 {
			b -= 8
		} else {
			b--
		}
	}
	if b < 1 {
		what := fmt.Sprintf("fp16 weights %s + %s for the CUDA context", FormatBytes(m.in.WeightsParams*2), FormatBytes(cudaReserve))
		fix := "use another GPU or --backend cpu"
		if d := m.decodeDeviceBytes(1); d > 0 {
			what += fmt.Sprintf(" + %s for decoding JPEGs on the device", FormatBytes(d))
			fix = "use --decode cpu, another GPU or --backend cpu"
		}
		return 0, fmt.Errorf("the GPU has %s of memory; the engine needs about %s (%s) plus %s per image: %s",
			FormatBytes(m.in.DeviceMemory), FormatBytes(m.deviceBytes(1)), what, FormatBytes(cudaPerImage), fix)
	}
	return b, nil
}

// deviceFixed is the device memory an engine needs besides its batch and its JPEG decoding.
func (m model) deviceFixed() int64 { return cudaReserve + m.in.WeightsParams*2 }

// deviceBytes is the device memory modelled for an engine running batches of b.
func (m model) deviceBytes(b int) int64 {
	return m.deviceFixed() + int64(b)*cudaPerImage + m.decodeDeviceBytes(b)
}

// decodeDeviceBytes is the device memory of the engine's JPEG decoding for batches of b: what
// the library reports (Inputs.DecodeDeviceBytes) when it can, else an estimate: nvjpegFixed
// for nvJPEG's handles and buffers, and per image its encoded bytes twice (the batch being
// decoded and the one whose decode overlaps the forward) and one more decoded image.
func (m model) decodeDeviceBytes(b int) int64 {
	switch {
	case !m.in.EngineDecodes:
		return 0
	case m.in.DecodeDeviceBytes != nil:
		if n, err := m.in.DecodeDeviceBytes(b); err == nil {
			return n
		}
	}
	return nvjpegFixed + int64(b)*(2*TypicalBody+TypicalDecoded)
}

// floors are the smallest values shrink goes to; values fixed by the user do not shrink.
func (m model) floors() sizes {
	f := sizes{batch: 1, chunk: minChunk, conns: minConnections, fetchQ: minFetchQueue, workers: 1, decodeQ: 1,
		maxBody: minMaxBody, maxPixels: minMaxPixels}
	if m.in.BatchSize > 0 {
		f.batch = m.in.BatchSize
	}
	if m.in.ChunkSize > 0 {
		f.chunk = m.in.ChunkSize
	}
	if m.in.Connections > 0 {
		f.conns = m.in.Connections
	}
	if m.in.Decoders > 0 {
		f.workers = m.in.Decoders
	}
	return f
}

// shrink takes one step down: it halves (MaxPixels: divides by 1.5) whichever shrinkable
// part of the model costs the most memory now, ties going to the earlier in the list below.
// The sequence of steps does not depend on the budget, so Make, which stops at the first
// plan that fits, gives every size a value that never falls as the budget grows.
// It reports false when nothing can shrink any more.
func (m model) shrink(c *sizes) bool {
	f := m.floors()
	row := int64(m.in.EmbedDim)*4 + rowOverhead
	type part struct {
		cost int64
		can  bool
		step func()
	}
	parts := []part{
		{c.maxPixels * DecodeBytesPerPixel, c.maxPixels > f.maxPixels, func() { c.maxPixels = max(c.maxPixels*2/3, f.maxPixels) }},
		{c.maxBody, c.maxBody > f.maxBody, func() { c.maxBody = max(c.maxBody/2, f.maxBody) }},
		{int64(c.conns) * (TypicalBody + connOverhead), c.conns > f.conns, func() { c.conns = max(c.conns/2, f.conns) }},
		{2 * int64(c.fetchQ) * TypicalBody, c.fetchQ > f.fetchQ, func() { c.fetchQ = max(c.fetchQ/2, f.fetchQ) }},
		{2 * int64(c.chunk) * row, c.chunk > f.chunk, func() { c.chunk = max(c.chunk/2, f.chunk) }},
		{int64(c.decodeQ) * TypicalDecoded, c.decodeQ > f.decodeQ, func() { c.decodeQ = max(c.decodeQ/2, f.decodeQ) }},
		{int64(c.batch) * (int64(m.in.Engines+1)*TypicalDecoded + int64(m.in.Engines)*m.enginePerImage()), c.batch > f.batch, func() { c.batch = max(c.batch/2, f.batch) }},
		{int64(c.workers) * (typicalFootprint + TypicalBody), c.workers > f.workers, func() { c.workers = max(c.workers/2, f.workers) }},
	}
	best := -1
	for i, p := range parts {
		if p.can && (best < 0 || p.cost > parts[best].cost) {
			best = i
		}
	}
	if best < 0 {
		return false
	}
	parts[best].step()
	return true
}

// tooSmall explains a budget that cannot hold the smallest plan c.
func (m model) tooSmall(budget int64, c sizes) error {
	need := m.peak(c)
	// Round the advice up to the next 100 MB so it reads well and leaves a little margin.
	const step = 100 << 20
	advice := (need + step) / step * step
	what := fmt.Sprintf("the engine alone needs ~%s (weights %s + runtime %s)", FormatBytes(m.fixed), FormatBytes(m.fixed-m.runtimeBytes()), FormatBytes(m.runtimeBytes()))
	var fixed []string
	if m.in.BatchSize > 0 {
		fixed = append(fixed, fmt.Sprintf("--batch-size %d", m.in.BatchSize))
	}
	if m.in.ChunkSize > 0 {
		fixed = append(fixed, fmt.Sprintf("--chunk-size %d", m.in.ChunkSize))
	}
	if m.in.Connections > 0 {
		fixed = append(fixed, fmt.Sprintf("--connections %d", m.in.Connections))
	}
	if m.in.Decoders > 0 {
		fixed = append(fixed, fmt.Sprintf("--decoders %d", m.in.Decoders))
	}
	msg := fmt.Sprintf("memory budget %s is too small: %s and the smallest pipeline", FormatBytes(budget), what)
	if len(fixed) > 0 {
		msg += " with " + strings.Join(fixed, ", ")
	}
	msg += fmt.Sprintf(" ~%s more; use --memory %dMiB or more", FormatBytes(need-m.fixed), advice/(1<<20))
	if len(fixed) > 0 {
		msg += ", or lower " + strings.Join(fixed, " / ")
	}
	return fmt.Errorf("%s", msg)
}

func (m model) runtimeBytes() int64 {
	if m.cuda {
		return goRuntime + cudaRuntime
	}
	return goRuntime
}

// String is the plan in a few lines, for the start of a run.
func (p Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "memory plan: budget %s", FormatBytes(p.MemoryBudget))
	switch {
	case p.Available <= 0:
		b.WriteString(" (available memory unknown)")
	case p.MemoryBudget > p.Available:
		fmt.Fprintf(&b, " (MORE than the %s available, %s: the run may be killed)", FormatBytes(p.Available), p.Source)
	default:
		fmt.Fprintf(&b, " of %s available (%s)", FormatBytes(p.Available), p.Source)
	}
	fmt.Fprintf(&b, ", modelled peak %s\n", FormatBytes(p.Peak))
	fmt.Fprintf(&b, "  engine  %s, batch %d, ~%s with weights and runtime", p.Backend, p.BatchSize, FormatBytes(p.EngineBytes))
	if p.Engines > 1 {
		fmt.Fprintf(&b, ", %d engines", p.Engines)
	}
	if p.DeviceBytes > 0 {
		fmt.Fprintf(&b, ", ~%s of device memory each", FormatBytes(p.DeviceBytes))
	}
	if p.EngineDecodes {
		b.WriteString(", JPEGs decoded by the engine")
		if p.Backend == "cuda" {
			b.WriteString(" (nvJPEG)")
		}
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "  fetch   %d connections, %d bodies queued, bodies up to %s, all bodies within %s\n", p.Connections, p.FetchQueue, FormatBytes(p.MaxBodyBytes), FormatBytes(p.BodyBudget))
	fmt.Fprintf(&b, "  decode  workers %d, %d images queued, images up to %.1f MP, decoding and decoded images within %s\n",
		p.DecodeWorkers, p.DecodeQueue, float64(p.MaxPixels)/1e6, FormatBytes(p.DecodedBudget))
	fmt.Fprintf(&b, "  output  chunks of %d rows", p.ChunkSize)
	return b.String()
}
