// progress.go: what `clipd embed` tells while it runs and when it ends: a live line on a
// terminal or a log line every few seconds elsewhere (from embed.Progress), the closing
// summary (from embed.Summary) and the --json statistics file.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/clipd/clipd/embed"
	"github.com/clipd/clipd/internal/objstore"
)

// progressPrinter turns the run's progress events into a redrawn line (terminal) or a log
// line every LogEvery (no terminal); nothing with --quiet.
type progressPrinter struct {
	o        embedOptions
	draw     bool
	logLines bool
	every    time.Duration

	mu      sync.Mutex
	lastLog time.Time
	drawn   bool
}

func newProgressPrinter(o embedOptions) *progressPrinter {
	every := o.LogEvery
	if every <= 0 {
		every = 10 * time.Second
	}
	return &progressPrinter{o: o, draw: !o.Quiet && o.TTY, logLines: !o.Quiet && !o.TTY, every: every, lastLog: time.Now()}
}

func (p *progressPrinter) update(pr embed.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.draw:
		fmt.Fprint(p.o.Stderr, "\r\033[K"+progressLine(pr))
		p.drawn = true
	case p.logLines && time.Since(p.lastLog) >= p.every:
		p.lastLog = time.Now()
		p.o.Logger.Info("progress", "status", progressLine(pr))
	}
}

// clear removes the live line, if one was drawn.
func (p *progressPrinter) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.o.Stderr, "\r\033[K")
		p.drawn = false
	}
}

// progressLine is "done[/total] | images/s | MB/s | failures by reason | ETA".
func progressLine(p embed.Progress) string {
	el := max(p.Elapsed.Seconds(), 1e-9)
	done := p.Done()
	var b strings.Builder
	if p.Total > 0 {
		approx := "~"
		if p.TotalExact {
			approx = ""
		}
		fmt.Fprintf(&b, "%d/%s%d (%.0f%%)", done, approx, p.Total, 100*float64(done)/float64(p.Total))
	} else {
		fmt.Fprintf(&b, "%d done", done)
	}
	fmt.Fprintf(&b, " | %.1f img/s | %.1f MB/s", p.ImagesPerSecond(), float64(p.Bytes)/1e6/el)
	if p.Failures > 0 {
		fmt.Fprintf(&b, " | failed %d (%s)", p.Failures, formatReasons(p.FailureReasons, 3))
	}
	if eta := p.ETA(); eta > 0 {
		fmt.Fprintf(&b, " | ETA %v", eta)
	}
	return b.String()
}

func formatReasons(rs []embed.ReasonCount, top int) string {
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

// report prints the summary (stdout; with --quiet only the output file's path) and writes
// the --json file.
func report(o embedOptions, s embed.Summary) {
	if o.JSON && s.Dir != "" {
		write := writeStatsJSON
		if objstore.IsURL(s.Dir) {
			write = func(dir string, s embed.Summary) error { return putStatsJSON(o.S3, dir, s) }
		}
		if err := write(s.Dir, s); err != nil {
			o.Logger.Warn("cannot write the statistics file", "err", err)
		}
	}
	if o.Quiet {
		if s.Completed {
			fmt.Fprintln(o.Stdout, s.Output)
		}
		return
	}
	printSummary(o.Stdout, s)
}

func printSummary(w io.Writer, s embed.Summary) {
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
	if t := s.Text; t != nil {
		fmt.Fprintf(w, "  texts (%s): %d embedded, %d cut to the model's context, %d empty or missing (embedded as \"\")\n", t.Column, t.Texts, t.Truncated, t.Empty)
	}
	fmt.Fprintf(w, "  %.1f images/s, %.2f MB/s (%.1f MB in %s)\n", s.ImagesPerSecond, s.MBPerSecond, s.MBytes, time.Duration(s.ElapsedSeconds*float64(time.Second)).Round(time.Millisecond))
	g := s.Stages
	el := max(s.ElapsedSeconds, 1e-9)
	if g.FetchOK+g.FetchFailed+g.FetchCanceled > 0 || g.ReadOK+g.ReadFailed == 0 {
		retries := fmt.Sprintf("%d retries", g.FetchRetries)
		if len(g.FetchRetryWhy) > 0 {
			retries += " (" + formatReasons(g.FetchRetryWhy, 4) + ")"
		}
		fmt.Fprintf(w, "  fetch:  %d ok, %d failed, %s, %.1f of %d connections busy on average\n", g.FetchOK, g.FetchFailed, retries, g.FetchAvgInFlight, g.Connections)
	}
	if g.FetchCanceled > 0 {
		fmt.Fprintf(w, "          %d downloads stopped by the interruption (left for the next run)\n", g.FetchCanceled)
	}
	if g.ReadOK+g.ReadFailed > 0 {
		fmt.Fprintf(w, "  read:   %d ok, %d failed, %.2fs busy\n", g.ReadOK, g.ReadFailed, g.ReadBusy)
	}
	fmt.Fprintf(w, "  decode: %.2fs busy over %d workers (%.0f%% of their time)", g.DecodeBusy, g.DecodeWorkers, 100*g.DecodeBusy/el/float64(max(g.DecodeWorkers, 1)))
	if g.Decode != "" && g.Decode != "cpu" {
		// JPEGs were decoded inside the engine call: the workers only saw the other formats.
		fmt.Fprintf(w, " on other formats; %d JPEGs decoded by the engine (%s), inside its busy time; headers %.2fs", g.EngineDecoded, g.Decode, g.JPEGHeaderBusy)
		if g.EngineDeviceDecoded > 0 {
			fmt.Fprintf(w, "; %d on the device (%d by its hardware decoder), %d on the CPU (%d sent there by the engine)",
				g.EngineDeviceDecoded, g.EngineHardwareDecoded, g.EngineCPUDecoded, g.EngineCPUFallbacks)
		}
		if g.EngineRefused > 0 {
			fmt.Fprintf(w, "; %d refused by the engine, retried on the CPU decoder", g.EngineRefused)
		}
	}
	fmt.Fprintln(w)
	engines := max(len(g.Engines), 1)
	fmt.Fprintf(w, "  engine: %.2fs busy (%.0f%% of the run", g.EngineBusy, 100*g.EngineBusy/el/float64(engines))
	if engines > 1 {
		fmt.Fprintf(w, " per engine, %d engines", engines)
	}
	fmt.Fprintf(w, "), %d batches of %.1f on average (max %d)\n", g.EngineBatches, g.EngineAvgBatch, g.BatchSize)
	if engines > 1 {
		for _, e := range g.Engines {
			fmt.Fprintf(w, "          device %d: %d batches, %d images, %.2fs busy\n", e.Device, e.Batches, e.Images, e.Busy)
		}
	}
	fmt.Fprintf(w, "  write:  %.2fs, merge %.2fs\n", g.WriteBusy, g.Merge)
}

// statsFile is where --json writes.
func statsFile(dir string) string { return filepath.Join(dir, statsName) }

// statsName is the --json statistics file's name in the output folder.
const statsName = "Images_Embedded.stats.json"

// putStatsJSON writes the statistics of a run with an s3:// output beside its final object.
func putStatsJSON(conf embed.S3, dir string, s embed.Summary) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	loc, err := objstore.Parse(dir)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := objstore.New(ctx, conf.Options())
	if err != nil {
		return err
	}
	return c.PutBytes(ctx, loc.Join(statsName), append(b, '\n'), nil)
}

func writeStatsJSON(dir string, s embed.Summary) error {
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
