// table.go: the two tables of a clipd file (embedded rows, failed rows) as sets of datasets
// that share rows, the blocks of rows that move between files, and their reads and writes.
package outfile

import (
	"strings"

	"github.com/clipd/clipd/internal/cgo/h5"
)

// Column is one dataset of a table.
type Column struct {
	Name string // "" when the column is absent
	Kind h5.Kind
	Cols int // 0: one value per row
}

// Table is a set of datasets that share rows: the embedded rows or the failed ones.
type Table struct {
	Cols []Column
}

// The columns of both tables, in this order; a Table's Cols are indexed by them.
const (
	ColURLs   = 0 // urls / failed_urls
	ColIDs    = 1 // image_ids / failed_image_ids ("" name when the input has none)
	ColLines  = 2 // lines / failed_lines
	ColSeqs   = 3 // seqs / failed_seqs: chunk files only ("" name in final files)
	ColValues = 4 // embeddings / failed_reasons
	ColStages = 5 // failed_stages
	ColInput  = 6 // input_index / failed_input_index: merged files of several inputs only (WithInputIndex)
	// The embedded table's per-row image information (WithRowInfo):
	ColWidths  = 7  // widths: the images' width as encoded (0 in files from before it was kept)
	ColHeights = 8  // heights
	ColText    = 9  // text_embeddings: the embeddings of the rows' texts (WithText; Attrs.TextColumn)
	ColSaved   = 10 // the input columns saved on request (Attrs.Columns), one dataset each, from here on
)

// stringDeflate is the deflate level of string datasets.
const stringDeflate = 4

// ReadRows is how many rows a reader takes from a file at a time.
const ReadRows = 4096

// FinalCache is the chunk cache of a final (or merged) file's embeddings.
const FinalCache = 64 << 20

// EmbeddedTable is the table of embedded rows: with image ids or not, with Seqs (chunk
// files) or not (final files), embeddings of kind and dim.
func EmbeddedTable(ids, seqs bool, kind h5.Kind, dim int) Table {
	return Table{[]Column{
		{"urls", h5.String, 0}, {opt(ids, "image_ids"), h5.String, 0}, {"lines", h5.Int64, 0},
		{opt(seqs, "seqs"), h5.Int64, 0}, {"embeddings", kind, dim},
	}}
}

// FailedTable is the table of failed rows.
func FailedTable(ids, seqs bool) Table {
	return Table{[]Column{
		{"failed_urls", h5.String, 0}, {opt(ids, "failed_image_ids"), h5.String, 0}, {"failed_lines", h5.Int64, 0},
		{opt(seqs, "failed_seqs"), h5.Int64, 0}, {"failed_reasons", h5.String, 0}, {"failed_stages", h5.String, 0},
	}}
}

// WithInputIndex is t with its input index column (input_index for the embedded table,
// failed_input_index for the failed one): the row's entry in the inputs datasets of a file
// merged from several inputs. Tables that are read take it too; files without it read as 0.
func WithInputIndex(t Table) Table {
	cols := append([]Column(nil), t.Cols...)
	for len(cols) <= ColInput {
		cols = append(cols, Column{Kind: h5.String})
	}
	prefix, _ := strings.CutSuffix(t.Cols[ColURLs].Name, "urls")
	cols[ColInput] = Column{prefix + "input_index", h5.Int64, 0}
	return Table{cols}
}

// WithRowInfo is the embedded table t with the images' widths and heights and a string
// dataset for each saved input column (SavedName of each of saved).
func WithRowInfo(t Table, saved []string) Table {
	cols := append([]Column(nil), t.Cols...)
	for len(cols) < ColWidths {
		cols = append(cols, Column{Kind: h5.String})
	}
	text := Column{Kind: h5.String} // absent unless WithText names it
	if len(cols) > ColText {
		text = cols[ColText]
	}
	cols = append(cols[:ColWidths], Column{"widths", h5.Int64, 0}, Column{"heights", h5.Int64, 0}, text)
	for _, name := range saved {
		cols = append(cols, Column{SavedName(name), h5.String, 0})
	}
	return Table{cols}
}

// TextEmbeddings is the dataset of the rows' text embeddings.
const TextEmbeddings = "text_embeddings"

// WithText is the embedded table t with its text_embeddings column (on: N x the embeddings'
// dim, of their kind, row i the embedding of row i's text) or without it (off); t is
// returned as it is when off. Before or after WithRowInfo.
func WithText(t Table, on bool) Table {
	if !on {
		return t
	}
	cols := append([]Column(nil), t.Cols...)
	for len(cols) <= ColText {
		cols = append(cols, Column{Kind: h5.String})
	}
	v := t.Cols[ColValues]
	cols[ColText] = Column{TextEmbeddings, v.Kind, v.Cols}
	return Table{cols}
}

// SavedName is the dataset that holds the saved input column name: the name in lower case,
// characters other than letters, digits and _ replaced by _ ("TEXT" -> "text").
func SavedName(name string) string {
	b := []byte(strings.ToLower(name))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// ReservedName reports whether a saved column's dataset would clash with one of clipd's own.
func ReservedName(name string) bool {
	switch SavedName(name) {
	case "urls", "image_ids", "lines", "seqs", "embeddings", TextEmbeddings, "widths", "heights", "input_index",
		"inputs", "inputs_fingerprint", "inputs_shards", "inputs_limit", "inputs_url_kind":
		return true
	}
	return strings.HasPrefix(SavedName(name), "failed_")
}

func opt(on bool, name string) string {
	if on {
		return name
	}
	return ""
}

// Block is a run of N rows of a table in memory. Per column: Strs for strings, Ints for
// int64, Raw for the little-endian elements of a numeric column (embeddings).
type Block struct {
	N    int
	Strs [][]string
	Ints [][]int64
	Raw  [][]byte
	rowB []int    // raw bytes per row of each raw column
	cols []Column // the table's columns ("" name: absent)
}

// NewBlock is an empty block of t's columns.
func (t Table) NewBlock() *Block {
	b := &Block{Strs: make([][]string, len(t.Cols)), Ints: make([][]int64, len(t.Cols)),
		Raw: make([][]byte, len(t.Cols)), rowB: make([]int, len(t.Cols)), cols: t.Cols}
	for i, c := range t.Cols {
		if c.Kind != h5.String && c.Kind != h5.Int64 {
			b.rowB[i] = c.Cols * c.Kind.Size()
		}
	}
	return b
}

// Reset empties b, keeping its memory.
func (b *Block) Reset() {
	b.N = 0
	for i := range b.Strs {
		b.Strs[i] = b.Strs[i][:0]
		b.Ints[i] = b.Ints[i][:0]
		b.Raw[i] = b.Raw[i][:0]
	}
}

// AppendRow copies row r of src into b. A column of b that src lacks (image ids or lines
// of a file written without them) gets the zero value: "", 0 or zeros, so that every column
// of b keeps one value per row.
func (b *Block) AppendRow(src *Block, r int) {
	for i, c := range b.cols {
		if c.Name == "" {
			continue
		}
		switch {
		case c.Kind == h5.String:
			v := ""
			if i < len(src.Strs) && r < len(src.Strs[i]) {
				v = src.Strs[i][r]
			}
			b.Strs[i] = append(b.Strs[i], v)
		case c.Kind == h5.Int64:
			var v int64
			if i < len(src.Ints) && r < len(src.Ints[i]) {
				v = src.Ints[i][r]
			}
			b.Ints[i] = append(b.Ints[i], v)
		default:
			w := b.rowB[i]
			if i < len(src.Raw) && len(src.Raw[i]) >= (r+1)*w {
				b.Raw[i] = append(b.Raw[i], src.Raw[i][r*w:(r+1)*w]...)
			} else {
				b.Raw[i] = append(b.Raw[i], make([]byte, w)...)
			}
		}
	}
	b.N++
}

// TableFile is a table's datasets in one open file. A table being written also has a
// pending block that Flush appends.
type TableFile struct {
	t       Table
	ds      []*h5.Dataset // nil where the column is absent
	path    string
	write   bool
	pending *Block
	written int64 // rows appended by Flush
}

// createTable creates the table's datasets with rows rows (0 when appending).
// Chunks hold at most maxChunkRows rows (fewer for small files: a chunk is allocated whole).
func createTable(f *h5.File, t Table, rows int64, maxChunkRows int, cache int) (*TableFile, error) {
	tf := &TableFile{t: t, ds: make([]*h5.Dataset, len(t.Cols)), path: f.Path(), write: true,
		pending: t.NewBlock(), written: rows}
	for i, c := range t.Cols {
		if c.Name == "" {
			continue
		}
		o := h5.DatasetOptions{Kind: c.Kind, Rows: rows, Cols: c.Cols, ChunkRows: max(1, min(4096, maxChunkRows))}
		if c.Kind == h5.String {
			o.Deflate = stringDeflate
			o.CacheBytes = cache / 8
		}
		if c.Cols > 0 {
			o.ChunkRows = max(1, min(maxChunkRows, max(16, min(1024, (1<<20)/max(1, c.Cols*c.Kind.Size()))))) // <= ~1 MiB
			o.CacheBytes = cache
		}
		d, err := f.CreateDataset(c.Name, o)
		if err != nil {
			tf.Close()
			return nil, WrapWrite(tf.path, err)
		}
		tf.ds[i] = d
	}
	return tf, nil
}

// OpenTable opens the table's datasets in f; a column whose dataset is missing is left out
// (ids, stages, lines, input index) or an error (the others). It returns the number of rows. Errors are
// ErrInput.
func OpenTable(f *h5.File, t Table, cache int) (*TableFile, int64, error) {
	t.Cols = append([]Column(nil), t.Cols...) // the missing columns are blanked in this copy
	tf := &TableFile{t: t, ds: make([]*h5.Dataset, len(t.Cols)), path: f.Path()}
	rows := int64(-1)
	for i, c := range t.Cols {
		if c.Name == "" {
			continue
		}
		ok, err := f.Has(c.Name)
		if err != nil {
			tf.Close()
			return nil, 0, WrapRead(tf.path, err)
		}
		if !ok {
			if i == ColIDs || i == ColStages || i == ColLines || i == ColInput {
				tf.t.Cols[i].Name = ""
				continue
			}
			tf.Close()
			return nil, 0, InputErrorf("%s has no %s dataset: not a clipd output file", tf.path, c.Name)
		}
		d, err := OpenDataset(f, c.Name, cache)
		if err != nil {
			tf.Close()
			return nil, 0, err
		}
		tf.ds[i] = d
		if (c.Cols > 0) != (d.Cols() > 0) {
			tf.Close()
			return nil, 0, InputErrorf("%s: %s has %d dimensions, want %d", tf.path, c.Name, 1+min(d.Cols(), 1), 1+min(c.Cols, 1))
		}
		if c.Cols > 0 && d.Cols() != c.Cols {
			tf.Close()
			return nil, 0, InputErrorf("%s: %s has %d columns, want %d", tf.path, c.Name, d.Cols(), c.Cols)
		}
		if c.Kind != d.Kind() {
			tf.Close()
			return nil, 0, InputErrorf("%s: %s holds %s, want %s", tf.path, c.Name, d.Kind(), c.Kind)
		}
		if rows >= 0 && d.Rows() != rows {
			tf.Close()
			return nil, 0, InputErrorf("%s: %s has %d rows, %s has %d: the file is damaged", tf.path, c.Name, d.Rows(), t.Cols[0].Name, rows)
		}
		rows = d.Rows()
	}
	return tf, max(rows, 0), nil
}

// Table is the table as opened: a column whose dataset is missing has no name.
func (tf *TableFile) Table() Table { return tf.t }

// Dataset is the open dataset of column col (nil when the column is absent).
func (tf *TableFile) Dataset(col int) *h5.Dataset { return tf.ds[col] }

// Read reads rows [start, start+n) into b (reset first). Errors are ErrInput.
func (tf *TableFile) Read(b *Block, start int64, n int) error {
	b.Reset()
	for i, d := range tf.ds {
		if d == nil {
			continue
		}
		switch d.Kind() {
		case h5.String:
			s, err := d.ReadStrings(start, n)
			if err != nil {
				return WrapRead(tf.path, err)
			}
			b.Strs[i] = append(b.Strs[i], s...)
		case h5.Int64:
			v, err := d.ReadInt64(start, n)
			if err != nil {
				return WrapRead(tf.path, err)
			}
			b.Ints[i] = append(b.Ints[i], v...)
		default:
			w := b.rowB[i]
			if cap(b.Raw[i]) < n*w {
				b.Raw[i] = make([]byte, n*w)
			}
			b.Raw[i] = b.Raw[i][:n*w]
			if err := d.ReadRaw(start, n, b.Raw[i]); err != nil {
				return WrapRead(tf.path, err)
			}
		}
	}
	b.N = n
	return nil
}

// WriteAt writes b's rows at [start, start+b.N), growing the datasets when needed. A column
// the block lacks (ids when the source had none) is written as empty strings. Errors are
// ErrOutput.
func (tf *TableFile) WriteAt(b *Block, start int64) error {
	if b.N == 0 {
		return nil
	}
	for i, d := range tf.ds {
		if d == nil {
			continue
		}
		var err error
		switch d.Kind() {
		case h5.String:
			s := b.Strs[i]
			if len(s) != b.N {
				s = make([]string, b.N)
			}
			err = d.WriteStrings(start, storedStrings(s))
		case h5.Int64:
			v := b.Ints[i]
			if len(v) != b.N {
				v = make([]int64, b.N)
			}
			err = d.WriteInt64(start, v)
		default:
			err = d.WriteRaw(start, b.N, b.Raw[i])
		}
		if err != nil {
			return WrapWrite(tf.path, err)
		}
	}
	return nil
}

// Pending is the block of rows the next Flush appends (created tables only).
func (tf *TableFile) Pending() *Block { return tf.pending }

// Written is the number of rows Flush has appended (plus the rows the table was created
// with): the row index the pending block starts at.
func (tf *TableFile) Written() int64 { return tf.written }

// Flush appends the pending rows and empties the pending block. Errors are ErrOutput.
func (tf *TableFile) Flush() error {
	if tf.pending == nil || tf.pending.N == 0 {
		return nil
	}
	if err := tf.WriteAt(tf.pending, tf.written); err != nil {
		return err
	}
	tf.written += int64(tf.pending.N)
	tf.pending.Reset()
	return nil
}

// Close closes the datasets (writing what HDF5 still caches, for a table being written);
// safe to call twice and on nil.
func (tf *TableFile) Close() error {
	if tf == nil {
		return nil
	}
	var first error
	for _, d := range tf.ds {
		if err := d.Close(); err != nil && first == nil {
			first = err
		}
	}
	if tf.write {
		return WrapWrite(tf.path, first)
	}
	return WrapRead(tf.path, first)
}
