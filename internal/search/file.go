// file.go: a clipd output file opened for search, through outfile's checked readers (every
// dataset's type, shape and declared size checked before any of it is read): its embeddings
// read as float32 blocks, and the strings shown with a hit (url, image id, caption and the
// other saved columns) read for the hits only.

package search

import (
	"fmt"
	"sort"
	"unsafe"

	"github.com/clipd/clipd/internal/cgo/blas"
	"github.com/clipd/clipd/internal/cgo/h5"
	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// File is an output file open for search. It implements Rows.
type File struct {
	Path  string
	Attrs outfile.Attrs
	f     *h5.File
	table *outfile.TableFile
	emb   *h5.Dataset
	cols  []column // shown with each hit: url first
	rows  int64
	half  []uint16 // a float16 block as read
}

type column struct {
	name string // a saved column's dataset name (caption, ...)
	ds   *h5.Dataset
	role int // roleURL, roleID (datasets of the table) or roleSaved (owned here)
}

const (
	roleURL = iota
	roleID
	roleSaved
)

// RowInfo is what a hit shows of its row: its url, image id (when the file has them) and
// saved input columns (caption, ...).
type RowInfo struct {
	URL     string            `json:"url"`
	ImageID string            `json:"image_id,omitempty"`
	Columns map[string]string `json:"columns,omitempty"`
}

// Open opens path (a clipd output file) for search. Errors are outfile.ErrInput and one
// line: a missing file, not HDF5, no embeddings, a damaged table.
func Open(path string) (*File, error) {
	f, err := outfile.Open(path)
	if err != nil {
		return nil, err
	}
	sf := &File{Path: path, f: f}
	if err := sf.open(); err != nil {
		sf.Close()
		return nil, err
	}
	return sf, nil
}

func (sf *File) open() error {
	f, path := sf.f, sf.Path
	var err error
	if sf.Attrs, err = outfile.ReadAttrs(f); err != nil {
		return err
	}
	if ok, err := f.Has("embeddings"); err != nil || !ok {
		return outfile.InputErrorf("%s has no embeddings dataset: not a clipd output file; give the file (or folder) clipd embed wrote", path)
	}
	emb, err := outfile.OpenDataset(f, "embeddings", 0)
	if err != nil {
		return err
	}
	kind, dim := emb.Kind(), emb.Cols()
	emb.Close()
	if dim == 0 || (kind != h5.Float32 && kind != h5.Float16) {
		return outfile.InputErrorf("%s: embeddings is a %d-dimensional %s dataset, want rows x dim float32 or float16: not a clipd output file", path, 1+min(dim, 1), kind)
	}
	// urls, image ids and embeddings: checked against each other (types, rows). A chunk cache
	// of 1 byte: no chunk fits, so libhdf5 reads the embeddings' chunks straight into the
	// block (one copy; through its 1 MiB default cache the scan took twice as long) and the
	// few url chunks a search reads are read when asked.
	sf.table, sf.rows, err = outfile.OpenTable(f, outfile.EmbeddedTable(true, false, kind, dim), 1)
	if err != nil {
		return err
	}
	sf.emb = sf.table.Dataset(outfile.ColValues)
	sf.cols = append(sf.cols, column{"urls", sf.table.Dataset(outfile.ColURLs), roleURL})
	if d := sf.table.Dataset(outfile.ColIDs); d != nil {
		sf.cols = append(sf.cols, column{"image_ids", d, roleID})
	}
	// The saved input columns, and caption (img2dataset's shards carry one) when present.
	names := []string{}
	for _, c := range sf.Attrs.Columns {
		if !outfile.ReservedName(c) {
			names = append(names, outfile.SavedName(c))
		}
	}
	names = append(names, "caption")
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		if ok, err := f.Has(name); err != nil {
			return outfile.WrapRead(path, err)
		} else if !ok {
			continue
		}
		d, err := outfile.OpenDataset(f, name, 0)
		if err != nil {
			return err
		}
		sf.cols = append(sf.cols, column{name, d, roleSaved})
		switch {
		case d.Kind() != h5.String || d.Cols() != 0:
			return outfile.InputErrorf("%s: %s holds %s x %d, want one string a row: the file is damaged", path, name, d.Kind(), max(1, d.Cols()))
		case d.Rows() != sf.rows:
			return outfile.InputErrorf("%s: %s has %d rows, embeddings has %d: the file is damaged", path, name, d.Rows(), sf.rows)
		}
	}
	return nil
}

// Rows is the number of embedded rows.
func (sf *File) Rows() int64 { return sf.rows }

// Dim is the embedding dimension.
func (sf *File) Dim() int { return sf.emb.Cols() }

// Kind is the embeddings' element type (float32 or float16).
func (sf *File) Kind() h5.Kind { return sf.emb.Kind() }

// Half reports whether the embeddings are float16 (File is a HalfRows).
func (sf *File) Half() bool { return sf.emb.Kind() == h5.Float16 }

// ReadHalfBlock reads rows [start, start+n) of float16 embeddings as stored into dst.
func (sf *File) ReadHalfBlock(start int64, n int, dst []uint16) error {
	if sf.emb.Kind() != h5.Float16 {
		return fmt.Errorf("%s: embeddings are %s, not float16", sf.Path, sf.emb.Kind())
	}
	if n == 0 {
		return nil
	}
	dst = dst[:n*sf.Dim()]
	return outfile.WrapRead(sf.Path, sf.emb.ReadRaw(start, n, unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 2*len(dst))))
}

// ReadBlock reads rows [start, start+n) of the embeddings as float32 into dst.
func (sf *File) ReadBlock(start int64, n int, dst []float32) error {
	if n == 0 {
		return nil
	}
	dst = dst[:n*sf.Dim()]
	var err error
	if sf.emb.Kind() == h5.Float16 {
		if cap(sf.half) < len(dst) {
			sf.half = make([]uint16, len(dst))
		}
		half := sf.half[:len(dst)]
		if err = sf.emb.ReadRaw(start, n, unsafe.Slice((*byte)(unsafe.Pointer(&half[0])), 2*len(half))); err == nil {
			blas.Float16ToFloat32(half, dst)
		}
	} else {
		err = sf.emb.ReadRaw(start, n, unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 4*len(dst)))
	}
	return outfile.WrapRead(sf.Path, err)
}

// Describe reads what each of rows shows (rows in any order, each below Rows()): the rows
// sorted, each column is read in runs of rows at most outfile.ReadRows apart, so k hits
// cost at most k small reads per column.
func (sf *File) Describe(rows []int64) ([]RowInfo, error) {
	order := make([]int, len(rows))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return rows[order[a]] < rows[order[b]] })
	out := make([]RowInfo, len(rows))
	for _, c := range sf.cols {
		for i := 0; i < len(order); {
			first := rows[order[i]]
			j := i
			for j < len(order) && rows[order[j]]-first < outfile.ReadRows {
				j++
			}
			last := rows[order[j-1]]
			vals, err := c.ds.ReadStrings(first, int(last-first+1))
			if err != nil {
				return nil, outfile.WrapRead(sf.Path, err)
			}
			for _, o := range order[i:j] {
				v := vals[rows[o]-first]
				switch c.role {
				case roleURL:
					out[o].URL = v
				case roleID:
					out[o].ImageID = v
				default:
					if out[o].Columns == nil {
						out[o].Columns = map[string]string{}
					}
					out[o].Columns[c.name] = v
				}
			}
			i = j
		}
	}
	return out, nil
}

// Close closes the file; safe twice.
func (sf *File) Close() error {
	if sf.f == nil {
		return nil
	}
	for _, c := range sf.cols {
		if c.role == roleSaved {
			c.ds.Close()
		}
	}
	if sf.table != nil {
		sf.table.Close()
	}
	err := sf.f.Close()
	sf.f = nil
	return err
}
