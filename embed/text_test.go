// text_test.go: Run with a text column on a parquet list of local images and two CPU engines
// (Hooks.CPUEngines): each row of text_embeddings is the engine's embedding of its row's
// caption, whichever engine ran its batch; a null caption embeds "".
package embed_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/embed"
)

type captionRow struct {
	URL     string  `parquet:"url"`
	Caption *string `parquet:"caption,optional"`
}

func TestTextColumnParquetTwoEngines(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("needs Debian's /usr/bin/python3 with torch, h5py and python3-regex (make deps)")
	}
	model := filepath.Join(t.TempDir(), "model")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if b, err := exec.CommandContext(ctx, "/usr/bin/python3", "../cmd/clipd/testdata/text_model.py", "make", model).CombinedOutput(); err != nil {
		t.Fatalf("text_model.py: %v\n%s", err, b)
	}
	abs, _ := filepath.Abs(imagesDir)
	var rows []captionRow
	captions := map[string]string{}
	for i := range 17 {
		p := filepath.Join(abs, fmt.Sprintf("img_%02d.jpg", i))
		r := captionRow{URL: p}
		if i%6 != 2 {
			c := fmt.Sprintf("caption %d: a photo of %d dogs", i, i)
			r.Caption = &c
			captions[p] = c
		} else {
			captions[p] = ""
		}
		rows = append(rows, r)
	}
	list := filepath.Join(t.TempDir(), "list.parquet")
	if err := parquet.WriteFile(list, rows); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cfg := config(list, out)
	cfg.Weights, cfg.TextColumn, cfg.BatchSize, cfg.Hooks.CPUEngines = model, "caption", 3, 2
	sum, err := embed.Run(testCtx(t), cfg, embed.Events{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rows != 17 || sum.Text == nil || sum.Text.Texts != 17 || sum.Text.Empty != 3 || len(sum.Stages.Engines) != 2 {
		t.Fatalf("summary: %d rows, text %+v, engines %+v", sum.Rows, sum.Text, sum.Stages.Engines)
	}
	busy := 0
	for _, e := range sum.Stages.Engines {
		if e.Batches > 0 {
			busy++
		}
	}
	const py = `
import sys, json, h5py
f = h5py.File(sys.argv[1], "r")
json.dump({"urls": list(f["urls"].asstr()[:]), "text": f["text_embeddings"][:].astype("float64").tolist()}, sys.stdout)
`
	b, err := exec.CommandContext(testCtx(t), "/usr/bin/python3", "-c", py, sum.Output).Output()
	if err != nil {
		t.Fatalf("h5py: %v", err)
	}
	var got struct {
		URLs []string    `json:"urls"`
		Text [][]float64 `json:"text"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(engine.Options{WeightsPath: model, Backend: engine.BackendCPU, Threads: 1, MaxBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	tok, err := engine.OpenTokenizer(model)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	ti, err := e.TextInfo()
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range got.URLs {
		ids, _, err := tok.Tokenize(captions[u], ti.ContextLength)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, ti.EmbedDim)
		if err := e.EmbedTokens(ids, 1, want); err != nil {
			t.Fatal(err)
		}
		for j := range want {
			if math.Abs(got.Text[i][j]-float64(want[j])) > 1e-5*(1+math.Abs(float64(want[j]))) {
				t.Fatalf("row %d (%s, %q): text embedding %v, want %v", i, filepath.Base(u), captions[u], got.Text[i][:4], want[:4])
			}
		}
	}
	if busy < 2 {
		t.Logf("only %d of 2 engines ran a batch (the rows were checked all the same)", busy)
	}

	// A text column with spaces around it, or two of them: refused before anything runs.
	cfg.TextColumn = " caption"
	if _, err := embed.Run(testCtx(t), cfg, embed.Events{}); !errors.Is(err, embed.ErrConfig) {
		t.Errorf("--text-column %q: %v", cfg.TextColumn, err)
	}
}
