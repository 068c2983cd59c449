// Package sinktest writes clipd output files the way clipd embed does (through the sink), for
// the tests of the packages that read them (merge, export, the CLI).
package sinktest

import (
	"testing"

	"github.com/clipd/clipd/internal/pipeline/item"
	"github.com/clipd/clipd/internal/pipeline/outfile"
	"github.com/clipd/clipd/internal/pipeline/sink"
)

// Row is one input row of a test run: an embedding (and, when attrs has a TextColumn, its
// text embedding), or, when Fail is not "", a failure of stage "fetch" with that reason.
type Row struct {
	Item          item.Item
	Embedding     []float32
	TextEmbedding []float32
	Fail          string
}

// WriteRun writes dir/Images_Embedded.h5 from rows, in chunk files of chunk rows then
// finalized, with image ids when ids; it returns the final file's path.
func WriteRun(t testing.TB, dir string, attrs outfile.Attrs, ids bool, chunk int, rows []Row) string {
	t.Helper()
	w, err := sink.Open(sink.Options{Dir: dir, ChunkSize: chunk, Attrs: attrs, HasImageIDs: ids})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Fail != "" {
			err = w.AddFailure(item.Failure{Item: r.Item, Stage: "fetch", Reason: r.Fail})
		} else {
			err = w.Add(sink.Row{Item: r.Item, Embedding: r.Embedding, TextEmbedding: r.TextEmbedding})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	p, err := sink.Finalize(dir, attrs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
