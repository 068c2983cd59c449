// inputs.go: the inputs datasets of a file merged from several inputs (one row per distinct
// input: its location, fingerprint, shards, limit and url kind; rows and failures point
// into them by input_index / failed_input_index), and the "i/n" shard sets of Attrs.Shard.
package outfile

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/clipd/clipd/internal/cgo/h5"
)

// InputEntry is one distinct input of a merged file: what Attrs says of a single run.
type InputEntry struct {
	Input       string `json:"input"`
	Fingerprint string `json:"input_fingerprint"`
	Shards      string `json:"shards"` // Attrs.Shard of the rows merged: "0/1" when all
	Limit       int64  `json:"limit"`
	URLKind     string `json:"url_kind"`
}

// The columns of the inputs table.
const (
	inInput = iota
	inFingerprint
	inShards
	inLimit
	inURLKind
)

// inputsTable: inputs, inputs_fingerprint, inputs_shards, inputs_limit, inputs_url_kind.
var inputsTable = Table{[]Column{
	{"inputs", h5.String, 0}, {"inputs_fingerprint", h5.String, 0}, {"inputs_shards", h5.String, 0},
	{"inputs_limit", h5.Int64, 0}, {"inputs_url_kind", h5.String, 0},
}}

// WriteInputs adds the inputs datasets to f, entry i at row i. Errors are ErrOutput.
func (f *File) WriteInputs(entries []InputEntry) error {
	tf, err := f.CreateTable(inputsTable, 0, max(1, len(entries)), 0)
	if err != nil {
		return err
	}
	b := tf.Pending()
	for _, e := range entries {
		b.Strs[inInput] = append(b.Strs[inInput], e.Input)
		b.Strs[inFingerprint] = append(b.Strs[inFingerprint], e.Fingerprint)
		b.Strs[inShards] = append(b.Strs[inShards], e.Shards)
		b.Ints[inLimit] = append(b.Ints[inLimit], e.Limit)
		b.Strs[inURLKind] = append(b.Strs[inURLKind], e.URLKind)
		b.N++
	}
	return tf.Flush()
}

// maxInputs bounds the inputs of a merged file (read whole): no merge joins more.
const maxInputs = 1 << 16

// ReadInputs reads f's inputs datasets; nil when f has none (a file of one input, whose
// Attrs say it all). Errors are ErrInput.
func ReadInputs(f *h5.File) ([]InputEntry, error) {
	if ok, err := f.Has("inputs"); err != nil || !ok {
		return nil, WrapRead(f.Path(), err)
	}
	tf, n, err := OpenTable(f, inputsTable, 0)
	if err != nil {
		return nil, err
	}
	defer tf.Close()
	if n > maxInputs {
		return nil, InputErrorf("%s: inputs has %d rows (at most %d): the file is damaged", f.Path(), n, maxInputs)
	}
	b := inputsTable.NewBlock()
	if err := tf.Read(b, 0, int(n)); err != nil {
		return nil, err
	}
	out := make([]InputEntry, 0, n)
	for i := 0; i < int(n); i++ {
		e := InputEntry{Input: b.Strs[inInput][i]}
		if s := b.Strs[inFingerprint]; i < len(s) {
			e.Fingerprint = s[i]
		}
		if s := b.Strs[inShards]; i < len(s) {
			e.Shards = s[i]
		}
		if s := b.Ints[inLimit]; i < len(s) {
			e.Limit = s[i]
		}
		if s := b.Strs[inURLKind]; i < len(s) {
			e.URLKind = s[i]
		}
		out = append(out, e)
	}
	return out, nil
}

// ParseShards reads a shard attribute: "i/n" (one shard), "i,j,k/n" (a merge of some of
// the n shards) or "0/1" / "" (the whole input). It returns the indices, sorted, and n.
func ParseShards(s string) ([]int, int, error) {
	if s == "" {
		return []int{0}, 1, nil
	}
	is, ns, ok := strings.Cut(s, "/")
	n, err := strconv.Atoi(ns)
	if !ok || err != nil || n < 1 {
		return nil, 0, fmt.Errorf("shard %q: want i/n", s)
	}
	var idx []int
	for _, f := range strings.Split(is, ",") {
		i, err := strconv.Atoi(f)
		if err != nil || i < 0 || i >= n {
			return nil, 0, fmt.Errorf("shard %q: want i/n with 0 <= i < n", s)
		}
		idx = append(idx, i)
	}
	slices.Sort(idx)
	return slices.Compact(idx), n, nil
}

// FormatShards is the shard attribute of the indices idx of n shards: "0/1" when idx holds
// all n (the whole input), else "i,j,k/n".
func FormatShards(idx []int, n int) string {
	idx = slices.Compact(slices.Sorted(slices.Values(idx)))
	if len(idx) == n {
		return "0/1"
	}
	parts := make([]string, len(idx))
	for k, i := range idx {
		parts[k] = strconv.Itoa(i)
	}
	return strings.Join(parts, ",") + "/" + strconv.Itoa(n)
}
