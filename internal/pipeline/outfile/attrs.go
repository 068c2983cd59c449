// attrs.go: the root attributes of every file clipd writes, and the dtype they name.
package outfile

import (
	"fmt"
	"strings"
	"time"

	"github.com/clipd/clipd/internal/cgo/h5"
)

// Attrs are the root attributes of every file clipd writes. Besides the model and the format
// they hold the run's identity: what was read (Input, its resolved location, and
// InputFingerprint) and which part of it (Shard, Limit, URLKind), so that a finished file
// knows what run made it.
type Attrs struct {
	Model, WeightsSHA256, Preprocess, Version, Input string
	EmbedDim                                         int
	Normalized                                       bool
	Dtype                                            string // "float32" or "float16"

	InputFingerprint string   // e.g. "sha256:<hex> size:<n>"; "" when the input cannot be fingerprinted
	Shard            string   // "i/n"; "0/1" for the whole input; "i,j,k/n" for a merge of some shards (ParseShards)
	Limit            int64    // rows of the shard asked for; 0 = all
	URLKind          string   // openimages inputs: original, thumbnail or mirror
	Columns          []string // input columns saved with each row (datasets named by SavedName)
	IgnoreOptOut     bool     // images whose server opted out (X-Robots-Tag noai, ...) were fetched anyway
	// TextColumn is the input column whose text each row's text_embeddings holds the
	// embedding of; "" when the file has no text embeddings.
	TextColumn string
	// TokenizerSHA256 identifies the tokenizer the texts were tokenized with: the sha256 of
	// its vocab.json and merges.txt (TokenizerHash); "" without text embeddings.
	TokenizerSHA256 string
}

// Kind is the element kind of the embeddings Dtype names ("" is float32).
func (a Attrs) Kind() (h5.Kind, error) {
	switch a.Dtype {
	case "float32", "":
		return h5.Float32, nil
	case "float16":
		return h5.Float16, nil
	}
	return 0, fmt.Errorf("dtype %q: want float32 or float16", a.Dtype)
}

func writeAttrs(f *h5.File, a Attrs) error {
	dtype := a.Dtype
	if dtype == "" {
		dtype = "float32"
	}
	shard := a.Shard
	if shard == "" {
		shard = "0/1"
	}
	for _, kv := range []struct {
		k string
		v any
	}{
		{"model", a.Model}, {"weights_sha256", a.WeightsSHA256}, {"embed_dim", a.EmbedDim},
		{"normalized", a.Normalized}, {"dtype", dtype}, {"preprocess", a.Preprocess},
		{"clipd_version", a.Version}, {"created", time.Now().UTC().Format(time.RFC3339)}, {"input", a.Input},
		{"input_fingerprint", a.InputFingerprint}, {"shard", shard}, {"limit", a.Limit}, {"url_kind", a.URLKind},
		{"saved_columns", strings.Join(a.Columns, ",")}, {"ignore_opt_out", a.IgnoreOptOut},
	} {
		if err := f.SetAttr(kv.k, kv.v); err != nil {
			return err
		}
	}
	if a.TextColumn == "" { // files without text embeddings keep the attributes they always had
		return nil
	}
	if err := f.SetAttr("text_column", a.TextColumn); err != nil {
		return err
	}
	return f.SetAttr("tokenizer_sha256", a.TokenizerSHA256)
}

// ReadAttrs reads the attributes clipd writes; missing ones stay zero. Errors are ErrInput.
func ReadAttrs(f *h5.File) (Attrs, error) {
	list, err := f.Attrs()
	if err != nil {
		return Attrs{}, WrapRead(f.Path(), err)
	}
	var a Attrs
	for _, x := range list {
		s, _ := x.Value.(string)
		switch x.Name {
		case "model":
			a.Model = s
		case "weights_sha256":
			a.WeightsSHA256 = s
		case "preprocess":
			a.Preprocess = s
		case "clipd_version":
			a.Version = s
		case "input":
			a.Input = s
		case "dtype":
			a.Dtype = s
		case "input_fingerprint":
			a.InputFingerprint = s
		case "shard":
			a.Shard = s
		case "url_kind":
			a.URLKind = s
		case "text_column":
			a.TextColumn = s
		case "tokenizer_sha256":
			a.TokenizerSHA256 = s
		case "saved_columns":
			if s != "" {
				a.Columns = strings.Split(s, ",")
			}
		case "limit":
			if v, ok := x.Value.(int64); ok {
				a.Limit = v
			}
		case "embed_dim":
			if v, ok := x.Value.(int64); ok {
				a.EmbedDim = int(v)
			}
		case "normalized":
			if v, ok := x.Value.(bool); ok {
				a.Normalized = v
			}
		case "ignore_opt_out":
			if v, ok := x.Value.(bool); ok {
				a.IgnoreOptOut = v
			}
		}
	}
	return a, nil
}
