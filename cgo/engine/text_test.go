// text_test.go: the text tower through the Go binding, on the committed whole-model goldens
// (testdata/golden_text, made by tests/reference/make_golden.py): TextInfo and ProbeText equal
// the config the golden was written with, EmbedTokens equals PyTorch's encode_text, the
// errors (ids outside the vocabulary, short buffers, n > MaxBatch, no text tower) are typed.

package engine

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/vecmath"
)

const textGoldenRoot = "../../testdata/golden_text"

type textGolden struct {
	dir      string
	tokens   []int32
	n, ctx   int
	expected []float32
	want     TextInfo
}

func textGoldens(t *testing.T) []textGolden {
	dirs, _ := filepath.Glob(filepath.Join(textGoldenRoot, "*", "expected_text.npy"))
	if len(dirs) < 2 {
		t.Fatalf("want 2 text goldens under %s, found %d (run tests/reference/make_golden.py text)", textGoldenRoot, len(dirs))
	}
	var out []textGolden
	for _, p := range dirs {
		dir := filepath.Dir(p)
		tokens, tshape := readNPYInt32(t, filepath.Join(dir, "tokens.npy"))
		expected, _ := readNPY(t, p)
		b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
		if err != nil {
			t.Fatal(err)
		}
		var meta struct {
			TextConfig struct {
				ContextLength int     `json:"context_length"`
				VocabSize     int     `json:"vocab_size"`
				Width         int     `json:"width"`
				Layers        int     `json:"layers"`
				Heads         int     `json:"heads"`
				EmbedDim      int     `json:"embed_dim"`
				QuickGELU     bool    `json:"quick_gelu"`
				LnEps         float64 `json:"ln_eps"`
			} `json:"text_config"`
		}
		if err := json.Unmarshal(b, &meta); err != nil {
			t.Fatal(err)
		}
		c := meta.TextConfig
		out = append(out, textGolden{dir: dir, tokens: tokens, n: tshape[0], ctx: tshape[1], expected: expected,
			want: TextInfo{ContextLength: c.ContextLength, VocabSize: c.VocabSize, Width: c.Width, Layers: c.Layers,
				Heads: c.Heads, EmbedDim: c.EmbedDim, QuickGELU: c.QuickGELU}})
	}
	return out
}

func TestEmbedTokensMatchesGolden(t *testing.T) {
	for _, g := range textGoldens(t) {
		t.Run(filepath.Base(g.dir), func(t *testing.T) {
			probed, err := ProbeText(g.dir)
			if err != nil || probed != g.want {
				t.Fatalf("ProbeText = %+v, %v; want %+v", probed, err, g.want)
			}
			e, err := Open(Options{WeightsPath: g.dir, Backend: BackendCPU, Threads: 2, MaxBatch: g.n})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			ti, err := e.TextInfo()
			if err != nil || ti != g.want {
				t.Fatalf("TextInfo = %+v, %v; want %+v", ti, err, g.want)
			}
			got := make([]float32, g.n*ti.EmbedDim)
			if err := e.EmbedTokens(g.tokens, g.n, got); err != nil {
				t.Fatal(err)
			}
			if c, i := vecmath.MinCosine(got, g.expected, ti.EmbedDim); !(c >= 0.99999) {
				t.Errorf("sequence %d: cosine %.7f < 0.99999", i, c)
			}
			// one sequence alone equals it in the batch
			one := make([]float32, ti.EmbedDim)
			if err := e.EmbedTokens(g.tokens[g.ctx:2*g.ctx], 1, one); err != nil {
				t.Fatal(err)
			}
			if c, _ := vecmath.MinCosine(one, got[ti.EmbedDim:2*ti.EmbedDim], ti.EmbedDim); !(c >= 0.9999999) {
				t.Errorf("sequence 1 alone: cosine %.9f to it in the batch", c)
			}
		})
	}
}

func TestEmbedTokensErrors(t *testing.T) {
	g := textGoldens(t)[0]
	e, err := Open(Options{WeightsPath: g.dir, Backend: BackendCPU, Threads: 1, MaxBatch: g.n})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, (g.n+1)*g.want.EmbedDim)

	bad := append([]int32(nil), g.tokens...)
	bad[g.ctx+1] = int32(g.want.VocabSize)
	err = e.EmbedTokens(bad, g.n, out)
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "sequence 1 position 1") {
		t.Errorf("id = vocab size: %v", err)
	}
	if err := e.EmbedTokens(g.tokens[:g.ctx*g.n-1], g.n, out); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("short tokens: %v", err)
	}
	if err := e.EmbedTokens(g.tokens, g.n, out[:1]); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("short out: %v", err)
	}
	more := append(append([]int32(nil), g.tokens...), g.tokens[:g.ctx]...)
	if err := e.EmbedTokens(more, g.n+1, out); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "max_batch") {
		t.Errorf("n > MaxBatch: %v", err)
	}
	if err := e.EmbedTokens(nil, 0, nil); err != nil {
		t.Errorf("n = 0: %v", err)
	}
	e.Close()
	if err := e.EmbedTokens(g.tokens, g.n, out); !errors.Is(err, ErrClosed) {
		t.Errorf("closed engine: %v", err)
	}
	if _, err := e.TextInfo(); !errors.Is(err, ErrClosed) {
		t.Errorf("closed engine TextInfo: %v", err)
	}
}

// A vision-only file opens and embeds images; its text calls say it has no text tower.
func TestNoTextTower(t *testing.T) {
	dir := goldens(t)[0]
	if _, err := ProbeText(dir); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "no text tower") {
		t.Errorf("ProbeText of a vision-only file: %v", err)
	}
	e, err := Open(Options{WeightsPath: dir, Backend: BackendCPU, Threads: 1, MaxBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.TextInfo(); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "no text tower") {
		t.Errorf("TextInfo: %v", err)
	}
	out := make([]float32, e.Info().EmbedDim)
	if err := e.EmbedTokens([]int32{1, 2, 3}, 1, out); !errors.Is(err, ErrUnsupported) {
		t.Errorf("EmbedTokens: %v", err)
	}
}
