// progress.go: what `clipd embed` tells while it runs and when it ends: counters per stage
// (items, failures by reason, bytes, busy time), a live line on a terminal or a log line
// every few seconds elsewhere, the closing summary and the --json statistics file.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clipd/clipd/internal/pipeline/fetch"
)

// runStats are one run's counters; every field is safe to update from any goroutine.
type runStats struct {
	started time.Time

	queued, decoded, rows, skipped atomic.Int64 // items sent to fetch, decoded, embedded and written, skipped as done
	failures                       atomic.Int64
	bytes                          atomic.Int64 // encoded image bytes decoded
	decodeBusy, writeBusy          atomic.Int64 // nanoseconds summed over workers
	inFlightSum, inFlightSamples   atomic.Int64 // fetches in flight, sampled by the progress ticker
	mergeTime                      time.Duration

	mu       sync.Mutex
	byReason map[string]int64
}

func newRunStats(started time.Time) *runStats {
	return &runStats{started: started, byReason: map[string]int64{}}
}

// failed counts one failure under its reason's short form.
func (s *runStats) failed(reason string) {
	s.failures.Add(1)
	key := shortReason(reason)
	s.mu.Lock()
	s.byReason[key]++
	s.mu.Unlock()
}

// shortReason keeps the kind of a reason and drops its details ("corrupt jpeg: bad
// Huffman table" -> "corrupt jpeg", "too many pixels (30000x30000)" -> "too many pixels", "line
// 12: empty URL" -> "bad line"), so the table of reasons stays small.
func shortReason(r string) string {
	if strings.HasPrefix(r, "line ") {
		return "bad line"
	}
	if i := strings.IndexAny(r, ":("); i > 0 {
		r = r[:i]
	}
	return strings.TrimSpace(r)
}

type reasonCount struct {
	Reason string `json:"reason"`
	Count  int64  `json:"count"`
}

// reasons returns the failure counts, most frequent first.
func (s *runStats) reasons() []reasonCount {
	s.mu.Lock()
	out := make([]reasonCount, 0, len(s.byReason))
	for k, v := range s.byReason {
		out = append(out, reasonCount{k, v})
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Reason < out[j].Reason
	})
	return out
}

func formatReasons(rs []reasonCount, top int) string {
	var b strings.Builder
	for i, r := range rs {
		if i == top {
			fmt.Fprintf(&b, ", ...")
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", r.Reason, r.Count)
	}
	return b.String()
}

// startProgress starts the ticker that samples the fetch stage and, unless quiet, draws the
// live line (terminal) or logs a line every LogEvery (no terminal).
func (r *embedRun) startProgress() {
	r.progressDone = make(chan struct{})
	every := 250 * time.Millisecond
	logEvery := r.o.LogEvery
	if logEvery <= 0 {
		logEvery = 10 * time.Second
	}
	draw := !r.o.Quiet && r.o.TTY
	logLines := !r.o.Quiet && !r.o.TTY
	r.progressWG.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		lastLog := time.Now()
		for {
			select {
			case <-r.progressDone:
				if draw {
					fmt.Fprint(r.o.Stderr, "\r\033[K")
				}
				return
			case now := <-t.C:
				if r.fetcher != nil {
					r.stats.inFlightSum.Add(r.fetcher.Stats().InFlight)
					r.stats.inFlightSamples.Add(1)
				}
				switch {
				case draw:
					fmt.Fprint(r.o.Stderr, "\r\033[K"+r.progressLine())
				case logLines && now.Sub(lastLog) >= logEvery:
					lastLog = now
					r.o.Logger.Info("progress", "status", r.progressLine())
				}
			}
		}
	})
}

// stopProgress stops the ticker and clears the live line; safe to call twice.
func (r *embedRun) stopProgress() {
	if r.progressDone == nil {
		return
	}
	select {
	case <-r.progressDone:
	default:
		close(r.progressDone)
	}
	r.progressWG.Wait()
}

// progressLine is "done[/total] | images/s | MB/s | failures by reason | ETA".
func (r *embedRun) progressLine() string {
	st := r.stats
	el := time.Since(st.started).Seconds()
	rows, fails := st.rows.Load(), st.failures.Load()
	resumedRows, resumedFails := r.w.Resumed()
	done := rows + fails + resumedRows + resumedFails
	rate := float64(rows) / max(el, 1e-9)
	var b strings.Builder
	if total := r.o.Limit; total > 0 {
		fmt.Fprintf(&b, "%d/%d (%.0f%%)", done, total, 100*float64(done)/float64(total))
	} else {
		fmt.Fprintf(&b, "%d done", done)
	}
	fmt.Fprintf(&b, " | %.1f img/s | %.1f MB/s", rate, float64(st.bytes.Load())/1e6/max(el, 1e-9))
	if fails > 0 {
		fmt.Fprintf(&b, " | failed %d (%s)", fails, formatReasons(st.reasons(), 3))
	}
	if total := r.o.Limit; total > 0 && rows+fails > 0 && done < total {
		perItem := el / float64(rows+fails)
		eta := time.Duration(perItem * float64(total-done) * float64(time.Second)).Round(time.Second)
		fmt.Fprintf(&b, " | ETA %v", eta)
	}
	return b.String()
}

// embedSummary is what the end of a run reports, and what --json writes.
type embedSummary struct {
	Output          string        `json:"output,omitempty"` // the merged file; empty when interrupted
	Input           string        `json:"input"`
	Shard           string        `json:"shard"`
	Completed       bool          `json:"completed"`
	Rows            int64         `json:"rows"`     // embedded by this run
	Failures        int64         `json:"failures"` // failed in this run
	ResumedRows     int64         `json:"resumed_rows"`
	ResumedFailures int64         `json:"resumed_failures"`
	FailureReasons  []reasonCount `json:"failure_reasons"`
	ElapsedSeconds  float64       `json:"elapsed_s"`
	ImagesPerSecond float64       `json:"images_per_s"`
	MBytes          float64       `json:"mbytes"` // encoded image bytes decoded
	MBPerSecond     float64       `json:"mb_per_s"`
	Stages          stageSummary  `json:"stages"`
}

// stageSummary shows where the time went. Busy times are summed over a stage's workers; the
// engine's is one goroutine's, so engine_busy_s / elapsed_s is how much of the run the engine
// worked (near 1: the engine is the bottleneck; low: it waited for downloads or decoding).
type stageSummary struct {
	FetchOK          int64   `json:"fetch_ok"`
	FetchFailed      int64   `json:"fetch_failed"`   // judged failures (http errors, timeouts, ...)
	FetchCanceled    int64   `json:"fetch_canceled"` // stopped by an interruption: left for the next run
	FetchRetries     int64   `json:"fetch_retries"`
	FetchAvgInFlight float64 `json:"fetch_avg_in_flight"`
	Connections      int     `json:"connections"`
	DecodeBusy       float64 `json:"decode_busy_s"`
	DecodeWorkers    int     `json:"decode_workers"`
	EngineBusy       float64 `json:"engine_busy_s"`
	EngineBatches    int64   `json:"engine_batches"`
	EngineAvgBatch   float64 `json:"engine_avg_batch"`
	BatchSize        int     `json:"batch_size"`
	WriteBusy        float64 `json:"write_busy_s"`
	Merge            float64 `json:"merge_s"`
	DecodedPeakBytes int64   `json:"decoded_peak_bytes"`
}

func (r *embedRun) summary(final string) embedSummary {
	st := r.stats
	el := time.Since(st.started).Seconds()
	rr, rf := r.w.Resumed()
	s := embedSummary{
		Output: final, Input: r.o.Input, Shard: r.o.Shard.String(), Completed: final != "",
		Rows: st.rows.Load(), Failures: st.failures.Load(), ResumedRows: rr, ResumedFailures: rf,
		FailureReasons: st.reasons(), ElapsedSeconds: el,
		MBytes: float64(st.bytes.Load()) / 1e6,
	}
	s.ImagesPerSecond = float64(s.Rows) / max(el, 1e-9)
	s.MBPerSecond = s.MBytes / max(el, 1e-9)
	if r.fetcher != nil {
		fs := r.fetcher.Stats()
		canceled := fs.Reasons[fetch.ReasonCanceled]
		s.Stages.FetchOK, s.Stages.FetchFailed, s.Stages.FetchCanceled, s.Stages.FetchRetries = fs.OK, fs.Failed-canceled, canceled, fs.Retries
	}
	if n := st.inFlightSamples.Load(); n > 0 {
		s.Stages.FetchAvgInFlight = float64(st.inFlightSum.Load()) / float64(n)
	}
	s.Stages.Connections = r.p.Connections
	s.Stages.DecodeBusy = time.Duration(st.decodeBusy.Load()).Seconds()
	s.Stages.DecodeWorkers = r.p.DecodeWorkers
	if r.stage != nil {
		bs := r.stage.Stats()
		s.Stages.EngineBusy = bs.Busy.Seconds()
		s.Stages.EngineBatches = bs.Batches
		if bs.Batches > 0 {
			s.Stages.EngineAvgBatch = float64(bs.Images) / float64(bs.Batches)
		}
	}
	s.Stages.BatchSize = r.p.BatchSize
	s.Stages.WriteBusy = time.Duration(st.writeBusy.Load()).Seconds()
	s.Stages.Merge = st.mergeTime.Seconds()
	if r.budget != nil {
		s.Stages.DecodedPeakBytes = r.budget.Peak()
	}
	return s
}

// report prints the summary (stdout; with --quiet only the output file's path) and writes
// the --json file. completed is false for an interrupted run.
func (r *embedRun) report(completed bool, final string) {
	s := r.summary(final)
	if r.o.JSON {
		if err := writeStatsJSON(r.o.Output, s); err != nil {
			r.o.Logger.Warn("cannot write the statistics file", "err", err)
		}
	}
	if r.o.Quiet {
		if completed {
			fmt.Fprintln(r.o.Stdout, final)
		}
		return
	}
	printSummary(r.o.Stdout, s)
}

func printSummary(w io.Writer, s embedSummary) {
	if s.Completed {
		fmt.Fprintf(w, "%s: %d rows, %d failures\n", s.Output, s.Rows+s.ResumedRows, s.Failures+s.ResumedFailures)
	} else {
		fmt.Fprintf(w, "stopped early: %d rows, %d failures saved in chunk files\n", s.Rows+s.ResumedRows, s.Failures+s.ResumedFailures)
	}
	if s.ResumedRows+s.ResumedFailures > 0 {
		fmt.Fprintf(w, "  this run: %d rows, %d failures (resumed after %d rows, %d failures)\n", s.Rows, s.Failures, s.ResumedRows, s.ResumedFailures)
	}
	if len(s.FailureReasons) > 0 {
		fmt.Fprintf(w, "  failures: %s\n", formatReasons(s.FailureReasons, 12))
	}
	fmt.Fprintf(w, "  %.1f images/s, %.2f MB/s (%.1f MB in %s)\n", s.ImagesPerSecond, s.MBPerSecond, s.MBytes, time.Duration(s.ElapsedSeconds*float64(time.Second)).Round(time.Millisecond))
	g := s.Stages
	el := max(s.ElapsedSeconds, 1e-9)
	fmt.Fprintf(w, "  fetch:  %d ok, %d failed, %d retries, %.1f of %d connections busy on average\n", g.FetchOK, g.FetchFailed, g.FetchRetries, g.FetchAvgInFlight, g.Connections)
	if g.FetchCanceled > 0 {
		fmt.Fprintf(w, "          %d downloads stopped by the interruption (left for the next run)\n", g.FetchCanceled)
	}
	fmt.Fprintf(w, "  decode: %.2fs busy over %d workers (%.0f%% of their time)\n", g.DecodeBusy, g.DecodeWorkers, 100*g.DecodeBusy/el/float64(max(g.DecodeWorkers, 1)))
	fmt.Fprintf(w, "  engine: %.2fs busy (%.0f%% of the run), %d batches of %.1f on average (max %d)\n", g.EngineBusy, 100*g.EngineBusy/el, g.EngineBatches, g.EngineAvgBatch, g.BatchSize)
	fmt.Fprintf(w, "  write:  %.2fs, merge %.2fs\n", g.WriteBusy, g.Merge)
}

// statsFile is where --json writes.
func statsFile(dir string) string { return filepath.Join(dir, "Images_Embedded.stats.json") }

func writeStatsJSON(dir string, s embedSummary) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := statsFile(dir) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, statsFile(dir))
}
