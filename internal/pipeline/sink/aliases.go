// aliases.go: the names of the file format (package outfile), of merge and of inspect that
// callers use through sink, so that code written against sink keeps compiling.
package sink

import (
	"context"

	"github.com/clipd/clipd/internal/pipeline/merge"
	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// FinalName is the final file's name in an output directory.
const FinalName = outfile.FinalName

// ChunkPath is the path of chunk k in dir.
func ChunkPath(dir string, k int) string { return outfile.ChunkPath(dir, k) }

// Attrs are the root attributes of every file clipd writes.
type Attrs = outfile.Attrs

// The classes of the errors of the writer, Finalize, Merge and Inspect (errors.Is).
var (
	ErrInput    = outfile.ErrInput
	ErrOutput   = outfile.ErrOutput
	ErrMismatch = outfile.ErrMismatch
)

// MergeOptions, MergeStats and Merge: see package merge.
type (
	MergeOptions = merge.Options
	MergeStats   = merge.Stats
)

// Merge joins output files into out (merge.Files).
func Merge(ctx context.Context, inputs []string, out string, opt MergeOptions) (MergeStats, error) {
	return merge.Files(ctx, inputs, out, opt)
}

// Info, ReasonCount, InfoRow and Inspect: see package outfile.
type (
	Info        = outfile.Info
	ReasonCount = outfile.ReasonCount
	InfoRow     = outfile.InfoRow
)

// Inspect reads path's summary and its first n rows (outfile.Inspect).
func Inspect(path string, n, headValues int) (*Info, error) {
	return outfile.Inspect(path, n, headValues)
}
