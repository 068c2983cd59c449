// run.go: Run, and the wiring of the stages: each stage is started with the stage contract of
// package item (bounded channels in and out, failures to one channel that the sink drains),
// so adding a stage is one package and one line here.

package embed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/internal/echo"
	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/pipeline/batch"
	"github.com/clipd/clipd/internal/pipeline/budget"
	"github.com/clipd/clipd/internal/pipeline/decode"
	"github.com/clipd/clipd/internal/pipeline/fetch"
	"github.com/clipd/clipd/internal/pipeline/item"
	"github.com/clipd/clipd/internal/pipeline/mirror"
	"github.com/clipd/clipd/internal/pipeline/outfile"
	"github.com/clipd/clipd/internal/pipeline/plan"
	"github.com/clipd/clipd/internal/pipeline/read"
	"github.com/clipd/clipd/internal/pipeline/sink"
	"github.com/clipd/clipd/internal/pipeline/source"
	"github.com/clipd/clipd/weights"
)

// FinalName is the name of the finished file in Config.Output.
const FinalName = outfile.FinalName

// MemoryMargin is how far a run's peak RSS may go past Config.Memory: what the plan's model
// does not bound exactly (the Go runtime's own structures and the collector's slack past its
// soft limit, the C libraries' allocations, freed pages not yet returned to the system).
// Measured on the tests of cmd/clipd/memory_test.go; see the README's "Memory" section.
const MemoryMargin = 64 << 20

// Run embeds cfg.Input into cfg.Output and returns the run's summary. It returns when the
// input is done (the final file is written), when ctx ends (ErrInterrupted: the rows done
// are saved and a Run with the same Config resumes), or at the first fatal error (the engine
// fails, the output cannot be written, the input cannot be read). Failed rows are not errors:
// they are listed in the output with their reasons and counted in the Summary. When Output
// already holds this Config's finished file, Run does nothing and says so in the Summary
// (AlreadyComplete). The Summary is filled as far as the run got, also with an error.
func Run(ctx context.Context, cfg Config, ev Events) (Summary, error) {
	cfg = cfg.withDefaults()
	if err := cfg.check(); err != nil {
		return Summary{}, err
	}
	r := &run{cfg: cfg, ev: ev, started: time.Now(), dir: cfg.OutputDir(), outDir: cfg.OutputDir(), objects: newObjects(cfg.S3)}
	if objstore.IsURL(cfg.Output) {
		if r.dir = cfg.StagingDir(); r.dir == "" {
			return Summary{}, withKind(ErrConfig, fmt.Errorf("--output %s: no staging folder: pass --staging DIR or --cache-dir DIR", cfg.Output))
		}
	}
	r.log = newLogger(ev.Log)
	return r.run(ctx)
}

// run is one Run's moving parts.
type run struct {
	cfg     Config
	ev      Events
	log     *slog.Logger
	started time.Time

	weightsPath string           // the resolved weights (a file or a folder)
	weights     weights.Identity // the weights file and its sha256, from its bytes
	dir         string           // the folder the sink writes: Config.OutputDir(), or the staging folder of an s3:// output
	outDir      string           // Config.OutputDir(): dir, or the run's folder in the bucket
	s3          *s3Output        // an s3:// output's uploads; nil for a local one
	// tokenizerSHA256 identifies the tokenizer's files (Config.TextColumn only).
	tokenizerSHA256 string

	plan  plan.Plan
	w     *sink.Writer
	src   *source.Source
	count counters

	engines *engines
	objects *objects // the S3 client of s3:// inputs and rows, made on first use
	fetch   *fetch.Stage
	read    *read.Stage
	split   *decode.Split // only when the engine decodes JPEGs
	decode  *decode.Stage
	batch   *batch.Stage
	budget  *budget.Budget // the decoders' pool (plan.DecodedBudget)
	bodies  *budget.Budget // the encoded bodies' pool (plan.BodyBudget)
	// stagesUp is set once the stage fields above are: the progress ticker reads them only
	// after it (the store and load order the writes before its reads).
	stagesUp atomic.Bool

	mergeTime time.Duration

	errOnce sync.Once
	err     error
}

func (r *run) run(ctx context.Context) (Summary, error) {
	cfg := r.cfg

	// An s3:// output's bucket first: a typo, a wrong secret or an unreachable store fails
	// at once (exit 7), before anything is loaded or written.
	if objstore.IsURL(cfg.Output) {
		if err := r.openS3(ctx); err != nil {
			return Summary{}, err
		}
	}

	// The model, the plan and the engines, before anything is downloaded or created.
	es, err := r.openEngines()
	if err != nil {
		return Summary{}, err
	}
	defer es.Close()
	r.engines = es
	info := es.info
	// The Go heap's share of the budget (unless the user set GOMEMLIMIT): the collector
	// returns the bytes the budgets free before the heap outgrows them.
	if os.Getenv("GOMEMLIMIT") == "" && r.plan.GoMemoryLimit > 0 {
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(r.plan.GoMemoryLimit))
	}

	// The two byte budgets the plan divides the pipeline's memory into (see package plan).
	r.bodies = budget.New("bodies", r.plan.BodyBudget)
	r.budget = budget.New("decoding", r.plan.DecodedBudget)

	// The source: a bad path, URL or header fails here.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	r.src, err = r.openSource(runCtx)
	if err != nil {
		if ctx.Err() != nil {
			return r.summary(""), interrupted(0)
		}
		return Summary{}, withKind(ErrInput, err)
	}
	defer r.src.Close()

	// What defines the run, recorded in the output: a rerun with the same identity resumes
	// or finds it complete; any other is refused (see sink.Open).
	attrs := outfile.Attrs{
		Model:            modelName(r.weightsPath),
		WeightsSHA256:    r.weights.SHA256,
		Preprocess:       cfg.Preprocess.String(),
		Version:          cfg.Version,
		Input:            resolveInput(cfg.Input),
		InputFingerprint: r.src.Info().Fingerprint,
		EmbedDim:         info.EmbedDim,
		Normalized:       cfg.Normalize,
		Dtype:            cfg.Dtype,
		Shard:            cfg.Shard.String(),
		Limit:            cfg.Limit,
		URLKind:          string(cfg.URLKind),
		Columns:          cfg.SaveColumns,
		IgnoreOptOut:     cfg.IgnoreOptOut,
		TextColumn:       cfg.TextColumn,
		TokenizerSHA256:  r.tokenizerSHA256,
	}
	var remote mirror.Contents
	if r.s3 != nil {
		remote, err = r.s3Finished(ctx, attrs)
		if errors.Is(err, sink.ErrAlreadyComplete) {
			return r.alreadyComplete(), nil
		} else if err != nil {
			return Summary{}, err
		}
	}
	created := missingDirs(r.dir) // what LockDir and sink.Open create, removed again if the weights prove broken
	// One process writes a folder at a time: another would delete this one's temporaries and
	// overwrite its final file. The kernel drops the lock when the process ends, kill -9 too.
	lock, err := outfile.LockDir(r.dir)
	if errors.Is(err, outfile.ErrLocked) {
		return Summary{}, withKind(ErrConfig, err)
	} else if err != nil {
		return Summary{}, withKind(ErrOutput, err)
	}
	defer lock.Unlock()
	sinkOpt := sink.Options{
		Dir:         r.dir,
		ChunkSize:   r.plan.ChunkSize,
		Attrs:       attrs,
		HasImageIDs: r.src.Info().IDColumn != "",
		NoResume:    cfg.NoResume,
		Logger:      r.log,
	}
	if r.s3 != nil {
		if err := r.s3Pull(ctx, remote, attrs, sinkOpt); err != nil {
			return Summary{}, err
		}
		sinkOpt.Committed = r.s3.m.Committed
	}
	r.w, err = sink.Open(sinkOpt)
	switch {
	case errors.Is(err, sink.ErrAlreadyComplete) && r.s3 != nil:
		// This run's finished file in the staging folder, not in the bucket (a crash
		// between the merge and the upload): the upload is what is left.
		r.log.Info("the staging folder holds this run's finished file: uploading it", "staging", r.dir)
		if err := r.s3Publish(ctx, filepath.Join(r.dir, FinalName), attrs); err != nil {
			return Summary{}, err
		}
		return r.alreadyComplete(), nil
	case errors.Is(err, sink.ErrAlreadyComplete):
		// The same Config after a finished run (or a crash after the merge): nothing to do.
		return r.alreadyComplete(), nil
	case errors.Is(err, sink.ErrRunMismatch) && r.s3 != nil:
		return Summary{}, withKind(ErrConfig, r.inBucket(err))
	case errors.Is(err, sink.ErrRunMismatch):
		return Summary{}, withKind(ErrConfig, err)
	case err != nil:
		return Summary{}, withKind(ErrOutput, err)
	}

	if r.ev.Started != nil {
		rr, rf := r.w.Resumed()
		r.ev.Started(Started{Backend: es.list[0].BackendName(), Plan: r.plan.String(), ImageSize: info.ImageSize,
			EmbedDim: info.EmbedDim, ResumedRows: rr, ResumedFailures: rf})
	}

	if r.s3 != nil {
		// The state goes up first, then the chunks this folder holds that the bucket lacks;
		// from here each finished chunk follows in the background.
		err := r.s3.m.Start(ctx, func(err error) { r.fail(stopRun, r.uploadFailed(err)) })
		if err != nil {
			r.w.Close()
			return Summary{}, withKind(ErrOutput, err)
		}
		r.checkStagingSpace(r.src.Info(), info.EmbedDim)
	}

	stopProgress := r.startProgress()
	runErr := r.pipeline(runCtx, stopRun, es, info)
	closeStart := time.Now()
	var closeErr error
	if errors.Is(runErr, ErrBadWeights) {
		// Broken weights write nothing: not even the failures of other rows, which would
		// make a rerun with good weights a "run with other settings".
		closeErr = r.w.Discard()
		if len(created) > 0 { // this run made the folder: its lock file goes with it
			os.Remove(filepath.Join(r.dir, outfile.LockName))
		}
		for _, d := range created {
			if os.Remove(d) != nil { // only when empty: nothing of anyone else's goes
				break
			}
		}
	} else {
		closeErr = r.w.Close()
	}
	if r.s3 != nil {
		// Every chunk written goes up before the run ends, interrupted or not, so that a
		// rerun elsewhere finds it.
		upErr := r.s3.m.Wait()
		if upErr != nil && runErr == nil {
			runErr = r.uploadFailed(upErr)
		}
		if resumed, _ := r.w.Resumed(); errors.Is(runErr, ErrBadWeights) && resumed == 0 {
			if err := r.s3.m.Forget(context.WithoutCancel(ctx)); err != nil {
				r.log.Warn("cannot remove this run's chunks from the bucket", "err", err.Error())
			}
		}
	}
	r.count.writeBusy.Add(int64(time.Since(closeStart)))
	stopProgress()

	switch {
	case runErr != nil:
		return r.summary(""), runErr
	case closeErr != nil:
		return r.summary(""), withKind(ErrOutput, closeErr)
	case ctx.Err() != nil:
		rows, fails, _ := r.w.Stats()
		return r.summary(""), interrupted(rows + fails)
	}
	if err := r.src.Err(); err != nil {
		return r.summary(""), withKind(ErrInput, fmt.Errorf("reading %s: %w; the URLs read so far are saved: rerun the same command to resume", cfg.Input, err))
	}

	if cfg.Hooks.BeforeFinalize != nil {
		cfg.Hooks.BeforeFinalize()
	}
	mergeStart := time.Now()
	final, err := sink.Finalize(r.dir, attrs)
	r.mergeTime = time.Since(mergeStart)
	if err != nil {
		return r.summary(""), withKind(ErrOutput, fmt.Errorf("merging the chunks of %s: %w; the chunks are intact: rerun the same command to finish", r.dir, err))
	}
	if r.s3 != nil {
		if err := r.s3Publish(ctx, final, attrs); err != nil {
			return r.summary(""), err
		}
		final = r.s3.m.FinalLocation().String()
	}
	out := r.summary(final)
	if out.Rows+out.ResumedRows == 0 {
		return out, withKind(ErrNothingEmbedded, nothingEmbedded(out))
	}
	if rate := out.FailureRate(); cfg.WarnFailureRate > 0 && rate > cfg.WarnFailureRate {
		out.Warning = fmt.Sprintf("%.0f%% of the rows failed (%s); see failed_reasons in %s", 100*rate, topReasons(out.FailureReasons, 3), final)
	}
	if t := out.Text; t != nil && t.Texts > 0 && t.Empty == t.Texts {
		// A misspelt json field of tar shards cannot be refused at the start: say it here.
		out.Warning = strings.TrimPrefix(out.Warning+"; ", "; ") + fmt.Sprintf(
			"no row of this run had a text in column %q: every text embedding is the embedding of \"\"; check --text-column", cfg.TextColumn)
	}
	return out, nil
}

// alreadyComplete is the summary of a run that found its finished file.
func (r *run) alreadyComplete() Summary {
	final := filepath.Join(r.dir, FinalName)
	if r.s3 != nil {
		final = r.s3.m.FinalLocation().String()
	}
	s := Summary{Output: final, Dir: r.outDir, Input: r.cfg.Input, Shard: r.cfg.Shard.String(),
		Completed: true, AlreadyComplete: true, FailureReasons: []ReasonCount{}}
	if r.s3 != nil {
		s.Staging = r.dir
	}
	return s
}

// nothingEmbedded says why a finished run has no embedding.
func nothingEmbedded(s Summary) error {
	failed := s.Failures + s.ResumedFailures
	if failed == 0 {
		return fmt.Errorf("no image was embedded: %s has no rows (of this shard); check --input, --shard and --limit", s.Input)
	}
	hint := ""
	if len(s.FailureReasons) > 0 && s.FailureReasons[0].Reason == "private network" {
		hint = " (a local mirror? pass --allow-private-networks)"
	}
	return fmt.Errorf("no image was embedded: all %d rows failed (%s)%s; the reasons are listed in %s", failed, topReasons(s.FailureReasons, 3), hint, s.Output)
}

// topReasons is "http 404 5, timeout 4, ..." for the n most frequent reasons.
func topReasons(rs []ReasonCount, n int) string {
	var b strings.Builder
	for i, r := range rs {
		if i == n {
			b.WriteString(", ...")
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", echo.Short(r.Reason), r.Count)
	}
	return b.String()
}

// interrupted is the error of a run stopped by its context.
func interrupted(done int64) error {
	return withKind(ErrInterrupted, fmt.Errorf("interrupted: %d done, rerun the same command to resume", done))
}

// openSource opens cfg.Input with the run's shard and limit.
func (r *run) openSource(ctx context.Context) (*source.Source, error) {
	opt := source.Options{
		URLColumn:     r.cfg.URLColumn,
		Limit:         r.cfg.Limit,
		Shard:         r.cfg.Shard,
		OpenImagesURL: r.cfg.URLKind,
		CacheDir:      r.cfg.CacheDir,
		Columns:       r.cfg.SaveColumns,
		TextColumn:    r.cfg.TextColumn,
		Budget:        r.bodies,
		Objects:       r.objects,
	}
	if r.cfg.Input == "-" && r.cfg.Stdin != nil {
		return source.New(ctx, r.cfg.Stdin, "stdin", opt)
	}
	return source.Open(ctx, r.cfg.Input, opt)
}

// fail records the run's first fatal error and stops the run.
func (r *run) fail(stop context.CancelFunc, err error) {
	r.errOnce.Do(func() { r.err = err })
	stop()
}

// pipeline runs source -> fetch | read -> decode -> batch -> sink until the input ends or ctx
// is cancelled (stop cancels it: a fatal error does); when the engines decode JPEGs, a split
// stage in front of the decoders sends JPEGs past them to the batch stage. Every goroutine it
// starts has ended when it returns.
func (r *run) pipeline(ctx context.Context, stop context.CancelFunc, es *engines, info engine.ModelInfo) error {
	cfg, p, w := r.cfg, r.plan, r.w
	var wg sync.WaitGroup

	// Every stage's failures go to the sink through this one channel.
	fails := make(chan item.Failure, 64)
	failsDone := make(chan struct{})
	go func() {
		defer close(failsDone)
		for f := range fails {
			r.count.failed(f.Reason)
			if err := w.AddFailure(f); err != nil {
				r.fail(stop, withKind(ErrOutput, err))
			}
		}
	}()

	// Source -> rows: skip what an earlier run did; remote rows to fetch, local ones to read,
	// rows that came with their bytes (tar members) straight to the decoders.
	remote := make(chan item.Item, max(p.FetchQueue, 1))
	local := make(chan item.Item, max(p.DecodeWorkers, 1))
	carried := make(chan *item.Encoded, max(p.DecodeWorkers, 1))
	wg.Go(func() {
		defer close(remote)
		defer close(local)
		defer close(carried)
		for {
			// A source blocked on its input (stdin or a FIFO held open) must not hold the
			// run past ctx: the rows done are saved without waiting for it.
			var rec source.Record
			var ok bool
			select {
			case rec, ok = <-r.src.Records():
			case <-ctx.Done():
				return
			}
			if !ok {
				return
			}
			seq := rec.Item.Seq
			if rec.Failure != nil {
				seq = rec.Failure.Seq
			}
			if w.Done(seq) {
				rec.Release()
				r.count.skipped.Add(1)
				continue
			}
			if rec.Failure != nil {
				fails <- *rec.Failure
				continue
			}
			if rec.Body != nil {
				// The source took the bytes from the body budget (source.Options.Budget).
				select {
				case carried <- item.NewEncoded(rec.Item, rec.Body, rec.Release):
				case <-ctx.Done():
					rec.Release()
					return
				}
				continue
			}
			to := remote
			if rec.Item.Local() || rec.Item.Object() {
				to = local
			}
			select {
			case to <- rec.Item:
			case <-ctx.Done():
				return
			}
		}
	})

	r.fetch = fetch.Start(ctx, remote, fails, fetch.Options{
		Concurrency:          p.Connections,
		MaxConnsPerHost:      cfg.HostConnections, // 0: the fetcher's polite default
		Retries:              cfg.Retries,
		Timeout:              cfg.Timeout,
		MaxBodyBytes:         p.MaxBodyBytes,
		UserAgent:            cfg.UserAgent,
		OutputBuffer:         max(p.FetchQueue, 1),
		AllowPrivateNetworks: cfg.AllowPrivateNetworks,
		HostRate:             cfg.HostRate,
		IgnoreOptOut:         cfg.IgnoreOptOut,
		RobotsTxt:            cfg.RobotsTxt,
		Budget:               r.bodies,
	})
	r.read = read.Start(ctx, local, fails, read.Options{MaxBodyBytes: p.MaxBodyBytes, Budget: r.bodies,
		Objects: r.objects, ObjectWorkers: p.Connections, Timeout: cfg.Timeout,
		Fatal: func(err error) {
			r.fail(stop, fmt.Errorf("%w; the rows done so far are saved: rerun the same command to resume", err))
		}})
	bodies := fanIn(r.fetch.Out(), r.read.Out(), carried)

	decodeOpt := decode.Options{Mode: cfg.Preprocess, MaxPixels: p.MaxPixels, MinSide: info.ImageSize}
	var jpegs <-chan decode.Output
	if es.decodes {
		// JPEGs skip the decoders: their bytes go to the engines' encoded call.
		r.split = decode.StartSplit(ctx, bodies, fails, decode.SplitOptions{Options: decodeOpt, JPEGs: p.BatchSize, Others: max(p.DecodeWorkers, 1)})
		bodies, jpegs = r.split.Others(), r.split.JPEGs()
	}
	r.decode = decode.Start(ctx, bodies, fails, decode.StageOptions{
		Options: decodeOpt,
		Workers: p.DecodeWorkers,
		Budget:  r.budget,
		Output:  max(p.DecodeQueue, 1),
	})
	toBatch := r.decode.Out()
	if jpegs != nil {
		toBatch = fanIn(toBatch, jpegs)
	}
	first, others := es.embedders()
	r.batch = batch.Start(ctx, first, toBatch, batch.Options{BatchSize: p.BatchSize, Normalize: cfg.Normalize, Released: r.budget.Release,
		Others: others, Fails: fails, Fallback: decodeOpt, Texts: es.texts})
	r.stagesUp.Store(true)

	// Engine -> rows -> sink, here. An image whose embedding is not finite fails alone; but
	// until the output has one finite embedding, such images are held back, and when a whole
	// first batch (the plan's batch size, or all the images when fewer) is non-finite the
	// weights are broken: the run stops with ErrBadWeights and none of them is recorded.
	resumedRows, _ := w.Resumed()
	sane := resumedRows > 0
	var held []item.Item
	broken := false
	nonFinite := func(it item.Item) {
		fails <- item.Failure{Item: it, Stage: "embed", Reason: batch.ReasonNonFinite}
	}
	for b := range r.batch.Out() {
		if b.Err != nil {
			r.fail(stop, fmt.Errorf("%w (the rows written so far are saved: rerun to resume)", b.Err))
			continue
		}
		if broken {
			continue
		}
		bad := b.CountNonFinite()
		if !sane && bad == len(b.Items) {
			if held = append(held, b.Items...); len(held) >= p.BatchSize {
				broken = true
				r.fail(stop, brokenWeights(len(held)))
			}
			continue
		}
		if !sane {
			sane = true
			for _, it := range held {
				nonFinite(it)
			}
			held = nil
		}
		t := time.Now()
		for i := range b.Items {
			it, emb := b.Row(i)
			if !b.Finite(i) {
				nonFinite(it)
				continue
			}
			if err := w.Add(sink.Row{Item: it, Embedding: emb, TextEmbedding: b.TextRow(i)}); err != nil {
				r.fail(stop, withKind(ErrOutput, err))
				break
			}
		}
		r.count.writeBusy.Add(int64(time.Since(t)))
		rows := r.count.rows.Add(int64(len(b.Items) - bad))
		if cfg.Hooks.AfterBatch != nil {
			cfg.Hooks.AfterBatch(rows)
		}
	}
	if !broken && len(held) > 0 && ctx.Err() == nil {
		r.fail(stop, brokenWeights(len(held))) // the input ended within the first batch
	}
	wg.Wait()
	// Every stage upstream of the batch has closed its output, so no failure is in flight.
	close(fails)
	<-failsDone
	return r.err
}

// missingDirs lists dir and those of its parents that do not exist, deepest first.
func missingDirs(dir string) []string {
	var out []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			return out
		}
		out = append(out, d)
		if filepath.Dir(d) == d {
			return out
		}
	}
}

// brokenWeights is the error of a run whose first n images all embedded to NaN or Inf.
func brokenWeights(n int) error {
	return withKind(ErrBadWeights, fmt.Errorf("weights: the embeddings of the first %d images are all non-finite (NaN or Inf): the weights are broken or overflow for these images; nothing was written for them; check --weights", n))
}

// fanIn merges channels: the bodies of the fetch and read stages (and those the source
// carried) into the decoders' input; the decoders' images and the split stage's JPEGs into
// the batch stage's.
func fanIn[T any](ins ...<-chan T) <-chan T {
	out := make(chan T)
	var wg sync.WaitGroup
	for _, in := range ins {
		wg.Go(func() {
			for e := range in {
				out <- e
			}
		})
	}
	go func() { wg.Wait(); close(out) }()
	return out
}

// modelName is what the file's "model" attribute says: the cached manifest's name when the
// weights came from `clipd weights fetch`, else the weights path.
func modelName(wpath string) string {
	dir := wpath
	if st, err := os.Stat(wpath); err == nil && !st.IsDir() {
		dir = filepath.Dir(wpath)
	}
	if m, err := weights.ReadManifest(dir); err == nil && m.Name != "" {
		return m.Name
	}
	abs, err := filepath.Abs(wpath)
	if err != nil {
		return wpath
	}
	return abs
}
