// progress.go: the progress ticker (Events.Progress, and the fetch stage's in-flight samples
// for the summary) and the Summary a run ends with.

package embed

import (
	"sync"
	"time"

	"github.com/clipd/clipd/internal/pipeline/fetch"
)

// startProgress starts the ticker; the returned func stops it and waits for it.
func (r *run) startProgress() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(r.cfg.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if r.stagesUp.Load() && r.fetch != nil {
					r.count.inFlightSum.Add(r.fetch.Stats().InFlight)
					r.count.inFlightSamples.Add(1)
				}
				if r.ev.Progress != nil {
					r.ev.Progress(r.progress())
				}
			}
		}
	})
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// progress is a snapshot of the counters.
func (r *run) progress() Progress {
	rr, rf := r.w.Resumed()
	p := Progress{
		Elapsed: time.Since(r.started), Rows: r.count.rows.Load(), Failures: r.count.failures.Load(),
		ResumedRows: rr, ResumedFailures: rf, FailureReasons: r.count.reasons(),
	}
	p.Total, p.TotalExact = r.total()
	if !r.stagesUp.Load() {
		return p
	}
	if r.decode != nil {
		p.Bytes = r.decode.Stats().Bytes
	}
	if r.split != nil {
		p.Bytes += r.split.Stats().Bytes
	}
	if r.fetch != nil {
		p.FetchesInFlight = r.fetch.Stats().InFlight
	}
	return p
}

// total is how many rows the run will end with (this shard's, resumed ones included):
// exact once the input is read to its end or when it is a whole folder; else estimated from
// the share of the input's bytes read so far; 0 when neither is known (standard input, a
// server that sends no length). The limit caps it.
func (r *run) total() (int64, bool) {
	info, st := r.src.Info(), r.src.Stats()
	emitted := st.Items + st.Failures
	var n int64
	exact := false
	switch {
	case r.src.Ended():
		n, exact = emitted, true
	case info.TotalRows > 0 && r.cfg.Shard.Count <= 1:
		n, exact = info.TotalRows, true
	case info.TotalRows > 0:
		n = info.TotalRows / int64(r.cfg.Shard.Count)
	case info.TotalBytes > 0 && st.Bytes > 0:
		n = int64(float64(emitted) * float64(info.TotalBytes) / float64(st.Bytes))
	}
	if lim := r.cfg.Limit; lim > 0 && (n == 0 || n > lim) {
		return lim, n > lim || exact
	}
	return n, exact
}

// summary is the run's report; final is the finished file, "" when the run did not finish.
func (r *run) summary(final string) Summary {
	el := time.Since(r.started).Seconds()
	s := Summary{
		Output: final, Dir: r.outDir, Input: r.cfg.Input, Shard: r.cfg.Shard.String(), Completed: final != "",
		Rows: r.count.rows.Load(), Failures: r.count.failures.Load(),
		FailureReasons: r.count.reasons(), ElapsedSeconds: el,
	}
	if r.w != nil {
		s.ResumedRows, s.ResumedFailures = r.w.Resumed()
	}
	if r.s3 != nil {
		s.Staging = r.dir
	}
	g := &s.Stages
	if r.decode != nil {
		ds := r.decode.Stats()
		s.MBytes = float64(ds.Bytes) / 1e6
		g.DecodeBusy = ds.Busy.Seconds()
	}
	if r.split != nil {
		ss := r.split.Stats()
		s.MBytes += float64(ss.Bytes) / 1e6
		g.JPEGHeaderBusy = ss.Busy.Seconds()
	}
	if r.engines != nil {
		g.Decode = "cpu"
		if r.engines.decodes {
			g.Decode = decodeName(true, r.engines.backend)
			ds := r.engines.decodeStats()
			g.EngineDeviceDecoded, g.EngineHardwareDecoded = ds.DeviceDecoded, ds.HardwareDecoded
			g.EngineCPUDecoded, g.EngineCPUFallbacks = ds.CPUDecoded, ds.CPUFallbacks
		}
	}
	s.ImagesPerSecond = float64(s.Rows) / max(el, 1e-9)
	s.MBPerSecond = s.MBytes / max(el, 1e-9)
	if r.fetch != nil {
		fs := r.fetch.Stats()
		canceled := fs.Reasons[fetch.ReasonCanceled]
		g.FetchOK, g.FetchFailed, g.FetchCanceled, g.FetchRetries = fs.OK, fs.Failed-canceled, canceled, fs.Retries
		g.FetchRetryWhy = sortedReasons(fs.RetryReasons)
		g.FetchStaleConns = fs.StaleConnections
	}
	if n := r.count.inFlightSamples.Load(); n > 0 {
		g.FetchAvgInFlight = float64(r.count.inFlightSum.Load()) / float64(n)
	}
	if r.read != nil {
		rs := r.read.Stats()
		g.ReadOK, g.ReadFailed, g.ReadBusy = rs.OK, rs.Failed, rs.Busy.Seconds()
	}
	g.Connections = r.plan.Connections
	s.Plan = r.plan.String()
	g.DecodeWorkers = r.plan.DecodeWorkers
	if r.batch != nil && r.cfg.TextColumn != "" {
		bs := r.batch.Stats()
		s.Text = &TextSummary{Column: r.cfg.TextColumn, Texts: bs.Texts, Truncated: bs.TextTruncated, Empty: bs.TextEmpty, Busy: bs.TextBusy.Seconds()}
	}
	if r.batch != nil {
		bs := r.batch.Stats()
		g.EngineBusy = bs.Busy.Seconds()
		g.EngineBatches = bs.Batches
		if bs.Batches > 0 {
			g.EngineAvgBatch = float64(bs.Images) / float64(bs.Batches)
		}
		g.EngineDecoded, g.EngineDecodeBusy = bs.Encoded, bs.EncodedBusy.Seconds()
		g.EngineRefused, g.EngineRefusedBusy = bs.Fallbacks, bs.FallbackBusy.Seconds()
		for i, e := range bs.PerEngine {
			g.Engines = append(g.Engines, EngineShare{Device: r.engines.devices[i], Batches: e.Batches, Images: e.Images, Busy: e.Busy.Seconds()})
		}
	}
	g.BatchSize = r.plan.BatchSize
	g.WriteBusy = time.Duration(r.count.writeBusy.Load()).Seconds()
	g.Merge = r.mergeTime.Seconds()
	if r.budget != nil {
		g.DecodedPeakBytes = r.budget.Peak()
	}
	return s
}
