// cmd_weights_test.go: `clipd weights fetch` and `inspect` through runWeightsFetch and
// runWeightsInspect, against a fake hub on 127.0.0.1 and the committed tiny models.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/weights"
	"github.com/clipd/clipd/weights/weightstest"
)

const golden = "../../testdata/golden"

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// tinyHub serves acme/tiny at revision v1: the tiny OpenAI-named model and its
// open_clip_config.json.
func tinyHub(t *testing.T) (*weightstest.Hub, []byte) {
	model := readFile(t, filepath.Join(golden, "tiny_openai_quick_f32", "model.safetensors"))
	hub := weightstest.NewHub(t, map[string]*weightstest.Repo{
		"acme/tiny": {Revision: "v1", Files: map[string][]byte{
			"model.safetensors":     model,
			"open_clip_config.json": readFile(t, filepath.Join(golden, "tiny_openai_quick_f32", "open_clip_config.json")),
		}},
	})
	return hub, model
}

var quietLogger = slog.New(slog.DiscardHandler)

func TestRunWeightsFetchThenInspect(t *testing.T) {
	hub, model := tinyHub(t)
	cache := t.TempDir()
	var out bytes.Buffer
	err := runWeightsFetch(testCtx(t), weightsFetchOptions{Stdout: &out, FetchOptions: weights.FetchOptions{
		Name: "acme/tiny", Revision: "v1", CacheDir: cache, Endpoint: hub.URL,
		Logger: quietLogger, RetryBackoff: time.Millisecond,
	}})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cache, "weights", "acme", "tiny")
	if out.String() != dir+"\n" {
		t.Fatalf("stdout %q, want the directory %s", out.String(), dir)
	}

	out.Reset()
	if err := runWeightsInspect(testCtx(t), weightsInspectOptions{Path: "acme/tiny", CacheDir: cache, Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		"file:     " + filepath.Join(dir, "model.safetensors") + " (101.0 kB)",
		"sha256:   " + weightstest.SHA256(model) + " (recorded)",
		"source:   " + hub.URL + "/acme/tiny/resolve/v1/model.safetensors (commit " + weightstest.Commit + ")",
		"verified against: hub",
		"naming:   OpenAI/open_clip (visual.*)\n",
		"tensors:  32 (F32 32), 24,448 parameters",
		"config:   open_clip_config.json",
		"model:    image 32, patch 8, width 32, layers 2, heads 2, mlp 64, embed 16, QuickGELU",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, text)
		}
	}
}

// TestRunWeightsInspectGolden checks the config inspect reports against the one each
// committed model was made with (its meta.json).
func TestRunWeightsInspectGolden(t *testing.T) {
	for _, name := range []string{"tiny_openai_quick_f32", "tiny_openai_noconfig_f16", "tiny_hf_erf_f16"} {
		var meta struct {
			Config struct {
				EmbedDim  int  `json:"embed_dim"`
				Heads     int  `json:"heads"`
				ImageSize int  `json:"image_size"`
				Layers    int  `json:"layers"`
				MLPWidth  int  `json:"mlp_width"`
				PatchSize int  `json:"patch_size"`
				QuickGELU bool `json:"quick_gelu"`
				Width     int  `json:"width"`
			} `json:"config"`
			Naming string `json:"naming"`
		}
		if err := json.Unmarshal(readFile(t, filepath.Join(golden, name, "meta.json")), &meta); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := runWeightsInspect(testCtx(t), weightsInspectOptions{Path: filepath.Join(golden, name), JSON: true, Stdout: &out}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var r inspectReport
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out.String())
		}
		c := meta.Config
		gelu := map[bool]string{true: "quick", false: "erf"}[c.QuickGELU]
		want := modelConfig{ImageSize: c.ImageSize, PatchSize: c.PatchSize, Width: c.Width, Layers: c.Layers,
			Heads: c.Heads, MLPWidth: c.MLPWidth, EmbedDim: c.EmbedDim, GELU: gelu}
		if r.Model == nil || *r.Model != want {
			t.Errorf("%s: model %+v, want %+v", name, r.Model, want)
		}
		if string(r.Naming) != meta.Naming || r.SHA256 != "" || r.Tensors == 0 || r.Params == 0 {
			t.Errorf("%s: report %+v", name, r)
		}
	}
}

func TestRunWeightsInspectHeaderOnly(t *testing.T) {
	var out bytes.Buffer
	err := runWeightsInspect(testCtx(t), weightsInspectOptions{Path: filepath.Join(golden, "tiny_hf_erf_f16", "model.safetensors"), JSON: true, NoEngine: true, Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	var r inspectReport
	json.Unmarshal(out.Bytes(), &r)
	if r.Model != nil || r.Naming != weights.NamingHF || r.ConfigFile != "config.json" || r.DTypes["F16"] != 40 {
		t.Fatalf("report %+v", r)
	}
}

// safetensorsFile writes a valid safetensors file holding one F32 tensor.
func safetensorsFile(t *testing.T, dir, tensor string) string {
	header := `{"` + tensor + `":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(header)))
	b.WriteString(header)
	b.Write(make([]byte, 8))
	p := filepath.Join(dir, "model.safetensors")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunWeightsInspectBadWeights(t *testing.T) {
	// A valid safetensors file that is not a CLIP vision tower: the header summary is
	// printed, the engine's refusal is reported and returned.
	p := safetensorsFile(t, t.TempDir(), "visual.proj")
	var out bytes.Buffer
	err := runWeightsInspect(testCtx(t), weightsInspectOptions{Path: p, Stdout: &out})
	if !errors.Is(err, engine.ErrBadWeights) || exitCode(err) != exitBadWeights {
		t.Fatalf("err = %v (exit %d), want engine.ErrBadWeights (exit 4)", err, exitCode(err))
	}
	if !strings.Contains(out.String(), "tensors:  1 (F32 1), 2 parameters") || !strings.Contains(out.String(), "the engine cannot load these weights") {
		t.Fatalf("output:\n%s", out.String())
	}

	// Not a safetensors file at all.
	bad := filepath.Join(t.TempDir(), "model.safetensors")
	os.WriteFile(bad, []byte("PK\x03\x04 a zip, not safetensors"), 0o644)
	err = runWeightsInspect(testCtx(t), weightsInspectOptions{Path: bad, Stdout: io.Discard})
	if !errors.Is(err, weights.ErrBadWeights) || exitCode(err) != exitBadWeights {
		t.Fatalf("err = %v, want weights.ErrBadWeights", err)
	}
}

func TestRunWeightsFetchErrors(t *testing.T) {
	hub, _ := tinyHub(t)
	cache := t.TempDir()
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, nil, 0o644)
	for _, c := range []struct {
		o    weights.FetchOptions
		code int
		want string
	}{
		{weights.FetchOptions{Name: "acme/tiny", Revision: "main"}, exitInput, "--revision"},
		{weights.FetchOptions{Name: "acme/tiny", Revision: "v1", SHA256: strings.Repeat("0", 64)}, exitBadWeights, "--sha256"},
		{weights.FetchOptions{Name: "acme/tiny", Revision: "v1", SHA256: "xyz"}, exitUsage, "64 hex digits"},
		{weights.FetchOptions{Name: "acme/tiny", Revision: "v1", CacheDir: notDir}, exitOutput, "cannot create the cache directory"},
		{weights.FetchOptions{Name: "http://example.com/w.safetensors"}, exitUsage, "https"},
	} {
		if c.o.CacheDir == "" {
			c.o.CacheDir = cache
		}
		c.o.Endpoint, c.o.Logger, c.o.RetryBackoff = hub.URL, quietLogger, time.Millisecond
		err := runWeightsFetch(testCtx(t), weightsFetchOptions{FetchOptions: c.o, Stdout: io.Discard})
		if err == nil || exitCode(err) != c.code || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v (exit %d), want exit %d mentioning %q", c.o, err, exitCode(err), c.code, c.want)
		}
	}
}

func TestExitCodeMapping(t *testing.T) {
	for _, c := range []struct {
		err  error
		code int
	}{
		{nil, exitOK},
		{errors.New("boom"), exitFailure},
		{usageErrorf("bad flag"), exitUsage},
		{context.Canceled, exitInterrupted},
		{&engine.Error{Status: engine.StatusBadWeights, Op: "open engine"}, exitBadWeights},
		{&engine.Error{Status: engine.StatusIO, Op: "open engine"}, exitInput},
		{&engine.Error{Status: engine.StatusBackend, Op: "embed"}, exitFailure},
	} {
		if got := exitCode(c.err); got != c.code {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.code)
		}
	}
	// The weights package's kinds, through real errors.
	_, err := weights.Resolve("acme/none", t.TempDir())
	if exitCode(err) != exitInput {
		t.Errorf("missing cache entry: exit %d", exitCode(err))
	}
	if errorLine(errors.New("a\nb  c\n")) != "a; b c" {
		t.Errorf("errorLine = %q", errorLine(errors.New("a\nb  c\n")))
	}
}

// TestWeightsFetchOffline: with no network (a host that never resolves, RFC 2606; a closed
// port), fetch gives up after a few quick tries, exits 1 (a network failure) and prints
// one line that says how to go on without the network; the cache holds nothing after it
// that a later command reads as an interrupted download.
func TestWeightsFetchOffline(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	for _, endpoint := range []string{"https://hub.invalid", closed} {
		cache := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var out, errb bytes.Buffer
		code := run(ctx, []string{"clipd", "weights", "fetch", "--cache-dir", cache, "--hf-endpoint", endpoint}, &out, &errb)
		cancel()
		if code != exitFailure {
			t.Errorf("%s: exit %d, want %d\n%s", endpoint, code, exitFailure, errb.String())
		}
		dir := filepath.Join(cache, "weights", filepath.FromSlash(weights.DefaultModel))
		lines := strings.Split(strings.TrimSuffix(errb.String(), "\n"), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "clipd: weights: cannot reach ") ||
			!strings.Contains(lines[0], "--weights PATH") || !strings.Contains(lines[0], dir) || out.Len() != 0 {
			t.Errorf("%s: stderr is not the one line that says what to do:\n%s", endpoint, errb.String())
		}
		t.Logf("%s", lines[0])
		_, err := weights.Resolve("", cache)
		if exitCode(err) != exitInput || strings.Contains(err.Error(), "interrupted") || !strings.Contains(err.Error(), "--weights PATH") {
			t.Errorf("%s: after the failed fetch, Resolve says %v", endpoint, err)
		}
	}
}

// TestWeightsInspectAdoptsHandPlaced: a model copied into the default model's cache folder
// by hand is adopted by inspect with no server anywhere: checked, hashed and recorded.
func TestWeightsInspectAdoptsHandPlaced(t *testing.T) {
	cache := t.TempDir()
	dir := filepath.Join(cache, "weights", filepath.FromSlash(weights.DefaultModel))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	model := readFile(t, filepath.Join(golden, "tiny_hf_erf_f16", "model.safetensors"))
	os.WriteFile(filepath.Join(dir, "model.safetensors"), model, 0o644)
	os.WriteFile(filepath.Join(dir, "config.json"), readFile(t, filepath.Join(golden, "tiny_hf_erf_f16", "config.json")), 0o644)

	var out bytes.Buffer
	if err := runWeightsInspect(testCtx(t), weightsInspectOptions{CacheDir: cache, Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"file:     " + filepath.Join(dir, "model.safetensors"),
		"sha256:   " + weightstest.SHA256(model) + " (recorded)",
		"source:   placed in the cache by hand, adopted ",
		"naming:   Hugging Face (vision_model.*)",
		"config:   config.json",
		"model:    image ",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out.String())
		}
	}
	if m, err := weights.ReadManifest(dir); err != nil || !m.Adopted || m.SHA256 != weightstest.SHA256(model) {
		t.Fatalf("manifest %+v, %v", m, err)
	}
}
