// state.go: the resume state file: what defines a run (RunKey and the file layout), written
// atomically beside the chunks, so that a rerun continues that run or is refused.
package sink

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// StateName is the resume state file's name in an output directory.
const StateName = ".clipd-run.json"

// RunKey identifies a run's work, as its attributes record it (keyOf): a resumed run must
// have the same key, and a finished output is only "complete" for a run with its key.
type RunKey struct {
	Input            string // the input's resolved location
	InputFingerprint string // its content (source.Info.Fingerprint); "" when unknowable
	Shard            string
	Limit            int64
	URLKind          string
	WeightsSHA256    string
	Preprocess       string
	Dtype            string
	Normalized       bool
	Columns          string // the saved input columns, comma-separated
	IgnoreOptOut     bool   `json:",omitempty"`
	TextColumn       string `json:",omitempty"` // the input column whose text is embedded too; "" for none
	TokenizerSHA256  string `json:",omitempty"` // the tokenizer's files (with a text column)
}

// KeyOf is the RunKey that attributes a record (what a finished file's attributes say of
// the run that made it).
func KeyOf(a outfile.Attrs) RunKey { return keyOf(a) }

// keyOf is the RunKey that attributes a record.
func keyOf(a outfile.Attrs) RunKey {
	shard := a.Shard
	if shard == "" {
		shard = "0/1" // files from before the shard attribute were whole-input runs
	}
	if a.Dtype == "" {
		a.Dtype = "float32"
	}
	return RunKey{Input: a.Input, InputFingerprint: a.InputFingerprint, Shard: shard, Limit: a.Limit, URLKind: a.URLKind,
		WeightsSHA256: a.WeightsSHA256, Preprocess: a.Preprocess, Dtype: a.Dtype, Normalized: a.Normalized,
		Columns: strings.Join(a.Columns, ","), IgnoreOptOut: a.IgnoreOptOut, TextColumn: a.TextColumn,
		TokenizerSHA256: a.TokenizerSHA256}
}

// diffKeys says how key b differs from a, the earlier run's ("" when they are the same).
func diffKeys(a, b RunKey) string {
	var d []string
	av, bv := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := 0; i < av.NumField(); i++ {
		x, y := av.Field(i).Interface(), bv.Field(i).Interface()
		if reflect.DeepEqual(x, y) {
			continue
		}
		name := av.Type().Field(i).Name
		if name == "InputFingerprint" {
			d = append(d, fmt.Sprintf("the input's content changed (%s, now %s)", orNone(x.(string)), orNone(y.(string))))
			continue
		}
		if name == "TokenizerSHA256" {
			d = append(d, fmt.Sprintf("the tokenizer's vocab.json or merges.txt changed (sha256 %s, now %s)", orNone(x.(string)), orNone(y.(string))))
			continue
		}
		if name == "WeightsSHA256" {
			d = append(d, fmt.Sprintf("the weights changed (sha256 %s, now %s)", orNone(x.(string)), orNone(y.(string))))
			continue
		}
		if name == "TextColumn" {
			name = "text column"
		}
		d = append(d, fmt.Sprintf("%s %v, now %v", strings.ToLower(name), orNone(fmt.Sprint(x)), orNone(fmt.Sprint(y))))
	}
	return strings.Join(d, "; ")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// state is the resume state file's content.
type state struct {
	Format    int    `json:"format"`
	Key       RunKey `json:"key"`
	EmbedDim  int    `json:"embed_dim"`
	Dtype     string `json:"dtype"`
	HasIDs    bool   `json:"has_image_ids"`
	Finalized bool   `json:"finalized,omitempty"` // the final file is complete; only cleanup is left
}

func diffState(old, want state) string {
	var d []string
	if k := diffKeys(old.Key, want.Key); k != "" {
		d = append(d, k)
	}
	if old.EmbedDim != want.EmbedDim {
		d = append(d, fmt.Sprintf("embed dim %d, now %d", old.EmbedDim, want.EmbedDim))
	}
	if old.Dtype != want.Dtype {
		d = append(d, fmt.Sprintf("dtype %s, now %s", old.Dtype, want.Dtype))
	}
	if old.HasIDs != want.HasIDs {
		d = append(d, fmt.Sprintf("image ids %v, now %v", old.HasIDs, want.HasIDs))
	}
	if old.Format != want.Format {
		d = append(d, fmt.Sprintf("format %d, now %d", old.Format, want.Format))
	}
	return strings.Join(d, "; ")
}

// readState reads the state file; a missing one is (zero, false, nil). Errors are outfile.ErrInput.
func readState(path string) (state, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return state{}, false, nil
	}
	if err != nil {
		return state{}, false, outfile.WrapRead(path, err)
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return state{}, false, outfile.InputErrorf("%s: %v; remove it or use --no-resume", path, err)
	}
	return s, true, nil
}

// writeState writes the state file atomically. Errors are outfile.ErrOutput.
func writeState(path string, s state) error {
	b, _ := json.MarshalIndent(s, "", "  ")
	return outfile.WriteFile(path, append(b, '\n'))
}
