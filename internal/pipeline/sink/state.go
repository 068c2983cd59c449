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

// RunKey identifies a run's work: a resumed run must have the same key.
type RunKey struct {
	Input         string
	Shard         string
	Limit         int64
	URLKind       string
	WeightsSHA256 string
	Preprocess    string
	Dtype         string
	Normalized    bool
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
	ov, wv := reflect.ValueOf(old.Key), reflect.ValueOf(want.Key)
	for i := 0; i < ov.NumField(); i++ {
		if !reflect.DeepEqual(ov.Field(i).Interface(), wv.Field(i).Interface()) {
			d = append(d, fmt.Sprintf("%s %v, now %v", strings.ToLower(ov.Type().Field(i).Name), ov.Field(i), wv.Field(i)))
		}
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
