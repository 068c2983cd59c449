// events.go: what a run tells its caller: Events (callbacks while it runs), Progress (a
// snapshot of the counters) and Summary (the closing report, also what `clipd embed --json`
// writes).

package embed

import (
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Events are the run's callbacks; nil ones are skipped. They are called from the run's
// goroutines, one at a time, and must return quickly.
type Events struct {
	// Started is called once the model, the memory plan and the output are ready, before the
	// first row is read.
	Started func(Started)
	// Progress is called every Config.ProgressEvery until the run ends.
	Progress func(Progress)
	// Log receives the run's log lines, with key-value pairs as slog takes them.
	Log func(level slog.Level, msg string, args ...any)
}

// Started describes the run about to start.
type Started struct {
	Backend         string // the engine, e.g. "cpu 2 threads fp32" or "cuda NVIDIA H200 fp16"
	Plan            string // the memory plan, several lines
	ImageSize       int
	EmbedDim        int
	ResumedRows     int64 // already in the output from an earlier run of this Config
	ResumedFailures int64
}

// Progress is a snapshot of a running run.
type Progress struct {
	Elapsed         time.Duration
	Rows, Failures  int64 // this run
	ResumedRows     int64 // done by earlier runs of this Config
	ResumedFailures int64
	Total           int64 // rows the run will end with in all (done or resumed); 0 = unknown
	TotalExact      bool  // Total is known, not estimated from the share of the input read
	Bytes           int64 // encoded image bytes decoded by this run
	FailureReasons  []ReasonCount
	FetchesInFlight int64
}

// Done is every row accounted for so far, resumed ones included.
func (p Progress) Done() int64 { return p.Rows + p.Failures + p.ResumedRows + p.ResumedFailures }

// ImagesPerSecond is this run's embedding rate.
func (p Progress) ImagesPerSecond() float64 {
	return float64(p.Rows) / max(p.Elapsed.Seconds(), 1e-9)
}

// ETA is the time left at this run's pace, 0 when unknown.
func (p Progress) ETA() time.Duration {
	n := p.Rows + p.Failures
	if p.Total <= 0 || n == 0 || p.Done() >= p.Total {
		return 0
	}
	per := p.Elapsed.Seconds() / float64(n)
	return time.Duration(per * float64(p.Total-p.Done()) * float64(time.Second)).Round(time.Second)
}

// ReasonCount is how many rows failed for one kind of reason.
type ReasonCount struct {
	Reason string `json:"reason"`
	Count  int64  `json:"count"`
}

// Summary is the run's closing report. Its JSON form is the --json statistics file.
type Summary struct {
	Output          string        `json:"output,omitempty"`  // the final file; empty when the run did not finish
	Dir             string        `json:"dir"`               // the output folder (Config.OutputDir; s3://... for an s3:// output)
	Staging         string        `json:"staging,omitempty"` // an s3:// output's local staging folder (Config.StagingDir)
	Input           string        `json:"input"`
	Shard           string        `json:"shard"`
	Completed       bool          `json:"completed"`
	AlreadyComplete bool          `json:"already_complete,omitempty"` // Output was complete before this run: nothing was done
	Rows            int64         `json:"rows"`                       // embedded by this run
	Failures        int64         `json:"failures"`                   // failed in this run
	ResumedRows     int64         `json:"resumed_rows"`
	ResumedFailures int64         `json:"resumed_failures"`
	FailureReasons  []ReasonCount `json:"failure_reasons"`
	ElapsedSeconds  float64       `json:"elapsed_s"`
	ImagesPerSecond float64       `json:"images_per_s"`
	MBytes          float64       `json:"mbytes"` // encoded image bytes decoded
	MBPerSecond     float64       `json:"mb_per_s"`
	Stages          StageSummary  `json:"stages"`
	Warning         string        `json:"warning,omitempty"` // e.g. more than Config.WarnFailureRate of the rows failed
	Text            *TextSummary  `json:"text,omitempty"`    // the texts embedded (Config.TextColumn); nil without
	Plan            string        `json:"plan,omitempty"`    // the memory plan the run used
}

// FailureRate is the share of the rows (this run's and resumed ones) that failed.
func (s Summary) FailureRate() float64 {
	failed := s.Failures + s.ResumedFailures
	all := failed + s.Rows + s.ResumedRows
	if all == 0 {
		return 0
	}
	return float64(failed) / float64(all)
}

// StageSummary shows where the time went. Busy times are summed over a stage's workers; the
// engine's over its engines (one goroutine each), so EngineBusy / ElapsedSeconds / the number
// of Engines is how much of the run the engines worked (near 1: they are the bottleneck; low:
// they waited for downloads or decoding).
//
// When the engine decodes JPEGs (Decode "gpu", or "engine (cpu)" in tests), their decoding
// happens inside the engine call: its time is in EngineBusy (EngineDecodeBusy is the part spent
// in the encoded calls, decode and forward together, which the engine does not split), and
// DecodeBusy counts only the CPU decoders' work on the other formats. JPEGHeaderBusy is the
// split stage reading JPEG headers (size, pixel limit) on the CPU. The engine's counters say
// where it decoded them (EngineDeviceDecoded, of which EngineHardwareDecoded on the hardware
// JPEG engine; EngineCPUDecoded by its CPU decoder, of which EngineCPUFallbacks were sent
// there by the CUDA backend). EngineRefused are JPEGs the engine failed that the batch stage
// retried on the CPU decoder (embedded if it decodes them, else failed with its reason); that
// time, EngineRefusedBusy, is inside EngineBusy too.
type StageSummary struct {
	FetchOK          int64         `json:"fetch_ok"`
	FetchFailed      int64         `json:"fetch_failed"`   // judged failures (http errors, timeouts, ...)
	FetchCanceled    int64         `json:"fetch_canceled"` // stopped by an interruption: left for the next run
	FetchRetries     int64         `json:"fetch_retries"`
	FetchRetryWhy    []ReasonCount `json:"fetch_retry_reasons"`     // retries by the reason of the retried attempt
	FetchStaleConns  int64         `json:"fetch_stale_connections"` // requests sent again because a pooled keep-alive connection was found closed (not retries)
	FetchAvgInFlight float64       `json:"fetch_avg_in_flight"`
	Connections      int           `json:"connections"`
	ReadOK           int64         `json:"read_ok,omitempty"` // local files read
	ReadFailed       int64         `json:"read_failed,omitempty"`
	ReadBusy         float64       `json:"read_busy_s,omitempty"`
	Decode           string        `json:"decode"` // where JPEGs were decoded: cpu, gpu, or engine (cpu)
	DecodeBusy       float64       `json:"decode_busy_s"`
	DecodeWorkers    int           `json:"decode_workers"`
	JPEGHeaderBusy   float64       `json:"jpeg_header_busy_s,omitempty"`
	EngineDecoded    int64         `json:"engine_decoded,omitempty"` // JPEGs handed to the engine undecoded
	EngineDecodeBusy float64       `json:"engine_decode_busy_s,omitempty"`

	EngineDeviceDecoded   int64   `json:"engine_device_decoded,omitempty"`
	EngineHardwareDecoded int64   `json:"engine_hardware_decoded,omitempty"`
	EngineCPUDecoded      int64   `json:"engine_cpu_decoded,omitempty"`
	EngineCPUFallbacks    int64   `json:"engine_cpu_fallbacks,omitempty"`
	EngineRefused         int64   `json:"engine_refused,omitempty"`
	EngineRefusedBusy     float64 `json:"engine_refused_busy_s,omitempty"`

	Engines          []EngineShare `json:"engines,omitempty"` // one per engine (device)
	EngineBusy       float64       `json:"engine_busy_s"`
	EngineBatches    int64         `json:"engine_batches"`
	EngineAvgBatch   float64       `json:"engine_avg_batch"`
	BatchSize        int           `json:"batch_size"`
	WriteBusy        float64       `json:"write_busy_s"`
	Merge            float64       `json:"merge_s"`
	DecodedPeakBytes int64         `json:"decoded_peak_bytes"`
}

// TextSummary counts this run's text embeddings (Config.TextColumn). Their time is inside
// StageSummary.EngineBusy (Busy is its part).
type TextSummary struct {
	Column    string  `json:"column"`
	Texts     int64   `json:"texts"`     // embedded by this run (one per row)
	Truncated int64   `json:"truncated"` // longer than the model's context: cut to it (the end token kept)
	Empty     int64   `json:"empty"`     // the row had no text (empty or missing): the embedding of ""
	Busy      float64 `json:"busy_s"`    // tokenizing and the text tower's calls
}

// EngineShare is one engine's part of the run.
type EngineShare struct {
	Device  int     `json:"device"`
	Batches int64   `json:"batches"`
	Images  int64   `json:"images"`
	Busy    float64 `json:"busy_s"`
}

// counters are the run's own counts; every field is safe to update from any goroutine.
type counters struct {
	rows, skipped                atomic.Int64
	failures                     atomic.Int64
	writeBusy                    atomic.Int64 // nanoseconds
	inFlightSum, inFlightSamples atomic.Int64 // fetches in flight, sampled by the progress ticker

	mu       sync.Mutex
	byReason map[string]int64
}

// failed counts one failure under its reason's short form.
func (c *counters) failed(reason string) {
	c.failures.Add(1)
	key := ShortReason(reason)
	c.mu.Lock()
	if c.byReason == nil {
		c.byReason = map[string]int64{}
	}
	c.byReason[key]++
	c.mu.Unlock()
}

// ShortReason keeps the kind of a failure reason and drops its details ("corrupt jpeg: bad
// Huffman table" -> "corrupt jpeg", "too many pixels (30000x30000)" -> "too many pixels",
// "line 12: empty URL" -> "bad line"), so a table of reasons stays small.
func ShortReason(r string) string {
	if strings.HasPrefix(r, "line ") {
		return "bad line"
	}
	if i := strings.IndexAny(r, ":("); i > 0 {
		r = r[:i]
	}
	return strings.TrimSpace(r)
}

// reasons returns the failure counts, most frequent first.
func (c *counters) reasons() []ReasonCount {
	c.mu.Lock()
	defer c.mu.Unlock()
	return sortedReasons(c.byReason)
}

// sortedReasons lists counts by reason, most frequent first, then by name.
func sortedReasons(m map[string]int64) []ReasonCount {
	out := make([]ReasonCount, 0, len(m))
	for k, v := range m {
		out = append(out, ReasonCount{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Reason < out[j].Reason
	})
	return out
}
