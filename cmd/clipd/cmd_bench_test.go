// cmd_bench_test.go: `clipd bench` through runBench on the committed tiny model: engine-only
// runs on pixels and images, and --pipeline on the decoder's fixture files; the JSON must
// carry positive, self-consistent numbers. No timing is asserted.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/internal/pipeline/decode"
)

const tinyModel = golden + "/tiny_openai_quick_f32"

func benchJSON(t *testing.T, o benchOptions) benchReport {
	t.Helper()
	var out bytes.Buffer
	o.Weights, o.JSON, o.Stdout, o.Logger = tinyModel, true, &out, quietLogger
	o.Backend, o.Threads = engine.BackendCPU, 1
	if o.Duration == 0 {
		o.Duration = 100 * time.Millisecond
	}
	if err := runBench(testCtx(t), o); err != nil {
		t.Fatal(err)
	}
	var rep benchReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("bad JSON: %v\n%s", err, out.String())
	}
	return rep
}

func checkResult(t *testing.T, r benchResult, config string, batch int) {
	t.Helper()
	if r.Config != config || r.Batch != batch {
		t.Errorf("result %+v, want config %q batch %d", r, config, batch)
	}
	if r.Images <= 0 || r.Images%int64(batch) != 0 || r.Seconds <= 0 || r.ImagesPerSec <= 0 || r.MsPerBatch <= 0 || r.GFLOPPerSec <= 0 {
		t.Errorf("%s batch %d: non-positive or partial numbers: %+v", config, batch, r)
	}
	if got := float64(r.Images) / r.Seconds; math.Abs(got-r.ImagesPerSec) > 1e-6*got {
		t.Errorf("images/s %g is not images/seconds %g", r.ImagesPerSec, got)
	}
	if got := r.Seconds * 1000 / float64(r.Images/int64(batch)); math.Abs(got-r.MsPerBatch) > 1e-6*got {
		t.Errorf("ms/batch %g, want %g", r.MsPerBatch, got)
	}
}

func TestRunBenchEngine(t *testing.T) {
	for _, input := range []string{"pixels", "images"} {
		rep := benchJSON(t, benchOptions{BatchSizes: []int{1, 3}, Input: input})
		if rep.Model.ImageSize != 32 || rep.Model.EmbedDim != 16 || rep.Model.GELU != "quick" || !strings.HasPrefix(rep.Engine, "cpu 1 thread") {
			t.Errorf("%s: report header %+v", input, rep)
		}
		if len(rep.Results) != 2 {
			t.Fatalf("%s: %d results, want 2 (batch 1 and 3)", input, len(rep.Results))
		}
		checkResult(t, rep.Results[0], input, 1)
		checkResult(t, rep.Results[1], input, 3)
		if rep.Pipeline != nil || rep.Results[0].EngineBusy != 0 {
			t.Errorf("%s: pipeline fields in an engine-only run", input)
		}
	}
}

func TestVitGFLOP(t *testing.T) {
	b32 := engine.ModelInfo{ImageSize: 224, PatchSize: 32, Width: 768, Layers: 12, Heads: 12, MLPWidth: 3072, EmbedDim: 512}
	// open_clip's docs/model_profile.csv: ViT-B-32 image GFLOPs 4.41 multiply-adds = 8.82 GFLOP.
	if g := vitGFLOP(b32); math.Abs(g-8.82) > 0.05 {
		t.Errorf("B/32: %.3f GFLOP per image, want ~8.82", g)
	}
}

func TestRunBenchPipeline(t *testing.T) {
	for _, mode := range []decode.Mode{decode.Exact, decode.Fast} {
		rep := benchJSON(t, benchOptions{BatchSizes: []int{4}, PipelineDir: "../../internal/pipeline/decode/testdata", DecodeWorkers: 2, Preprocess: mode})
		p := rep.Pipeline
		if p == nil || p.Files < 10 || p.Bytes <= 0 || p.DecodeWorkers != 2 || p.Preprocess != mode.String() {
			t.Fatalf("%s: pipeline setup %+v", mode, p)
		}
		if len(rep.Results) != 1 {
			t.Fatalf("%s: %d results", mode, len(rep.Results))
		}
		// The timed run is a whole embed: at least one pass over the files, every one embedded.
		r := rep.Results[0]
		if r.Config != "pipeline "+mode.String()+" 2 decoders" || r.Batch != 4 || r.Images < int64(p.Files) {
			t.Errorf("%s: result %+v", mode, r)
		}
		if r.Seconds <= 0 || r.ImagesPerSec <= 0 || r.MsPerBatch <= 0 || r.GFLOPPerSec <= 0 {
			t.Errorf("%s: non-positive numbers: %+v", mode, r)
		}
		if got := float64(r.Images) / r.Seconds; math.Abs(got-r.ImagesPerSec) > 1e-6*got {
			t.Errorf("images/s %g is not images/seconds %g", r.ImagesPerSec, got)
		}
		if r.DecodeMsPerImage <= 0 || r.EngineMsPerBatch <= 0 || r.EngineMsPerBatch > r.MsPerBatch || r.EngineBusy <= 0 || r.EngineBusy > 1 {
			t.Errorf("%s: stage times %+v", mode, r)
		}
	}
}

func TestRunBenchText(t *testing.T) {
	var out bytes.Buffer
	err := runBench(testCtx(t), benchOptions{Weights: tinyModel, Backend: engine.BackendCPU, Threads: 1, BatchSizes: []int{2},
		Duration: 50 * time.Millisecond, PipelineDir: "../../internal/pipeline/decode/testdata", Stdout: &out, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"engine:  cpu 1 thread", "load average", "config", "images/s", "ms/batch", "GFLOP/s", "pipeline exact", "engine busy"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}

func TestRunBenchErrors(t *testing.T) {
	ctx := testCtx(t)
	o := benchOptions{Weights: tinyModel, Backend: engine.BackendCPU, Threads: 1, BatchSizes: []int{1}, Duration: time.Millisecond, Stdout: &bytes.Buffer{}}
	bad := o
	bad.Input = "video"
	if err := runBench(ctx, bad); exitCode(err) != exitUsage {
		t.Errorf("--input video: %v (exit %d), want a usage error", err, exitCode(err))
	}
	bad = o
	bad.PipelineDir = t.TempDir()
	if err := runBench(ctx, bad); err == nil || exitCode(err) != exitInput || !strings.Contains(err.Error(), "no decodable") {
		t.Errorf("empty --pipeline dir: %v (exit %d)", err, exitCode(err))
	}
	bad = o
	bad.Weights = t.TempDir() + "/missing.safetensors"
	if err := runBench(ctx, bad); err == nil || exitCode(err) != exitInput {
		t.Errorf("missing weights: %v (exit %d)", err, exitCode(err))
	}
	if _, err := parseBatchSizes([]string{"8,32", "4"}); err != nil {
		t.Error(err)
	}
	if got, _ := parseBatchSizes([]string{"8, 32", "4"}); len(got) != 3 || got[0] != 8 || got[1] != 32 || got[2] != 4 {
		t.Errorf("parseBatchSizes: %v", got)
	}
	for _, v := range []string{"0", "x", "-3", ""} {
		if _, err := parseBatchSizes([]string{v}); err == nil {
			t.Errorf("--batch-size %q accepted", v)
		}
	}
	if _, err := parsePrecision("fp8"); !errors.As(err, new(*usageError)) {
		t.Errorf("--precision fp8: %v", err)
	}
	// Through the CLI: a bad flag value is exit code 2 with a one-line message.
	var stderr bytes.Buffer
	if code := run(ctx, []string{"clipd", "bench", "--weights", tinyModel, "--batch-size", "0"}, &bytes.Buffer{}, &stderr); code != exitUsage ||
		!strings.Contains(stderr.String(), "--batch-size") {
		t.Errorf("clipd bench --batch-size 0: exit %d, %q", code, stderr.String())
	}
}

func TestBenchCommandCLI(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(testCtx(t), []string{"clipd", "bench", "--weights", tinyModel, "--backend", "cpu", "--threads", "1",
		"--batch-size", "2,4", "--duration", "0.05", "--input", "images", "--json"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var rep benchReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil || len(rep.Results) != 2 || rep.Results[1].Batch != 4 {
		t.Fatalf("JSON %v: %s", err, stdout.String())
	}
}

// With JPEGs decoded inside the engine (forced on the CPU backend by the hidden flag's hook),
// the result says so: the JPEGs' decode time is inside the engine's, and the CPU decode time
// per image covers only the images the decoders saw (the fixtures' PNG, GIF, WebP, BMP).
func TestRunBenchPipelineEngineDecodes(t *testing.T) {
	rep := benchJSON(t, benchOptions{BatchSizes: []int{4}, PipelineDir: "../../internal/pipeline/decode/testdata", DecodeWorkers: 2, EngineDecodesOnCPU: true})
	r := rep.Results[0]
	if r.Config != "pipeline exact 2 decoders, JPEGs in the engine" || r.Decode != "engine (cpu)" {
		t.Fatalf("result %+v", r)
	}
	if r.EngineDecoded <= 0 || r.EngineDecoded >= r.Images || r.DecodeMsPerImage <= 0 || r.EngineBusy <= 0 || r.EngineBusy > 1 {
		t.Fatalf("stage numbers %+v: want some of %d images decoded by the engine, the rest by the CPU decoders", r, r.Images)
	}
}
