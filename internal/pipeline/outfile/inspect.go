// inspect.go: Inspect summarises an output file: sizes, attributes, failures by reason and
// the first rows, reading only what it shows (failure reasons are streamed).
package outfile

import (
	"context"
	"encoding/binary"
	"math"
	"sort"
	"strings"

	"github.com/clipd/clipd/internal/cgo/h5"
)

// Info is what `clipd inspect` shows.
type Info struct {
	Path             string         `json:"path"`
	Rows             int64          `json:"rows"`
	Dim              int            `json:"embed_dim"`
	Dtype            string         `json:"dtype"`
	Failures         int64          `json:"failures"`
	FailuresByReason []ReasonCount  `json:"failures_by_reason"`
	Attrs            map[string]any `json:"attributes"`
	Datasets         []string       `json:"datasets"`
	TextColumn       string         `json:"text_column,omitempty"` // the input column text_embeddings embeds; "" when the file has none
	Inputs           []InputEntry   `json:"inputs,omitempty"`      // merged files of several inputs
	First            []InfoRow      `json:"first_rows"`
}

// ReasonCount is how many failures have one reason.
type ReasonCount struct {
	Reason string `json:"reason"`
	Count  int64  `json:"count"`
}

// InfoRow is one row: its URL, image id and the first values of its embedding.
type InfoRow struct {
	URL       string    `json:"url"`
	ImageID   string    `json:"image_id,omitempty"`
	Embedding []float32 `json:"embedding_head"`
	// TextEmbedding is the first values of the row's text embedding (files with text_embeddings).
	TextEmbedding []float32 `json:"text_embedding_head,omitempty"`
}

// Inspect reads path's summary and its first n rows (headValues values of each), checking
// every dataset it reads against the others and the file's size first, reading in blocks of
// ReadRows, and stopping when ctx ends (ctx's error). Errors are ErrInput and one line:
// "PATH: not an HDF5 file (or unreadable); give a clipd output file", "PATH: urls has 3
// rows, embeddings has 5: the file is damaged", ...
func Inspect(ctx context.Context, path string, n, headValues int) (*Info, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info := &Info{Path: path, Attrs: map[string]any{}}
	attrs, err := f.Attrs()
	if err != nil {
		return nil, WrapRead(path, err)
	}
	for _, a := range attrs {
		info.Attrs[a.Name] = a.Value
	}
	names := []string{"urls", "embeddings", TextEmbeddings, "image_ids", "lines", "seqs", "widths", "heights", "failed_urls", "failed_reasons", "failed_stages", "failed_image_ids", "failed_lines", "failed_seqs",
		"input_index", "failed_input_index", "inputs", "inputs_fingerprint", "inputs_shards", "inputs_limit", "inputs_url_kind"}
	if saved, ok := info.Attrs["saved_columns"].(string); ok && saved != "" {
		for _, c := range strings.Split(saved, ",") {
			names = append(names, SavedName(c))
		}
	}
	for _, name := range names {
		if ok, _ := f.Has(name); ok {
			info.Datasets = append(info.Datasets, name)
		}
	}
	if info.Inputs, err = ReadInputs(f); err != nil {
		return nil, err
	}
	if ok, err := f.Has("embeddings"); err != nil || !ok {
		return nil, InputErrorf("%s has no embeddings dataset: not a clipd output file", path)
	}
	emb, err := OpenDataset(f, "embeddings", 0)
	if err != nil {
		return nil, err
	}
	info.Rows, info.Dim, info.Dtype = emb.Rows(), emb.Cols(), emb.Kind().String()
	kind := emb.Kind()
	emb.Close()
	if info.Dim == 0 || (kind != h5.Float32 && kind != h5.Float16) {
		return nil, InputErrorf("%s: embeddings is a %d-dimensional %s dataset, want rows x dim floats: not a clipd output file", path, 1+min(info.Dim, 1), kind)
	}
	hasText, err := f.Has(TextEmbeddings)
	if err != nil {
		return nil, WrapRead(path, err)
	}
	if hasText {
		info.TextColumn, _ = info.Attrs["text_column"].(string)
	}
	// The embedded table: urls, image ids, embeddings and text embeddings must have the same
	// rows (and the text embeddings the embeddings' kind and dim).
	tf, rows, err := OpenTable(f, WithText(EmbeddedTable(true, false, kind, info.Dim), hasText), 0)
	if err != nil {
		return nil, err
	}
	defer tf.Close()
	b := tf.Table().NewBlock()
	for start := int64(0); start < min(int64(max(n, 0)), rows); start += ReadRows {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m := int(min(int64(n)-start, rows-start, ReadRows))
		if err := tf.Read(b, start, m); err != nil {
			return nil, err
		}
		vals := b.Raw[ColValues]
		for i := 0; i < m; i++ {
			r := InfoRow{URL: b.Strs[ColURLs][i], Embedding: headFloats(vals, kind, i, info.Dim, min(headValues, info.Dim))}
			if ids := b.Strs[ColIDs]; i < len(ids) {
				r.ImageID = ids[i]
			}
			if hasText {
				r.TextEmbedding = headFloats(b.Raw[ColText], kind, i, info.Dim, min(headValues, info.Dim))
			}
			info.First = append(info.First, r)
		}
	}
	hasFailed, err := f.Has("failed_urls")
	if err == nil && !hasFailed {
		hasFailed, err = f.Has("failed_reasons")
	}
	if err != nil {
		return nil, WrapRead(path, err)
	}
	if hasFailed {
		ft := FailedTable(false, false)
		ft.Cols[ColLines].Name, ft.Cols[ColStages].Name = "", "" // not read here
		tf, nf, err := OpenTable(f, ft, 0)
		if err != nil {
			return nil, err
		}
		defer tf.Close()
		info.Failures = nf
		counts := map[string]int64{}
		reasons := tf.Dataset(ColValues)
		for start := int64(0); start < nf; start += ReadRows {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			rs, err := reasons.ReadStrings(start, int(min(nf-start, ReadRows)))
			if err != nil {
				return nil, WrapRead(path, err)
			}
			for _, r := range rs {
				counts[r]++
			}
		}
		for r, c := range counts {
			info.FailuresByReason = append(info.FailuresByReason, ReasonCount{r, c})
		}
		sort.Slice(info.FailuresByReason, func(i, j int) bool {
			a, b := info.FailuresByReason[i], info.FailuresByReason[j]
			return a.Count > b.Count || a.Count == b.Count && a.Reason < b.Reason
		})
	}
	return info, nil
}

// headFloats is the first k values of row i of raw little-endian embeddings of dim values.
func headFloats(raw []byte, kind h5.Kind, i, dim, k int) []float32 {
	out := make([]float32, k)
	sz := kind.Size()
	for j := range out {
		at := (i*dim + j) * sz
		if kind == h5.Float16 {
			out[j] = h5.Float16ToFloat32(binary.LittleEndian.Uint16(raw[at:]))
		} else {
			out[j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[at:]))
		}
	}
	return out
}
