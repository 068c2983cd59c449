// validate.go: a file clipd reads (inspect, merge, export, a resume's chunks) may be crafted
// or damaged. Every dataset is checked before any of it is read: its element type, rank and
// extent (Table/OpenTable check those against the table and the other columns), and its
// declared size against what the file holds, so that a 13 KB file cannot declare 60 x 2^40
// floats and make a reader allocate for them.
package outfile

import (
	"os"

	"github.com/clipd/clipd/internal/cgo/h5"
)

const (
	// maxCompression bounds how much smaller than its elements a dataset can be stored:
	// deflate cannot beat about 1032:1, HDF5's other filters clipd's files do not use.
	maxCompression = 1100
	// unstoredSlack is how many bytes of elements a dataset may declare beyond what the
	// file holds for it (fill values of a small dataset not yet written).
	unstoredSlack = 64 << 10
	// maxCols bounds the width of a 2-D dataset (an embedding dimension).
	maxCols = 1 << 16
)

// OpenDataset opens dataset name of f for reading, checked: its extent must fit what the file
// holds. Errors are ErrInput and one line: "PATH: DATASET declares ... : the file is damaged".
func OpenDataset(f *h5.File, name string, cache int) (*h5.Dataset, error) {
	d, err := f.OpenDataset(name, cache)
	if err != nil {
		return nil, WrapRead(f.Path(), err)
	}
	if err := checkDataset(f.Path(), name, d); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// checkDataset checks d (dataset name of the file at path) against the file's size.
func checkDataset(path, name string, d *h5.Dataset) error {
	st, err := os.Stat(path)
	if err != nil {
		return WrapRead(path, err)
	}
	size := st.Size()
	raw, stored := d.FileBytes(), d.StorageBytes()
	switch {
	case d.Cols() > maxCols:
		return InputErrorf("%s: %s has %d columns (at most %d): the file is damaged or not a clipd output file", path, name, d.Cols(), maxCols)
	case stored > size:
		return InputErrorf("%s: %s claims %d bytes of storage in a file of %d: the file is damaged", path, name, stored, size)
	case raw > unstoredSlack && (stored == 0 || raw/maxCompression > stored):
		return InputErrorf("%s: %s declares %d rows (%d bytes) but the file holds %d bytes of it: the file is damaged or not a clipd output file",
			path, name, d.Rows(), raw, stored)
	}
	return nil
}
