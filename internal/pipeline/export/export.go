// export.go: NPY, the export of an output file's embedded rows as numbered parts of an
// .npy embeddings file and a .parquet metadata file with the same rows, read in blocks.
package export

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/parquet-go/parquet-go"

	"github.com/clipd/clipd/internal/cgo/h5"
	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// DefaultRowsPerPart is the rows of each part when Options.RowsPerPart is 0.
const DefaultRowsPerPart = 1_000_000

// The folders and file names clip-retrieval's inference writes and its index step (and
// autofaiss) read.
const (
	EmbDir      = "img_emb"
	MetadataDir = "metadata"
	TextEmbDir  = "text_emb" // the text embeddings (clip-retrieval's --enable_text)
)

var (
	embPartRe      = regexp.MustCompile(`^img_emb_([0-9]+)\.npy$`)
	metadataPartRe = regexp.MustCompile(`^metadata_([0-9]+)\.parquet$`)
	textEmbPartRe  = regexp.MustCompile(`^text_emb_([0-9]+)\.npy$`)
)

// EmbPath and MetadataPath are part k's files under dir.
func EmbPath(dir string, k int) string {
	return filepath.Join(dir, EmbDir, "img_emb_"+strconv.Itoa(k)+".npy")
}

func MetadataPath(dir string, k int) string {
	return filepath.Join(dir, MetadataDir, "metadata_"+strconv.Itoa(k)+".parquet")
}

// TextEmbPath is part k's text embeddings under dir (files with text_embeddings).
func TextEmbPath(dir string, k int) string {
	return filepath.Join(dir, TextEmbDir, "text_emb_"+strconv.Itoa(k)+".npy")
}

// PartIndex is k for a part's file name (img_emb_K.npy in img_emb, metadata_K.parquet in
// metadata, text_emb_K.npy in text_emb); ok is false for any other name.
func PartIndex(dir, name string) (k int, ok bool) {
	re := embPartRe
	switch dir {
	case EmbDir:
	case MetadataDir:
		re = metadataPartRe
	case TextEmbDir:
		re = textEmbPartRe
	default:
		return 0, false
	}
	m := re.FindStringSubmatch(name)
	if m == nil {
		return 0, false
	}
	k, err := strconv.Atoi(m[1])
	return k, err == nil
}

// Options are the settings of an export.
type Options struct {
	Dir         string // the folder that gets img_emb/ and metadata/
	RowsPerPart int64  // rows of each part (the last has the rest); 0: DefaultRowsPerPart
	Dtype       string // "float16" or "float32"; "": the file's
	// Done, when set, is called after part k's files (two, or three with text_emb) are
	// complete (renamed to their names), in part order, with their paths; an error stops the
	// export. It may move the
	// files elsewhere (clipd export uploads them to s3:// and removes them).
	Done func(k int, files []string) error
}

// Result says what an export wrote.
type Result struct {
	Rows    int64
	Dim     int
	Dtype   string
	Parts   int
	Columns []string // the metadata columns, in the parquet files' order
	Text    bool     // text_emb/ was written: the file has text_embeddings
}

// rowGroupRows caps the rows a parquet writer holds in memory before writing a row group.
const rowGroupRows = 64 << 10

// tmpSuffix marks a part being written; it is renamed without it when complete.
const tmpSuffix = ".tmp"

// NPY exports the embedded rows of the clipd output file path into opt.Dir: part k holds rows
// [k*RowsPerPart, (k+1)*RowsPerPart) as img_emb/img_emb_k.npy (N x D, row order) and
// metadata/metadata_k.parquet (url, image_id, the carried columns, width, height; same
// order), and, when the file has text_embeddings, text_emb/text_emb_k.npy (N x D, the text
// embedding of each row, same order), as clip-retrieval's inference writes them. Each file is written beside its final name and renamed when complete; parts of an
// earlier export beyond the last are removed, so a rerun replaces an export. Errors are
// outfile.ErrInput (the file) or outfile.ErrOutput (the folder), or ctx's.
func NPY(ctx context.Context, path string, opt Options) (Result, error) {
	f, err := outfile.Open(path)
	if err != nil {
		return Result{}, err
	}
	defer f.Close()
	src, err := openSource(f)
	if err != nil {
		return Result{}, err
	}
	defer src.close()

	res := Result{Rows: src.rows, Dim: src.emb.Cols(), Dtype: src.emb.Kind().String(), Text: src.text != nil}
	outKind := src.emb.Kind()
	switch opt.Dtype {
	case "":
	case "float16":
		outKind = h5.Float16
	case "float32":
		outKind = h5.Float32
	default:
		return Result{}, fmt.Errorf("dtype %q: want float16 or float32", opt.Dtype)
	}
	res.Dtype = outKind.String()
	for _, c := range src.cols {
		res.Columns = append(res.Columns, c.name)
	}
	per := opt.RowsPerPart
	if per == 0 {
		per = DefaultRowsPerPart
	}
	if per < 0 {
		return Result{}, fmt.Errorf("rows per part %d: want 1 or more", per)
	}
	res.Parts = int(max(1, (src.rows+per-1)/per)) // an empty file still gets part 0, of 0 rows

	dirs := []string{EmbDir, MetadataDir}
	if res.Text {
		dirs = append(dirs, TextEmbDir)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(opt.Dir, d), 0o755); err != nil {
			return Result{}, outfile.WrapWrite(filepath.Join(opt.Dir, d), err)
		}
	}
	p := newPartWriter(src, outKind)
	for k := 0; k < res.Parts; k++ {
		start := int64(k) * per
		if err := p.write(ctx, opt.Dir, k, start, min(per, src.rows-start)); err != nil {
			return Result{}, err
		}
		if opt.Done != nil {
			files := []string{EmbPath(opt.Dir, k), MetadataPath(opt.Dir, k)}
			if res.Text {
				files = append(files, TextEmbPath(opt.Dir, k))
			}
			if err := opt.Done(k, files); err != nil {
				return Result{}, err
			}
		}
	}
	if err := removeStale(filepath.Join(opt.Dir, EmbDir), embPartRe, res.Parts); err != nil {
		return Result{}, err
	}
	if err := removeStale(filepath.Join(opt.Dir, MetadataDir), metadataPartRe, res.Parts); err != nil {
		return Result{}, err
	}
	// Text parts of an earlier export go too when this file has none: they are other rows'.
	textParts := 0
	if res.Text {
		textParts = res.Parts
	}
	if _, err := os.Stat(filepath.Join(opt.Dir, TextEmbDir)); err == nil {
		if err := removeStale(filepath.Join(opt.Dir, TextEmbDir), textEmbPartRe, textParts); err != nil {
			return Result{}, err
		}
	}
	for _, d := range dirs {
		if err := outfile.SyncDir(filepath.Join(opt.Dir, d)); err != nil {
			return Result{}, err
		}
	}
	return res, nil
}

// metaColumn is one metadata column: a 1-D string or int64 dataset with the file's rows.
type metaColumn struct {
	name string // the parquet column
	ds   *h5.Dataset
}

// source is the open datasets an export reads.
type source struct {
	path string
	rows int64
	emb  *h5.Dataset
	text *h5.Dataset  // text_embeddings; nil when the file has none
	cols []metaColumn // url first
}

func (s *source) close() {
	s.emb.Close()
	s.text.Close()
	for _, c := range s.cols {
		c.ds.Close()
	}
}

// openSource opens the embeddings and the metadata columns of f: urls as url, image_ids as
// image_id, each carried input column (the saved_columns attribute, and caption when present)
// under its dataset's name, widths and heights as width and height.
func openSource(f *h5.File) (*source, error) {
	path := f.Path()
	s := &source{path: path}
	emb, err := openDataset(f, "embeddings", true)
	if err != nil || emb == nil {
		return nil, err
	}
	if emb.Cols() == 0 || (emb.Kind() != h5.Float32 && emb.Kind() != h5.Float16) {
		emb.Close()
		return nil, outfile.InputErrorf("%s: embeddings is not a matrix of float32 or float16: not a clipd output file", path)
	}
	s.emb, s.rows = emb, emb.Rows()
	if s.text, err = openDataset(f, outfile.TextEmbeddings, false); err != nil {
		s.close()
		return nil, err
	}
	if t := s.text; t != nil && (t.Kind() != emb.Kind() || t.Cols() != emb.Cols() || t.Rows() != s.rows) {
		s.close()
		return nil, outfile.InputErrorf("%s: %s is %d x %d %s, embeddings %d x %d %s: the file is damaged", path, outfile.TextEmbeddings,
			t.Rows(), t.Cols(), t.Kind(), s.rows, emb.Cols(), emb.Kind())
	}

	type want struct {
		dataset, column string
		kind            h5.Kind
		required        bool
	}
	wants := []want{{"urls", "url", h5.String, true}, {"image_ids", "image_id", h5.String, false}}
	for _, name := range carriedColumns(f) {
		wants = append(wants, want{name, name, h5.String, false})
	}
	wants = append(wants, want{"widths", "width", h5.Int64, false}, want{"heights", "height", h5.Int64, false})
	seen := map[string]bool{}
	for _, w := range wants {
		if seen[w.dataset] {
			continue
		}
		seen[w.dataset] = true
		d, err := openDataset(f, w.dataset, w.required)
		if err != nil {
			s.close()
			return nil, err
		}
		if d == nil {
			continue
		}
		s.cols = append(s.cols, metaColumn{w.column, d})
		switch {
		case d.Cols() != 0 || d.Kind() != w.kind:
			s.close()
			return nil, outfile.InputErrorf("%s: %s holds %s x %d, want one %s a row", path, w.dataset, d.Kind(), max(1, d.Cols()), w.kind)
		case d.Rows() != s.rows:
			s.close()
			return nil, outfile.InputErrorf("%s: %s has %d rows, embeddings has %d: the file is damaged", path, w.dataset, d.Rows(), s.rows)
		}
	}
	return s, nil
}

// carriedColumns are the datasets of the input columns f carries: those its saved_columns
// attribute names (Attrs.Columns, stored under SavedName), and caption (the column
// clip-retrieval's metadata has) when present.
func carriedColumns(f *h5.File) []string {
	var names []string
	if attrs, err := outfile.ReadAttrs(f); err == nil {
		for _, c := range attrs.Columns {
			if !outfile.ReservedName(c) {
				names = append(names, outfile.SavedName(c))
			}
		}
	}
	names = append(names, "caption")
	out := names[:0]
	for _, n := range names {
		if ok, _ := f.Has(n); ok && n != "url" && n != "image_id" && n != "width" && n != "height" {
			out = append(out, n)
		}
	}
	return out
}

// openDataset opens dataset name of f; a missing one is nil, or an error when required.
func openDataset(f *h5.File, name string, required bool) (*h5.Dataset, error) {
	ok, err := f.Has(name)
	if err != nil {
		return nil, outfile.WrapRead(f.Path(), err)
	}
	if !ok {
		if required {
			return nil, outfile.InputErrorf("%s has no %s dataset: not a clipd output file", f.Path(), name)
		}
		return nil, nil
	}
	d, err := outfile.OpenDataset(f, name, outfile.FinalCache)
	if err != nil {
		return nil, outfile.WrapRead(f.Path(), err)
	}
	return d, nil
}

// partWriter writes parts, reusing its buffers from one block to the next.
type partWriter struct {
	src     *source
	outKind h5.Kind
	schema  *parquet.Schema
	leaf    []int  // the parquet leaf column of each of src.cols
	raw     []byte // a block of embeddings as stored
	conv    []byte // the block converted to outKind
	rows    []parquet.Row
}

// newPartWriter makes the metadata files' schema: every column required. parquet-go's Group
// orders its fields by name, so each source column's leaf is looked up.
func newPartWriter(src *source, outKind h5.Kind) *partWriter {
	g := parquet.Group{}
	for _, c := range src.cols {
		if c.ds.Kind() == h5.Int64 {
			g[c.name] = parquet.Int(64)
		} else {
			g[c.name] = parquet.String()
		}
	}
	p := &partWriter{src: src, outKind: outKind, schema: parquet.NewSchema("metadata", g)}
	leaf := map[string]int{}
	for i, path := range p.schema.Columns() {
		leaf[path[0]] = i
	}
	for _, c := range src.cols {
		p.leaf = append(p.leaf, leaf[c.name])
	}
	return p
}

// npyPart is one .npy file of a part being written: a matrix dataset's rows.
type npyPart struct {
	ds   *h5.Dataset
	path string // its final name; written as path+tmpSuffix
	f    *os.File
	buf  *bufio.Writer
}

// write writes part k, rows [start, start+n), to its files: the embeddings, the text
// embeddings when the file has them, and the metadata.
func (p *partWriter) write(ctx context.Context, dir string, k int, start, n int64) (err error) {
	npys := []*npyPart{{ds: p.src.emb, path: EmbPath(dir, k)}}
	if p.src.text != nil {
		npys = append(npys, &npyPart{ds: p.src.text, path: TextEmbPath(dir, k)})
	}
	metaPath := MetadataPath(dir, k)
	descr := "<f4"
	if p.outKind == h5.Float16 {
		descr = "<f2"
	}
	for _, m := range npys {
		if m.f, err = createTmp(m.path); err != nil {
			return err
		}
		defer func() {
			if err != nil {
				m.f.Close()
				os.Remove(m.path + tmpSuffix)
			}
		}()
		header, err := NPYHeader(descr, n, m.ds.Cols())
		if err != nil {
			return outfile.WrapWrite(m.path+tmpSuffix, err)
		}
		m.buf = bufio.NewWriterSize(m.f, 1<<20)
		if _, err := m.buf.Write(header); err != nil {
			return outfile.WrapWrite(m.path+tmpSuffix, err)
		}
	}
	meta, err := createTmp(metaPath)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			meta.Close()
			os.Remove(metaPath + tmpSuffix)
		}
	}()
	pw := parquet.NewWriter(meta, p.schema, parquet.Compression(&parquet.Snappy), parquet.MaxRowsPerRowGroup(rowGroupRows))

	for done := int64(0); done < n; {
		if err := ctx.Err(); err != nil {
			return err
		}
		rows := int(min(n-done, outfile.ReadRows))
		for _, m := range npys {
			vals, err := p.readMatrix(m.ds, start+done, rows)
			if err != nil {
				return err
			}
			if _, err := m.buf.Write(vals); err != nil {
				return outfile.WrapWrite(m.path+tmpSuffix, err)
			}
		}
		meta, err := p.readMetadata(start+done, rows)
		if err != nil {
			return err
		}
		if _, err := pw.WriteRows(meta); err != nil {
			return outfile.WrapWrite(metaPath+tmpSuffix, err)
		}
		done += int64(rows)
	}
	for _, m := range npys {
		if err := m.buf.Flush(); err != nil {
			return outfile.WrapWrite(m.path+tmpSuffix, err)
		}
	}
	if err := pw.Close(); err != nil {
		return outfile.WrapWrite(metaPath+tmpSuffix, err)
	}
	for _, m := range npys {
		if err := finish(m.f, m.path); err != nil {
			return err
		}
	}
	return finish(meta, metaPath)
}

// readMatrix reads rows [start, start+n) of a matrix dataset of the file (the embeddings or
// the text embeddings) as little-endian outKind values.
func (p *partWriter) readMatrix(e *h5.Dataset, start int64, n int) ([]byte, error) {
	size := n * e.Cols() * e.Kind().Size()
	if cap(p.raw) < size {
		p.raw = make([]byte, size)
	}
	p.raw = p.raw[:size]
	if err := e.ReadRaw(start, n, p.raw); err != nil {
		return nil, outfile.WrapRead(p.src.path, err)
	}
	if e.Kind() == p.outKind {
		return p.raw, nil
	}
	vals := n * e.Cols()
	out := p.conv[:0]
	if p.outKind == h5.Float16 {
		for i := 0; i < vals; i++ {
			v := math.Float32frombits(binary.LittleEndian.Uint32(p.raw[4*i:]))
			out = binary.LittleEndian.AppendUint16(out, h5.Float32ToFloat16(v))
		}
	} else {
		for i := 0; i < vals; i++ {
			v := h5.Float16ToFloat32(binary.LittleEndian.Uint16(p.raw[2*i:]))
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
		}
	}
	p.conv = out
	return out, nil
}

// readMetadata reads rows [start, start+n) of the metadata columns as parquet rows.
func (p *partWriter) readMetadata(start int64, n int) ([]parquet.Row, error) {
	if cap(p.rows) < n {
		p.rows = make([]parquet.Row, n)
	}
	rows := p.rows[:n]
	for i := range rows {
		rows[i] = make(parquet.Row, len(p.src.cols))
	}
	for j, c := range p.src.cols {
		col := p.leaf[j]
		if c.ds.Kind() == h5.Int64 {
			v, err := c.ds.ReadInt64(start, n)
			if err != nil {
				return nil, outfile.WrapRead(p.src.path, err)
			}
			for i := range rows {
				rows[i][col] = parquet.Int64Value(v[i]).Level(0, 0, col)
			}
			continue
		}
		s, err := c.ds.ReadStrings(start, n)
		if err != nil {
			return nil, outfile.WrapRead(p.src.path, err)
		}
		for i := range rows {
			rows[i][col] = parquet.ByteArrayValue([]byte(s[i])).Level(0, 0, col)
		}
	}
	return rows, nil
}

// createTmp creates path's temporary file.
func createTmp(path string) (*os.File, error) {
	f, err := os.Create(path + tmpSuffix)
	if err != nil {
		return nil, outfile.WrapWrite(path+tmpSuffix, err)
	}
	return f, nil
}

// finish syncs and closes the temporary file f and renames it to path.
func finish(f *os.File, path string) error {
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return outfile.WrapWrite(path+tmpSuffix, err)
	}
	if err := os.Rename(path+tmpSuffix, path); err != nil {
		return outfile.WrapWrite(path, err)
	}
	return nil
}

// removeStale removes the parts in dir numbered parts or more (those of an earlier, longer
// export), which autofaiss would otherwise read as rows of this one.
func removeStale(dir string, re *regexp.Regexp, parts int) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return outfile.WrapWrite(dir, err)
	}
	for _, e := range ents {
		m := re.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		if k, err := strconv.Atoi(m[1]); err == nil && k < parts {
			continue
		}
		if err := outfile.Remove(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
