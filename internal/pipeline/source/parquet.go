// parquet.go: a local parquet file as input (img2dataset's input lists and output metadata,
// LAION's URL lists), recognised by its magic bytes and streamed row group by row group, page
// by page, reading only the URL, ID and carried columns, through the same URL checks,
// sharding and limit as a list.

package source

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// FormatParquet is reported in Info for a parquet input. It is decided by the content (the
// magic bytes "PAR1"), never by the name or Options.Format.
const FormatParquet Format = "parquet"

// parquetMagic starts (and ends) every parquet file.
const parquetMagic = "PAR1"

// parquetBatch is how many values of one column are decoded at a time.
const parquetBatch = 512

// openParquet opens spec as a parquet file when it is one: a local regular file whose first
// bytes are "PAR1". ok is false for anything else (the caller goes on as for a list). An
// http(s) URL whose path ends in .parquet is refused (ok true, with an error): parquet is read
// from its footer backwards, which needs random access a stream does not give.
func openParquet(ctx context.Context, spec string, opt Options) (s *Source, ok bool, err error) {
	lower := strings.ToLower(spec)
	if strings.HasPrefix(lower, "http://") || strings.HasPrefix(lower, "https://") {
		if strings.HasSuffix(strings.ToLower(urlName(spec)), ".parquet") {
			return nil, true, fmt.Errorf("source %s: a parquet file cannot be streamed over http(s) (it is read from its footer); download it first (curl -o list.parquet URL) and give the local path", spec)
		}
		return nil, false, nil
	}
	if spec == "-" || strings.Contains(spec, "://") || strings.HasPrefix(lower, "openimages:") {
		return nil, false, nil
	}
	if st, err := os.Stat(spec); err != nil || !st.Mode().IsRegular() {
		return nil, false, nil // Open reports it; a FIFO is not opened here (that waits for a writer)
	}
	f, err := os.Open(spec)
	if err != nil {
		return nil, false, nil // Open reports it
	}
	st, err := f.Stat()
	var magic [len(parquetMagic)]byte
	if err != nil || !st.Mode().IsRegular() || st.Size() < 12 {
		f.Close()
		return nil, false, nil
	}
	if _, err := f.ReadAt(magic[:], 0); err != nil || string(magic[:]) != parquetMagic {
		f.Close()
		return nil, false, nil
	}
	s, err = startParquet(ctx, f, spec, opt)
	return s, true, err
}

// parquetColumn is one column being read: a cursor over its values across the pages of the
// current row group.
type parquetColumn struct {
	name  string // as the schema spells it
	index int    // the leaf column's index in a row group
	pages parquet.Pages
	page  parquet.ValueReader // nil between pages
	buf   []parquet.Value
	pos   int
	cur   parquet.Value // the current row's value
}

// open starts the column's pages in row group rg.
func (c *parquetColumn) open(rg parquet.RowGroup) {
	c.close()
	c.pages = rg.ColumnChunks()[c.index].Pages()
}

func (c *parquetColumn) close() {
	if c.pages != nil {
		c.pages.Close()
	}
	c.pages, c.page, c.buf, c.pos = nil, nil, c.buf[:0], 0
}

// next returns the column's next value; io.EOF at the end of the row group's pages.
func (c *parquetColumn) next() (parquet.Value, error) {
	for c.pos == len(c.buf) {
		if c.page == nil {
			p, err := c.pages.ReadPage()
			if err != nil {
				return parquet.Value{}, err
			}
			c.page = p.Values()
		}
		n, err := c.page.ReadValues(c.buf[:cap(c.buf)])
		c.buf, c.pos = c.buf[:n], 0
		if err == io.EOF {
			c.page = nil
		} else if err != nil {
			return parquet.Value{}, err
		}
	}
	v := c.buf[c.pos]
	c.pos++
	return v, nil
}

// parquetRows is what the reading goroutine of a parquet input holds.
type parquetRows struct {
	file                    *parquet.File
	p                       *parser // for its URL checks and Record building
	url, id, md5, size      *parquetColumn
	carried                 []*parquetColumn // one per Options.Columns entry, in order
	carriedNames            []string         // the names asked for, the keys of Item.Columns
	text                    *parquetColumn   // Options.TextColumn's column; nil when none is asked for
	read                    []*parquetColumn // every column to read, each once
	group                   int              // the row group being read; -1 before the first
	left                    int64            // rows left in it
	row                     int64            // rows read so far
	urlByteArray, idPresent bool
}

// startParquet reads f's footer and schema (so a file without a URL column is an error from
// Open), then starts the goroutine that streams its rows.
func startParquet(ctx context.Context, f *os.File, spec string, opt Options) (*Source, error) {
	fingerprint, size, err := fileFingerprint(spec)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("source: %w", err)
	}
	// Rows may name local files, as a local list's rows may (relative to the file's folder).
	baseDir := ""
	if abs, err := filepath.Abs(spec); err == nil {
		baseDir = filepath.Dir(abs)
	}
	return startParquetFile(ctx, f, f, spec, fingerprint, size, baseDir, opt)
}

// startParquetFile is startParquet for the file f of size bytes, closed with c; rows may
// name local files relative to baseDir ("": rows are URLs only).
func startParquetFile(ctx context.Context, f *os.File, c io.Closer, spec, fingerprint string, size int64, baseDir string, opt Options) (*Source, error) {
	closer := &onceCloser{c: c}
	fail := func(err error) (*Source, error) {
		closer.Close()
		return nil, err
	}
	var err error
	counted := &countingReader{}
	pf, err := openParquetFile(countingReaderAt{f, counted}, size)
	if err != nil {
		return fail(fmt.Errorf("source %s: starts like parquet but cannot be read: %w", spec, err))
	}
	fields := pf.Root().Columns()
	cols := make([]string, len(fields))
	for i, c := range fields {
		cols[i] = c.Name()
	}
	info := Info{Spec: spec, Format: FormatParquet, Columns: cols, Fingerprint: fingerprint, TotalBytes: size, TotalRows: pf.NumRows()}

	byIndex := map[int]*parquetColumn{}
	// column finds the first of names (case-insensitive) among the top-level columns; it must
	// be a flat leaf to give one value a row.
	column := func(names ...string) (*parquetColumn, error) {
		for _, n := range names {
			for _, c := range fields {
				if !strings.EqualFold(c.Name(), n) {
					continue
				}
				if !c.Leaf() || c.Repeated() {
					return nil, fmt.Errorf("column %q is a list or a group, not one value a row", c.Name())
				}
				if pc := byIndex[c.Index()]; pc != nil {
					return pc, nil
				}
				pc := &parquetColumn{name: c.Name(), index: c.Index(), buf: make([]parquet.Value, 0, parquetBatch)}
				byIndex[c.Index()] = pc
				return pc, nil
			}
		}
		return nil, nil
	}
	maxURL := opt.MaxURLBytes
	if maxURL == 0 {
		maxURL = DefaultMaxURLBytes
	}
	r := &parquetRows{file: pf, group: -1, p: &parser{maxURL: maxURL, urlIdx: -1, idIdx: -1, md5Idx: -1, sizeIdx: -1,
		pathRows: baseDir != "", baseDir: baseDir}}
	if opt.URLColumn != "" {
		if r.url, err = column(opt.URLColumn); err == nil && r.url == nil {
			err = fmt.Errorf("no column %q; the columns are %s", opt.URLColumn, listColumns(cols))
		}
	} else if r.url, err = column(urlColumnNames...); err == nil && r.url == nil {
		err = fmt.Errorf("no URL column (looked for %s); the columns are %s; name the URL column with --url-column",
			strings.Join(urlColumnNames, ", "), listColumns(cols))
	}
	if err != nil {
		return fail(fmt.Errorf("source %s: %w", spec, err))
	}
	info.URLColumn = r.url.name
	if r.id, err = column(idColumnNames...); err != nil {
		r.id = nil // an unusable ID column is no ID column
	} else if r.id != nil {
		info.IDColumn = r.id.name
	}
	switch {
	case strings.EqualFold(info.URLColumn, "OriginalURL"):
		// Expected checksums describe the original file only, as for CSV.
		r.md5, _ = column("OriginalMD5")
		r.size, _ = column("OriginalSize")
	case strings.EqualFold(info.URLColumn, "Thumbnail300KURL"):
		r.p.emptyReason = "no thumbnail URL"
	}
	for _, name := range opt.Columns {
		c, err := column(name)
		if err == nil && c == nil {
			err = fmt.Errorf("no column %q to save; the columns are %s", name, listColumns(cols))
		}
		if err != nil {
			return fail(fmt.Errorf("source %s: %w", spec, err))
		}
		r.carried, r.carriedNames = append(r.carried, c), append(r.carriedNames, name)
	}
	if opt.TextColumn != "" {
		if r.text, err = column(opt.TextColumn); err == nil && r.text == nil {
			err = fmt.Errorf("no text column %q; the columns are %s", opt.TextColumn, listColumns(cols))
		}
		if err != nil {
			return fail(fmt.Errorf("source %s: %w", spec, err))
		}
	}
	for _, c := range byIndex {
		r.read = append(r.read, c)
	}

	buffer := opt.Buffer
	if buffer == 0 {
		buffer = DefaultBuffer
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Source{info: info, out: make(chan Record, buffer), done: make(chan struct{}), cancel: cancel, closer: closer, counted: counted}
	go s.run(ctx, r, opt)
	return s, nil
}

// openParquetFile reads the footer and schema of a parquet file of size bytes. The footer's
// length is checked against the file first: parquet-go allocates whatever length the last
// bytes declare (up to 4 GiB for a 2 KB file, found by FuzzParquet).
func openParquetFile(r io.ReaderAt, size int64) (pf *parquet.File, err error) {
	defer recoverParquet(&err)
	var tail [8]byte // the footer's length, then the magic
	if _, err := r.ReadAt(tail[:], size-8); err != nil {
		return nil, fmt.Errorf("reading the footer: %w", err)
	}
	if n := int64(binary.LittleEndian.Uint32(tail[:4])); n > size-int64(len(parquetMagic))-8 {
		return nil, fmt.Errorf("the footer's length %d is larger than the file (%d bytes); truncated or corrupt", n, size)
	}
	pf, err = parquet.OpenFile(r, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err == nil {
		pf.Root().Columns() // walks the schema, which a corrupt footer can break
	}
	return pf, err
}

// recoverParquet turns a panic inside parquet-go into *err: some corrupt files make it panic
// rather than return an error (a data page declaring a negative size, found by FuzzParquet),
// and on the reading goroutine a panic would end the whole program.
func recoverParquet(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("corrupt parquet data (the parquet reader failed: %v)", r)
	}
}

// runParquet ends the stream as run does for a list.
func (r *parquetRows) readError(spec string, err error) error {
	return fmt.Errorf("source %s: reading row %d (row group %d): %w", spec, r.row+1, r.group, err)
}

func (r *parquetRows) close() {
	var err error
	defer recoverParquet(&err) // nothing to report: the stream has ended already
	for _, c := range r.read {
		c.close()
	}
}

// next reads one row and returns its Record and shard key (the URL; for a row without one,
// "row N"); ok is false after the last row.
func (r *parquetRows) next() (rec Record, key string, ok bool, err error) {
	defer recoverParquet(&err)
	for r.left == 0 {
		groups := r.file.RowGroups()
		if r.group+1 >= len(groups) {
			return Record{}, "", false, nil
		}
		r.group++
		rg := groups[r.group]
		for _, c := range r.read {
			c.open(rg)
		}
		r.left = rg.NumRows()
	}
	for _, c := range r.read {
		var err error
		c.cur, err = c.next()
		if err == io.EOF {
			return Record{}, "", false, fmt.Errorf("column %q has fewer values than the row group's %d rows", c.name, r.file.RowGroups()[r.group].NumRows())
		}
		if err != nil {
			return Record{}, "", false, err
		}
	}
	r.left--
	r.row++
	raw := func(c *parquetColumn) []byte {
		if c == nil {
			return nil
		}
		v := c.cur
		if v.IsNull() {
			return nil
		}
		if k := v.Kind(); k == parquet.ByteArray || k == parquet.FixedLenByteArray {
			return v.ByteArray() // p.item copies what it keeps
		}
		return []byte(v.String())
	}
	rec, key = r.p.item(r.row, raw(r.url), raw(r.id), raw(r.md5), raw(r.size))
	if key == "" {
		key = "row " + strconv.FormatInt(r.row, 10)
	}
	if rec.Failure == nil && len(r.carried) > 0 {
		rec.Item.Columns = make(map[string]string, len(r.carried))
		for i, c := range r.carried {
			rec.Item.Columns[r.carriedNames[i]] = parquetString(c.cur)
		}
	}
	if rec.Failure == nil && r.text != nil {
		rec.Item.Text = parquetString(r.text.cur)
	}
	return rec, key, true, nil
}

// parquetString is a value as a carried column shows it: strings as they are, numbers in
// decimal, null as "".
func parquetString(v parquet.Value) string {
	if v.IsNull() {
		return ""
	}
	return strings.ToValidUTF8(v.String(), "\uFFFD")
}

// countingReaderAt counts the bytes read from a parquet file into counted, for Stats.Bytes.
type countingReaderAt struct {
	r       io.ReaderAt
	counted *countingReader
}

func (c countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.counted.n.Add(int64(n))
	return n, err
}
