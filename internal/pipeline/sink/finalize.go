// finalize.go: Finalize streams a run's chunk files into Images_Embedded.h5 with rows in
// Seq order: bitsets of the Seqs present give each row its final index (its rank), and
// each chunk's rows are written at those indexes as runs of consecutive rows.
package sink

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/clipd/clipd/internal/cgo/h5"
)

const readRows = 4096 // rows read from a chunk at a time

// Finalize merges dir's chunk files into dir/Images_Embedded.h5 (written as a .tmp, fsynced,
// renamed), rows and failures in Seq order, without the seqs datasets; then it removes the
// chunks and the state file. Attrs go on the final file (attrs.Dtype and EmbedDim must be
// those of the chunks). A crash at any point leaves the chunks or the final file complete,
// and calling Finalize again finishes the job. It returns the final file's path.
func Finalize(dir string, attrs Attrs) (string, error) {
	final := filepath.Join(dir, FinalName)
	tmp := final + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", wrapWrite(tmp, err)
	}
	kind, err := attrs.kind()
	if err != nil {
		return "", err
	}
	chunks, err := listChunks(dir)
	if err != nil {
		return "", err
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
	dim := attrs.EmbedDim

	// Pass 1: which Seqs are there.
	var ok, failed bitset
	for _, c := range chunks {
		f, err := h5.Open(c.path)
		if err != nil {
			return "", fmt.Errorf("reading %s: %v", c.path, err)
		}
		for _, fail := range []bool{false, true} {
			t := embeddedTable(hasIDs, true, kind, dim)
			if fail {
				t = failedTable(hasIDs, true)
			}
			tf, n, err := openTable(f, t, 0)
			if err == nil && tf.ds[colIDs] == nil {
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
			tf.close()
			if err != nil {
				f.Close()
				return "", fmt.Errorf("reading %s: %v", c.path, err)
			}
		}
		f.Close()
	}
	failed.andNot(&ok) // a Seq both embedded and failed (never written so) counts as embedded
	ok.buildRank()
	failed.buildRank()
	nRows, nFails := ok.count(), failed.count()

	// Pass 2: place every row.
	f, err := h5.Create(tmp)
	if err != nil {
		return "", wrapWrite(tmp, err)
	}
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(tmp)
		return "", err
	}
	et, ft := embeddedTable(hasIDs, false, kind, dim), failedTable(hasIDs, false)
	outE, err := createTable(f, et, nRows, int(max(nRows, 1)), stringDeflate, finalCache)
	if err != nil {
		return fail(wrapWrite(tmp, err))
	}
	defer outE.close()
	outF, err := createTable(f, ft, nFails, int(max(nFails, 1)), stringDeflate, finalCache)
	if err != nil {
		return fail(wrapWrite(tmp, err))
	}
	defer outF.close()
	if err := writeAttrs(f, attrs); err != nil {
		return fail(wrapWrite(tmp, err))
	}
	var writtenE, writtenF bitset
	for _, c := range chunks {
		in, err := h5.Open(c.path)
		if err != nil {
			return fail(fmt.Errorf("reading %s: %v", c.path, err))
		}
		err = placeRows(in, embeddedTable(hasIDs, true, kind, dim), outE, &ok, &writtenE, tmp)
		if err == nil {
			err = placeRows(in, failedTable(hasIDs, true), outF, &failed, &writtenF, tmp)
		}
		in.Close()
		if err != nil {
			return fail(err)
		}
	}
	if err := outE.close(); err != nil {
		return fail(wrapWrite(tmp, err))
	}
	if err := outF.close(); err != nil {
		return fail(wrapWrite(tmp, err))
	}
	if err := finish(f, tmp, final); err != nil {
		os.Remove(tmp)
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

// cleanup removes the chunk files, then the state file.
func cleanup(dir string, chunks []chunkFile) error {
	for _, c := range chunks {
		if err := os.Remove(c.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return wrapWrite(c.path, err)
		}
	}
	p := filepath.Join(dir, StateName)
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return wrapWrite(p, err)
	}
	return wrapWrite(dir, syncDir(dir))
}

// forSeqs calls fn with every Seq of a chunk table.
func forSeqs(tf *tableFile, n int64, fn func(int64)) error {
	for start := int64(0); start < n; start += readRows {
		seqs, err := tf.ds[colSeqs].ReadInt64(start, int(min(n-start, readRows)))
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
func placeRows(in *h5.File, t table, out *tableFile, keep, written *bitset, tmp string) error {
	tf, n, err := openTable(in, t, 0)
	if err != nil {
		return fmt.Errorf("reading %s: %v", in.Path(), err)
	}
	defer tf.close()
	b, run := t.newBlock(), t.newBlock()
	type place struct {
		pos int64
		row int
	}
	var order []place
	for start := int64(0); start < n; start += readRows {
		m := int(min(n-start, readRows))
		if err := tf.read(b, start, m); err != nil {
			return fmt.Errorf("reading %s: %v", in.Path(), err)
		}
		order = order[:0]
		for r, s := range b.ints[colSeqs] {
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
			run.reset()
			for _, p := range order[i:j] {
				run.appendRow(b, p.row)
			}
			if err := out.write(run, order[i].pos); err != nil {
				return wrapWrite(tmp, err)
			}
			i = j
		}
	}
	return nil
}
