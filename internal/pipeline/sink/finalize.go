// finalize.go: Finalize streams a run's chunk files into Images_Embedded.h5 with rows in
// Seq order: bitsets of the Seqs present give each row its final index (its rank), and
// each chunk's rows are written at those indexes as runs of consecutive rows.
package sink

import (
	"os"
	"path/filepath"
	"sort"

	"github.com/clipd/clipd/internal/cgo/h5"
	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// Finalize merges dir's chunk files into dir/Images_Embedded.h5 (written as a .tmp, fsynced,
// renamed), rows and failures in Seq order, without the seqs datasets; then it removes the
// chunks and the state file. Attrs go on the final file (attrs.Dtype and EmbedDim must be
// those of the chunks). A crash at any point leaves the chunks or the final file complete,
// and calling Finalize again finishes the job. It returns the final file's path.
// Errors are outfile.ErrInput (a chunk or the state cannot be read) or outfile.ErrOutput.
func Finalize(dir string, attrs outfile.Attrs) (string, error) {
	final := filepath.Join(dir, outfile.FinalName)
	if err := outfile.Remove(final + ".tmp"); err != nil {
		return "", err
	}
	kind, err := attrs.Kind()
	if err != nil {
		return "", err
	}
	chunks, err := outfile.ListChunks(dir)
	if err != nil {
		return "", outfile.WrapRead(dir, err)
	}
	statePath := filepath.Join(dir, StateName)
	st, haveState, err := readState(statePath)
	if err != nil {
		return "", err
	}
	if haveState && st.Finalized {
		return final, cleanup(dir, chunks)
	}
	if len(chunks) == 0 && !haveState {
		if _, err := os.Stat(final); err == nil {
			return final, nil // done earlier
		}
	}
	hasIDs := len(chunks) > 0
	if haveState {
		hasIDs = st.HasIDs
	}

	// Pass 1: which Seqs are there.
	var ok, failed bitset
	for _, c := range chunks {
		f, err := h5.Open(c.Path)
		if err != nil {
			return "", outfile.WrapRead(c.Path, err)
		}
		for _, fail := range []bool{false, true} {
			t := embeddedTable(attrs, hasIDs, true, kind)
			if fail {
				t = outfile.FailedTable(hasIDs, true)
			}
			tf, n, err := outfile.OpenTable(f, t, 0)
			if err == nil && tf.Dataset(outfile.ColIDs) == nil {
				hasIDs = false // a chunk without ids: the final file has none
			}
			if err == nil {
				err = forSeqs(tf, n, func(s int64) {
					if fail {
						failed.set(s)
					} else {
						ok.set(s)
					}
				})
			}
			tf.Close()
			if err != nil {
				f.Close()
				return "", outfile.WrapRead(c.Path, err)
			}
		}
		f.Close()
	}
	failed.andNot(&ok) // a Seq both embedded and failed (never written so) counts as embedded
	ok.buildRank()
	failed.buildRank()
	nRows, nFails := ok.count(), failed.count()

	// Pass 2: place every row.
	f, err := outfile.Create(final)
	if err != nil {
		return "", err
	}
	outE, err := f.CreateTable(embeddedTable(attrs, hasIDs, false, kind), nRows, int(max(nRows, 1)), outfile.FinalCache)
	if err != nil {
		f.Abort()
		return "", err
	}
	outF, err := f.CreateTable(outfile.FailedTable(hasIDs, false), nFails, int(max(nFails, 1)), outfile.FinalCache)
	if err != nil {
		f.Abort()
		return "", err
	}
	var writtenE, writtenF bitset
	for _, c := range chunks {
		in, err := h5.Open(c.Path)
		if err != nil {
			f.Abort()
			return "", outfile.WrapRead(c.Path, err)
		}
		err = placeRows(in, embeddedTable(attrs, hasIDs, true, kind), outE, &ok, &writtenE)
		if err == nil {
			err = placeRows(in, outfile.FailedTable(hasIDs, true), outF, &failed, &writtenF)
		}
		in.Close()
		if err != nil {
			f.Abort()
			return "", err
		}
	}
	if err := f.Commit(attrs); err != nil {
		return "", err
	}
	if haveState {
		st.Finalized = true
		if err := writeState(statePath, st); err != nil {
			return "", err
		}
	}
	return final, cleanup(dir, chunks)
}

// cleanup removes the chunk files (and their checksums), then the state file. Errors are outfile.ErrOutput.
func cleanup(dir string, chunks []outfile.Chunk) error {
	for _, c := range chunks {
		if err := removeChunk(c); err != nil {
			return err
		}
	}
	if err := outfile.Remove(filepath.Join(dir, StateName)); err != nil {
		return err
	}
	return outfile.SyncDir(dir)
}

// forSeqs calls fn with every Seq of a chunk table.
func forSeqs(tf *outfile.TableFile, n int64, fn func(int64)) error {
	for start := int64(0); start < n; start += outfile.ReadRows {
		seqs, err := tf.Dataset(outfile.ColSeqs).ReadInt64(start, int(min(n-start, outfile.ReadRows)))
		if err != nil {
			return err
		}
		for _, s := range seqs {
			fn(s)
		}
	}
	return nil
}

// placeRows writes the rows of one chunk table whose Seq is in keep (and not yet written)
// at their ranks in out.
func placeRows(in *h5.File, t outfile.Table, out *outfile.TableFile, keep, written *bitset) error {
	tf, n, err := outfile.OpenTable(in, t, 0)
	if err != nil {
		return err
	}
	defer tf.Close()
	b, run := t.NewBlock(), t.NewBlock()
	type place struct {
		pos int64
		row int
	}
	var order []place
	for start := int64(0); start < n; start += outfile.ReadRows {
		m := int(min(n-start, outfile.ReadRows))
		if err := tf.Read(b, start, m); err != nil {
			return err
		}
		order = order[:0]
		for r, s := range b.Ints[outfile.ColSeqs] {
			if keep.has(s) && !written.has(s) {
				written.set(s)
				order = append(order, place{keep.rankOf(s), r})
			}
		}
		sort.Slice(order, func(i, j int) bool { return order[i].pos < order[j].pos })
		for i := 0; i < len(order); {
			j := i + 1
			for j < len(order) && order[j].pos == order[j-1].pos+1 {
				j++
			}
			run.Reset()
			for _, p := range order[i:j] {
				run.AppendRow(b, p.row)
			}
			if err := out.WriteAt(run, order[i].pos); err != nil {
				return err
			}
			i = j
		}
	}
	return nil
}
