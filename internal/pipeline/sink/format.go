// format.go: the file format shared by chunk files, the final file and merged shard files:
// dataset names, the columns of the embedded and failed tables, root attributes, and the
// blocks of rows that move between files.
package sink

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/clipd/clipd/internal/cgo/h5"
)

// File names inside an output directory.
const (
	FinalName   = "Images_Embedded.h5"
	StateName   = ".clipd-run.json"
	chunkPrefix = "Images_Embedded_"
)

var chunkRe = regexp.MustCompile(`^Images_Embedded_([0-9]+)\.h5$`)

// ChunkPath is the path of chunk k in dir.
func ChunkPath(dir string, k int) string {
	return filepath.Join(dir, chunkPrefix+strconv.Itoa(k)+".h5")
}

type chunkFile struct {
	k    int
	path string
}

// listChunks returns dir's complete chunk files in k order.
func listChunks(dir string) ([]chunkFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []chunkFile
	for _, e := range ents {
		if m := chunkRe.FindStringSubmatch(e.Name()); m != nil && e.Type().IsRegular() {
			k, err := strconv.Atoi(m[1])
			if err != nil {
				continue
			}
			out = append(out, chunkFile{k, filepath.Join(dir, e.Name())})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].k < out[j].k })
	return out, nil
}

// Attrs are the root attributes of every file clipd writes.
type Attrs struct {
	Model, WeightsSHA256, Preprocess, Version, Input string
	EmbedDim                                         int
	Normalized                                       bool
	Dtype                                            string // "float32" or "float16"
}

func (a Attrs) kind() (h5.Kind, error) {
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
	for _, kv := range []struct {
		k string
		v any
	}{
		{"model", a.Model}, {"weights_sha256", a.WeightsSHA256}, {"embed_dim", a.EmbedDim},
		{"normalized", a.Normalized}, {"dtype", dtype}, {"preprocess", a.Preprocess},
		{"clipd_version", a.Version}, {"created", time.Now().UTC().Format(time.RFC3339)}, {"input", a.Input},
	} {
		if err := f.SetAttr(kv.k, kv.v); err != nil {
			return err
		}
	}
	return nil
}

// readAttrs reads the attributes clipd writes; missing ones stay zero.
func readAttrs(f *h5.File) (Attrs, error) {
	list, err := f.Attrs()
	if err != nil {
		return Attrs{}, err
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
		case "embed_dim":
			if v, ok := x.Value.(int64); ok {
				a.EmbedDim = int(v)
			}
		case "normalized":
			if v, ok := x.Value.(bool); ok {
				a.Normalized = v
			}
		}
	}
	return a, nil
}

// column is one dataset of a table.
type column struct {
	name string
	kind h5.Kind
	cols int // 0: one value per row
}

// table is the set of datasets that share rows: the embedded rows or the failed ones.
type table struct {
	cols []column
}

const (
	colURLs   = 0 // urls / failed_urls
	colIDs    = 1 // image_ids / failed_image_ids ("" name when the input has none)
	colLines  = 2
	colSeqs   = 3 // chunk files only ("" name in final files)
	colValues = 4 // embeddings / failed_reasons
	colStages = 5 // failed_stages
)

// embeddedTable and failedTable lay out both tables; the column order follows the col*
// constants, and a column with an empty name is absent.
func embeddedTable(ids, seqs bool, kind h5.Kind, dim int) table {
	return table{[]column{
		{"urls", h5.String, 0}, {opt(ids, "image_ids"), h5.String, 0}, {"lines", h5.Int64, 0},
		{opt(seqs, "seqs"), h5.Int64, 0}, {"embeddings", kind, dim},
	}}
}

func failedTable(ids, seqs bool) table {
	return table{[]column{
		{"failed_urls", h5.String, 0}, {opt(ids, "failed_image_ids"), h5.String, 0}, {"failed_lines", h5.Int64, 0},
		{opt(seqs, "failed_seqs"), h5.Int64, 0}, {"failed_reasons", h5.String, 0}, {"failed_stages", h5.String, 0},
	}}
}

func opt(on bool, name string) string {
	if on {
		return name
	}
	return ""
}

// block is a run of rows of a table in memory: per column, strings, ints or raw elements.
type block struct {
	n    int
	strs [][]string
	ints [][]int64
	raw  [][]byte
	rowB []int // raw bytes per row of each raw column
}

func (t table) newBlock() *block {
	b := &block{strs: make([][]string, len(t.cols)), ints: make([][]int64, len(t.cols)),
		raw: make([][]byte, len(t.cols)), rowB: make([]int, len(t.cols))}
	for i, c := range t.cols {
		if c.kind != h5.String && c.kind != h5.Int64 {
			b.rowB[i] = c.cols * c.kind.Size()
		}
	}
	return b
}

func (b *block) reset() {
	b.n = 0
	for i := range b.strs {
		b.strs[i] = b.strs[i][:0]
		b.ints[i] = b.ints[i][:0]
		b.raw[i] = b.raw[i][:0]
	}
}

// appendRow copies row r of src into b.
func (b *block) appendRow(src *block, r int) {
	for i := range b.strs {
		if src.strs[i] != nil && r < len(src.strs[i]) {
			b.strs[i] = append(b.strs[i], src.strs[i][r])
		}
		if src.ints[i] != nil && r < len(src.ints[i]) {
			b.ints[i] = append(b.ints[i], src.ints[i][r])
		}
		if w := b.rowB[i]; w > 0 && len(src.raw[i]) >= (r+1)*w {
			b.raw[i] = append(b.raw[i], src.raw[i][r*w:(r+1)*w]...)
		}
	}
	b.n++
}

// tableFile is a table's datasets in one open file.
type tableFile struct {
	t  table
	ds []*h5.Dataset // nil where the column is absent
}

// createTable creates the table's datasets with rows rows (0 when appending).
// Chunks hold at most maxChunkRows rows (fewer for small files: a chunk is allocated whole).
func createTable(f *h5.File, t table, rows int64, maxChunkRows int, deflate int, cache int) (*tableFile, error) {
	tf := &tableFile{t: t, ds: make([]*h5.Dataset, len(t.cols))}
	for i, c := range t.cols {
		if c.name == "" {
			continue
		}
		o := h5.DatasetOptions{Kind: c.kind, Rows: rows, Cols: c.cols, ChunkRows: max(1, min(4096, maxChunkRows))}
		if c.kind == h5.String {
			o.Deflate = deflate
			o.CacheBytes = cache / 8
		}
		if c.cols > 0 {
			o.ChunkRows = max(1, min(maxChunkRows, max(16, min(1024, (1<<20)/max(1, c.cols*c.kind.Size()))))) // <= ~1 MiB
			o.CacheBytes = cache
		}
		d, err := f.CreateDataset(c.name, o)
		if err != nil {
			tf.close()
			return nil, err
		}
		tf.ds[i] = d
	}
	return tf, nil
}

// openTable opens the table's datasets; a column whose dataset is missing is left out
// (ids) or an error (the others). It returns the number of rows.
func openTable(f *h5.File, t table, cache int) (*tableFile, int64, error) {
	tf := &tableFile{t: t, ds: make([]*h5.Dataset, len(t.cols))}
	rows := int64(-1)
	for i, c := range t.cols {
		if c.name == "" {
			continue
		}
		ok, err := f.Has(c.name)
		if err != nil {
			tf.close()
			return nil, 0, err
		}
		if !ok {
			if i == colIDs || i == colStages || i == colLines {
				tf.t.cols[i].name = ""
				continue
			}
			tf.close()
			return nil, 0, fmt.Errorf("%s has no %s dataset: not a clipd output file", f.Path(), c.name)
		}
		d, err := f.OpenDataset(c.name, cache)
		if err != nil {
			tf.close()
			return nil, 0, err
		}
		tf.ds[i] = d
		if c.cols > 0 && d.Cols() != c.cols {
			tf.close()
			return nil, 0, fmt.Errorf("%s: %s has %d columns, want %d", f.Path(), c.name, d.Cols(), c.cols)
		}
		if c.kind != d.Kind() {
			tf.close()
			return nil, 0, fmt.Errorf("%s: %s holds %s, want %s", f.Path(), c.name, d.Kind(), c.kind)
		}
		if rows >= 0 && d.Rows() != rows {
			tf.close()
			return nil, 0, fmt.Errorf("%s: %s has %d rows, %s has %d: the file is damaged", f.Path(), c.name, d.Rows(), t.cols[0].name, rows)
		}
		rows = d.Rows()
	}
	return tf, max(rows, 0), nil
}

// read reads rows [start, start+n) into b (reset first).
func (tf *tableFile) read(b *block, start int64, n int) error {
	b.reset()
	for i, d := range tf.ds {
		if d == nil {
			continue
		}
		switch d.Kind() {
		case h5.String:
			s, err := d.ReadStrings(start, n)
			if err != nil {
				return err
			}
			b.strs[i] = append(b.strs[i], s...)
		case h5.Int64:
			v, err := d.ReadInt64(start, n)
			if err != nil {
				return err
			}
			b.ints[i] = append(b.ints[i], v...)
		default:
			w := b.rowB[i]
			if cap(b.raw[i]) < n*w {
				b.raw[i] = make([]byte, n*w)
			}
			b.raw[i] = b.raw[i][:n*w]
			if err := d.ReadRaw(start, n, b.raw[i]); err != nil {
				return err
			}
		}
	}
	b.n = n
	return nil
}

// write writes b's rows at [start, start+b.n), growing the datasets when needed. A column
// the block lacks (ids when the source had none) is written as empty strings.
func (tf *tableFile) write(b *block, start int64) error {
	if b.n == 0 {
		return nil
	}
	for i, d := range tf.ds {
		if d == nil {
			continue
		}
		var err error
		switch d.Kind() {
		case h5.String:
			s := b.strs[i]
			if len(s) != b.n {
				s = make([]string, b.n)
			}
			err = d.WriteStrings(start, s)
		case h5.Int64:
			v := b.ints[i]
			if len(v) != b.n {
				v = make([]int64, b.n)
			}
			err = d.WriteInt64(start, v)
		default:
			err = d.WriteRaw(start, b.n, b.raw[i])
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (tf *tableFile) close() error {
	if tf == nil {
		return nil
	}
	var first error
	for _, d := range tf.ds {
		if err := d.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// syncFile fsyncs path; syncDir fsyncs a directory so a rename in it is durable.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	d.Close()
	return err
}

// ErrOutput matches every error of writing an output file (errors.Is): a full disk, a
// read-only directory, an HDF5 write failure.
var ErrOutput = errors.New("output write failed")

// writeError is "writing PATH: cause", where cause is the system error underneath when
// there is one ("no space left on device").
type writeError struct {
	path  string
	cause error
}

func (e *writeError) Error() string   { return "writing " + e.path + ": " + e.cause.Error() }
func (e *writeError) Unwrap() []error { return []error{ErrOutput, e.cause} }

func wrapWrite(path string, err error) error {
	if err == nil {
		return nil
	}
	var we *writeError
	if errors.As(err, &we) {
		return err
	}
	var he *h5.Error
	var pe *os.PathError
	cause := err
	switch {
	case errors.As(err, &he) && he.Errno != 0:
		cause = he.Errno
	case errors.As(err, &pe):
		cause = pe.Err
	}
	return &writeError{path: path, cause: cause}
}

// finish closes an HDF5 file written to tmp, fsyncs it, renames it to path and fsyncs the
// directory: after finish returns nil, path is complete on disk.
func finish(f *h5.File, tmp, path string) error {
	if err := f.Close(); err != nil {
		return wrapWrite(tmp, err)
	}
	if err := syncFile(tmp); err != nil {
		return wrapWrite(tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return wrapWrite(path, err)
	}
	return wrapWrite(filepath.Dir(path), syncDir(filepath.Dir(path)))
}
