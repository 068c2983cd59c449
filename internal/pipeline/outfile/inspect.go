// inspect.go: Inspect summarises an output file: sizes, attributes, failures by reason and
// the first rows, reading only what it shows (failure reasons are streamed).
package outfile

import (
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
	Inputs           []InputEntry   `json:"inputs,omitempty"` // merged files of several inputs
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
}

// Inspect reads path's summary and its first n rows (headValues values of each). Errors
// are ErrInput: "PATH: not an HDF5 file (or unreadable); give a clipd output file".
func Inspect(path string, n, headValues int) (*Info, error) {
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
	names := []string{"urls", "embeddings", "image_ids", "lines", "seqs", "widths", "heights", "failed_urls", "failed_reasons", "failed_stages", "failed_image_ids", "failed_lines", "failed_seqs",
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
	emb, err := f.OpenDataset("embeddings", 0)
	if err != nil {
		return nil, InputErrorf("%s has no embeddings dataset: not a clipd output file", path)
	}
	defer emb.Close()
	info.Rows, info.Dim, info.Dtype = emb.Rows(), emb.Cols(), emb.Kind().String()
	n = int(min(int64(max(n, 0)), info.Rows))
	if n > 0 {
		urls, err := readStrings(f, "urls", n)
		if err != nil {
			return nil, WrapRead(path, err)
		}
		ids, _ := readStrings(f, "image_ids", n)
		vals, err := emb.ReadFloat32(0, n)
		if err != nil {
			return nil, WrapRead(path, err)
		}
		for i := 0; i < n; i++ {
			r := InfoRow{URL: urls[i], Embedding: vals[i*info.Dim : i*info.Dim+min(headValues, info.Dim)]}
			if ids != nil {
				r.ImageID = ids[i]
			}
			info.First = append(info.First, r)
		}
	}
	if ok, _ := f.Has("failed_reasons"); ok {
		d, err := f.OpenDataset("failed_reasons", 0)
		if err != nil {
			return nil, WrapRead(path, err)
		}
		defer d.Close()
		info.Failures = d.Rows()
		counts := map[string]int64{}
		for start := int64(0); start < d.Rows(); start += ReadRows {
			rs, err := d.ReadStrings(start, int(min(d.Rows()-start, ReadRows)))
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

// readStrings reads the first n strings of dataset name (nil, nil when it is missing).
func readStrings(f *h5.File, name string, n int) ([]string, error) {
	if ok, _ := f.Has(name); !ok {
		return nil, nil
	}
	d, err := f.OpenDataset(name, 0)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.ReadStrings(0, int(min(int64(n), d.Rows())))
}
