// reader.go: from bytes to Records — gzip sniffing, the format rule, the header, and the
// reading goroutine that turns each row into an item or a failure and applies shard and limit.

package source

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/clipd/clipd/internal/echo"
	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/pipeline/item"
)

// maxRecordLines bounds a CSV record whose quoted field spans lines; a quote still open after
// this many lines is reported as bad quoting and the following lines are read again as rows.
const maxRecordLines = 32

// Names a header's URL and ID columns are found by, first match wins (case-insensitive).
var (
	urlColumnNames = []string{"url", "OriginalURL", "Thumbnail300KURL"}
	idColumnNames  = []string{"ImageID", "id", "image_id"}
)

// tsvHTTPData is the first line of Google's URL-list format (Storage Transfer Service), in
// which Open Images once published its image lists: URL, size and base64 MD5 per line.
const tsvHTTPData = "TsvHttpData-1.0"

// rowConfig is what an openimages: input fixes beyond Options.
type rowConfig struct {
	format       Format
	urlColumn    string
	mirrorPrefix string // non-empty: URL = mirrorPrefix + ImageID + ".jpg"
	cached       string
	localFiles   bool   // rows are absolute paths of local files (a folder input), not URLs
	baseDir      string // a local list's folder: rows may name files (absolute, file://, or relative to it)
	stdinPaths   bool   // standard input: rows may name files (relative to the working folder)
	stream       bool   // reads may block for ever (stdin, a FIFO): abandon them when the Source ends
	fingerprint  string
	totalBytes   int64 // of the raw input; -1 unknown
	totalRows    int64 // exact data rows; 0 unknown
}

// parser turns lines into Records; used by the reading goroutine only.
type parser struct {
	lr     *lineReader
	format Format
	sp     splitter

	urlIdx, idIdx, md5Idx, sizeIdx int // -1 when absent
	ncols                          int // header columns
	urlColumn                      string
	emptyReason                    string
	mirrorPrefix                   string
	localFiles                     bool
	pathRows                       bool   // rows may name local files besides http(s) URLs
	baseDir                        string // what relative paths are relative to
	colNames                       []string
	colIdx                         []int
	textIdx                        int // Options.TextColumn's column; -1 when none is asked for
	maxURL                         int
	pending                        []byte
}

func start(ctx context.Context, rc io.ReadCloser, spec, name string, opt Options, cfg rowConfig) (*Source, error) {
	ctx, cancel := context.WithCancel(ctx)
	if cfg.stream {
		rc = newAbandonable(ctx, rc)
	}
	closer := &onceCloser{c: rc}
	fail := func(err error) (*Source, error) {
		cancel()
		closer.Close()
		return nil, err
	}
	counted := &countingReader{r: rc}
	br := bufio.NewReaderSize(counted, maxLineBytes)
	magic, err := br.Peek(2)
	if err != nil && err != io.EOF {
		return fail(fmt.Errorf("source %s: %w", spec, err))
	}
	lines, gz := br, false
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fail(fmt.Errorf("source %s: starts like gzip but is not: %w", spec, err))
		}
		lines, gz = bufio.NewReaderSize(zr, maxLineBytes), true
	}
	first, err := firstLine(lines)
	if err != nil {
		return fail(fmt.Errorf("source %s: %w", spec, err))
	}
	format := opt.Format
	if cfg.format != "" {
		format = cfg.format
	}
	if format == FormatAuto {
		format = detectFormat(first, name)
	}
	if strings.TrimSpace(first) == tsvHTTPData {
		format = FormatTSV
	}
	maxURL := opt.MaxURLBytes
	if maxURL == 0 {
		maxURL = DefaultMaxURLBytes
	}
	p := &parser{
		lr: newLineReader(lines), format: format, maxURL: maxURL,
		urlIdx: -1, idIdx: -1, md5Idx: -1, sizeIdx: -1,
		mirrorPrefix: cfg.mirrorPrefix,
		localFiles:   cfg.localFiles,
		pathRows:     cfg.baseDir != "" || cfg.stdinPaths,
		baseDir:      cfg.baseDir,
		colNames:     opt.Columns,
		textIdx:      -1,
	}
	p.sp.sep, p.sp.quotes = ',', true
	if format == FormatTSV {
		p.sp.sep, p.sp.quotes = '\t', false
	}
	if format == FormatText && len(opt.Columns) > 0 {
		return fail(fmt.Errorf("source %s: a plain list has no columns to save (%s); give a CSV, TSV or parquet list, or tar shards", spec, strings.Join(opt.Columns, ", ")))
	}
	if format == FormatText && opt.TextColumn != "" {
		return fail(fmt.Errorf("source %s: a plain list or a folder of images has no text column %q; give a CSV, TSV or parquet list with captions, or tar shards", spec, opt.TextColumn))
	}
	info := Info{Spec: spec, Format: format, Gzip: gz, Cached: cfg.cached,
		Fingerprint: cfg.fingerprint, TotalBytes: cfg.totalBytes, TotalRows: cfg.totalRows}
	if format != FormatText {
		column := opt.URLColumn
		if cfg.urlColumn != "" {
			column = cfg.urlColumn
		}
		if err := p.readHeader(column, opt.TextColumn, &info); err != nil {
			return fail(fmt.Errorf("source %s: %w", spec, err))
		}
	}
	buffer := opt.Buffer
	if buffer == 0 {
		buffer = DefaultBuffer
	}
	s := &Source{info: info, out: make(chan Record, buffer), done: make(chan struct{}), cancel: cancel, closer: closer, counted: counted}
	go s.run(ctx, p, opt)
	return s, nil
}

// firstLine returns the first non-blank line of the input without consuming it ("" for an
// empty input). It reads only as far as it must, so a slow stream that has sent one line is
// not held up waiting for a full buffer.
func firstLine(br *bufio.Reader) (string, error) {
	for {
		n := br.Buffered()
		b, _ := br.Peek(n)
		b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
		for {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				break
			}
			if l := bytes.TrimSpace(b[:i]); len(l) > 0 {
				return string(l), nil
			}
			b = b[i+1:]
		}
		if n >= maxLineBytes {
			return string(bytes.TrimSpace(b)), nil
		}
		if _, err := br.Peek(n + 1); err == io.EOF {
			b, _ := br.Peek(br.Buffered())
			return string(bytes.TrimSpace(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")))), nil
		} else if err != nil {
			return "", err
		}
	}
}

// detectFormat applies the rule documented on Open.
func detectFormat(first, name string) Format {
	lf := strings.ToLower(first)
	if strings.HasPrefix(first, "#") || strings.HasPrefix(lf, "http://") || strings.HasPrefix(lf, "https://") {
		return FormatText
	}
	switch strings.ToLower(filepath.Ext(strings.TrimSuffix(strings.ToLower(name), ".gz"))) {
	case ".csv":
		return FormatCSV
	case ".tsv", ".tab":
		return FormatTSV
	case ".txt", ".lst", ".list", ".urls":
		return FormatText
	}
	switch {
	case strings.Contains(first, "\t"):
		return FormatTSV
	case strings.Contains(first, ","):
		return FormatCSV
	}
	return FormatText
}

// readHeader reads the header row and finds the columns; column, when set, names the URL column.
func (p *parser) readHeader(column, textColumn string, info *Info) error {
	var l line
	for {
		var err error
		l, err = p.lr.next()
		if err == io.EOF {
			return nil // an empty input: no rows
		}
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(l.text)) > 0 {
			break
		}
	}
	if l.tooLong {
		return fmt.Errorf("line %d: the header is longer than %d KiB; is this a CSV/TSV file?", l.no, maxLineBytes>>10)
	}
	if string(bytes.TrimSpace(l.text)) == tsvHTTPData {
		info.Format, info.Columns, info.URLColumn = FormatTSV, []string{"URL", "Size", "MD5"}, "URL"
		p.urlIdx, p.sizeIdx, p.md5Idx, p.urlColumn = 0, 1, 2, "URL"
		if column != "" && !strings.EqualFold(column, "URL") {
			return fmt.Errorf("line %d: a %s list has no column %q", l.no, tsvHTTPData, column)
		}
		if textColumn != "" {
			return fmt.Errorf("line %d: a %s list has no text column %q", l.no, tsvHTTPData, textColumn)
		}
		if p.mirrorPrefix != "" {
			return fmt.Errorf("line %d: a %s list has no ImageID column for mirror URLs", l.no, tsvHTTPData)
		}
		return nil
	}
	if err := p.sp.split(l.text); err != nil {
		return fmt.Errorf("line %d: the header has %v; fix the file's first line", l.no, err)
	}
	cols := make([]string, len(p.sp.fields))
	for i, f := range p.sp.fields {
		cols[i] = string(bytes.TrimSpace(f))
	}
	info.Columns, p.ncols = cols, len(cols)
	find := func(names ...string) int {
		for _, n := range names {
			for i, c := range cols {
				if strings.EqualFold(c, n) {
					return i
				}
			}
		}
		return -1
	}
	if column != "" {
		if p.urlIdx = find(column); p.urlIdx < 0 {
			return fmt.Errorf("line %d: no column %q in the header; the columns are %s", l.no, column, listColumns(cols))
		}
	} else if p.urlIdx = find(urlColumnNames...); p.urlIdx < 0 {
		return fmt.Errorf("line %d: no URL column in the header (looked for %s); the columns are %s; name the URL column with the url-column option, or give a plain list of URLs, one a line",
			l.no, strings.Join(urlColumnNames, ", "), listColumns(cols))
	}
	p.urlColumn = cols[p.urlIdx]
	info.URLColumn = p.urlColumn
	for _, name := range p.colNames {
		i := find(name)
		if i < 0 {
			return fmt.Errorf("line %d: no column %q to save in the header; the columns are %s", l.no, name, listColumns(cols))
		}
		p.colIdx = append(p.colIdx, i)
	}
	if textColumn != "" {
		if p.textIdx = find(textColumn); p.textIdx < 0 {
			return fmt.Errorf("line %d: no text column %q in the header; the columns are %s", l.no, textColumn, listColumns(cols))
		}
	}
	if p.idIdx = find(idColumnNames...); p.idIdx >= 0 {
		info.IDColumn = cols[p.idIdx]
	}
	if p.mirrorPrefix != "" {
		if p.idIdx < 0 {
			return fmt.Errorf("line %d: mirror URLs need an ImageID column; the columns are %s", l.no, listColumns(cols))
		}
		return nil
	}
	// Expected checksums describe the original file only, not a thumbnail or a mirror copy.
	if strings.EqualFold(p.urlColumn, "OriginalURL") {
		p.md5Idx, p.sizeIdx = find("OriginalMD5"), find("OriginalSize")
	}
	if strings.EqualFold(p.urlColumn, "Thumbnail300KURL") {
		p.emptyReason = "no thumbnail URL"
	}
	return nil
}

func listColumns(cols []string) string {
	const most = 30
	q := make([]string, 0, min(len(cols), most)+1)
	for i, c := range cols {
		if i == most {
			q = append(q, fmt.Sprintf("... (%d in all)", len(cols)))
			break
		}
		if n := len(strings.Join(q, ", ")); i > 0 && n > 2*echo.Max {
			q = append(q, fmt.Sprintf("... (%d in all)", len(cols)))
			break
		}
		q = append(q, echo.Quote(c))
	}
	return strings.Join(q, ", ")
}

// rowSource is what a Source numbers, shards and limits: a list's parser, a parquet file's
// rows, tar shards' samples.
type rowSource interface {
	// next returns the next record and its shard key (the URL; for a malformed row, a key of
	// its own); ok is false at the end of the input.
	next() (rec Record, key string, ok bool, err error)
	// readError says where in the input err happened.
	readError(spec string, err error) error
	// close releases what reading holds (not the input itself: Source.closer does that).
	close()
}

// run streams rows into s.out until the end, an error, Close or ctx, then closes the Source.
func (s *Source) run(ctx context.Context, rows rowSource, opt Options) {
	err := s.loop(ctx, rows, opt)
	rows.close()
	if err != nil && ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	if s.closed.Load() {
		err = nil
	}
	s.err = err
	s.closer.Close()
	s.cancel()
	close(s.done)
	close(s.out)
}

// loop numbers the rows of this shard 0, 1, 2, ... (Seq) in input order, items and failures
// alike, and stops after Limit items.
func (s *Source) loop(ctx context.Context, rows rowSource, opt Options) error {
	var seq int64
	var n uint
	for {
		if n++; n%256 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		rec, key, ok, err := rows.next()
		if err != nil {
			return rows.readError(s.info.Spec, err)
		}
		if !ok {
			return nil
		}
		s.rows.Add(1)
		if !opt.Shard.Contains(key) {
			s.others.Add(1)
			rec.Release()
			continue
		}
		if rec.Failure != nil {
			rec.Failure.Seq = seq
		} else {
			rec.Item.Seq = seq
		}
		seq++
		select {
		case s.out <- rec:
		case <-ctx.Done():
			rec.Release()
			return ctx.Err()
		}
		if rec.Failure != nil {
			s.failures.Add(1)
		} else if items := s.items.Add(1); opt.Limit > 0 && items >= opt.Limit {
			return nil
		}
	}
}

func (p *parser) readError(spec string, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("source %s: the input ended in the middle (truncated file or lost connection) after line %d: %w", spec, p.lr.no, err)
	}
	return fmt.Errorf("source %s: reading after line %d: %w", spec, p.lr.no, err)
}

func (p *parser) close() {}

// next reads up to the next data row and returns its Record and its shard key (the URL, or
// for a row without one the row's text); ok is false at the end of the input.
func (p *parser) next() (rec Record, key string, ok bool, err error) {
	for {
		l, err := p.lr.next()
		if err == io.EOF {
			return Record{}, "", false, nil
		}
		if err != nil {
			return Record{}, "", false, err
		}
		t := bytes.TrimSpace(l.text)
		if len(t) == 0 || (p.format == FormatText && t[0] == '#') {
			continue
		}
		if l.tooLong {
			r, k := p.failure(l.no, string(t), "", "", fmt.Sprintf("line longer than %d KiB", maxLineBytes>>10))
			return r, k, true, nil
		}
		if p.format == FormatText {
			r, k := p.item(l.no, t, nil, nil, nil)
			return r, k, true, nil
		}
		r, k, err := p.row(l)
		return r, k, true, err
	}
}

// row handles one CSV/TSV data row starting at l, reading continuation lines of a quoted field.
func (p *parser) row(l line) (Record, string, error) {
	err := p.sp.split(l.text)
	if err == errOpenQuote {
		startText := string(l.text)
		p.pending = append(p.pending[:0], l.text...)
		var held []line
		for err == errOpenQuote && len(held) < maxRecordLines-1 && len(p.pending) <= maxLineBytes {
			nl, rerr := p.lr.next()
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				return Record{}, "", rerr
			}
			nl.text = bytes.Clone(nl.text)
			held = append(held, nl)
			if nl.tooLong {
				break
			}
			p.pending = append(append(p.pending, '\n'), nl.text...)
			err = p.sp.split(p.pending)
		}
		if err == errOpenQuote {
			p.lr.pushBack(held)
			r, k := p.failure(l.no, startText, "", "", "bad quoting: a quoted field is not closed")
			return r, k, nil
		}
	}
	if err != nil {
		r, k := p.failure(l.no, string(l.text), "", "", err.Error())
		return r, k, nil
	}
	f := p.sp.fields
	field := func(i int) []byte {
		if i < 0 || i >= len(f) {
			return nil
		}
		return bytes.TrimSpace(f[i])
	}
	need, needName := p.urlIdx, p.urlColumn
	if p.mirrorPrefix != "" {
		need, needName = p.idIdx, "ImageID"
	}
	if need >= len(f) {
		var id string
		if b := field(p.idIdx); utf8.Valid(b) {
			id = string(b)
		}
		r, k := p.failure(l.no, string(l.text), "", id,
			fmt.Sprintf("missing column %s (the row has %d fields, the header %d)", needName, len(f), p.ncols))
		return r, k, nil
	}
	id := field(p.idIdx)
	if !utf8.Valid(id) {
		r, k := p.failure(l.no, string(l.text), "", "", "invalid UTF-8 in the ImageID")
		return r, k, nil
	}
	if p.mirrorPrefix != "" {
		if reason := checkID(id); reason != "" {
			r, k := p.failure(l.no, string(l.text), "", string(id), reason)
			return r, k, nil
		}
		u := make([]byte, 0, len(p.mirrorPrefix)+len(id)+4)
		u = append(append(append(u, p.mirrorPrefix...), id...), ".jpg"...)
		r, k := p.item(l.no, u, id, nil, nil)
		return r, k, nil
	}
	r, k := p.item(l.no, field(p.urlIdx), id, field(p.md5Idx), field(p.sizeIdx))
	if r.Failure == nil && len(p.colIdx) > 0 {
		r.Item.Columns = make(map[string]string, len(p.colIdx))
		for i, idx := range p.colIdx {
			r.Item.Columns[p.colNames[i]] = strings.ToValidUTF8(string(field(idx)), "\uFFFD")
		}
	}
	if r.Failure == nil && p.textIdx >= 0 {
		r.Item.Text = strings.ToValidUTF8(string(field(p.textIdx)), "\uFFFD")
	}
	return r, k, nil
}

// item checks a URL and builds the Record for it: an Item, or a Failure saying what is wrong.
func (p *parser) item(lineNo int64, rawURL, id, md5, size []byte) (Record, string) {
	if p.pathRows {
		if path, isPath, reason := p.localPath(rawURL); isPath {
			if reason != "" {
				return p.failure(lineNo, string(rawURL), string(rawURL), string(id), reason)
			}
			it := item.Item{Line: lineNo, URL: path, ImageID: string(id)}
			return Record{Item: it}, it.URL
		}
	}
	if reason := p.checkURL(rawURL); reason != "" {
		return p.failure(lineNo, string(rawURL), string(rawURL), string(id), reason)
	}
	it := item.Item{Line: lineNo, URL: string(rawURL)}
	if len(id) > 0 {
		it.ImageID = string(id)
	}
	if validMD5(md5) {
		it.MD5 = string(md5)
	}
	it.Size = parseSize(size)
	return Record{Item: it}, it.URL
}

// failure builds a failed Record. key is what decides its shard: the URL when the row had
// one, else the row's text, so a malformed row lands in exactly one shard.
func (p *parser) failure(lineNo int64, key, rawURL, id, reason string) (Record, string) {
	if rawURL != "" {
		key = rawURL
	}
	f := &item.Failure{
		Item:   item.Item{Line: lineNo, URL: printable(rawURL), ImageID: printable(id)},
		Stage:  "source",
		Reason: fmt.Sprintf("line %d: %s", lineNo, reason),
	}
	return Record{Failure: f}, key
}

// checkURL returns why u cannot be fetched, or "". It is deliberately cheap (no url.Parse per
// row): the fetcher parses what passes and fails the rest with its own reason.
func (p *parser) checkURL(u []byte) string {
	switch {
	case len(u) == 0:
		if p.emptyReason != "" {
			return p.emptyReason
		}
		return "empty URL"
	case !utf8.Valid(u):
		return "invalid UTF-8 in the URL"
	case len(u) > p.maxURL:
		return fmt.Sprintf("URL is %d bytes, over the %d-byte limit", len(u), p.maxURL)
	case p.localFiles && u[0] == '/':
		return ""
	}
	scheme, rest, ok := bytes.Cut(u, []byte("://"))
	if !ok || !validScheme(scheme) {
		if i := bytes.IndexByte(u, ':'); i > 0 && validScheme(u[:i]) {
			return fmt.Sprintf("unsupported scheme %q (want http, https or s3)", strings.ToLower(string(u[:i])))
		}
		return "not an absolute http(s) URL"
	}
	if bytes.EqualFold(scheme, []byte("s3")) {
		return checkObjectURL(u)
	}
	if !bytes.EqualFold(scheme, []byte("http")) && !bytes.EqualFold(scheme, []byte("https")) {
		return fmt.Sprintf("unsupported scheme %q (want http, https or s3)", strings.ToLower(string(scheme)))
	}
	if len(rest) == 0 || rest[0] == '/' || rest[0] == '?' || rest[0] == '#' {
		return "URL has no host"
	}
	for _, c := range u {
		if c <= ' ' || c == 0x7f {
			return "URL contains a space or a control character"
		}
	}
	return ""
}

// checkObjectURL returns why an s3:// row cannot name an object, or "". Keys are taken as
// they are written (as the AWS CLI does): spaces are part of them, control characters are not.
func checkObjectURL(u []byte) string {
	l, err := objstore.Parse(string(u))
	switch {
	case err != nil:
		return "bad s3 URL: no bucket"
	case l.Key == "" || strings.HasSuffix(l.Key, "/"):
		return "s3 URL names no object (want s3://bucket/key)"
	}
	for _, c := range u {
		if c < ' ' || c == 0x7f {
			return "URL contains a control character"
		}
	}
	return ""
}

func validScheme(s []byte) bool {
	if len(s) == 0 || !isAlpha(s[0]) {
		return false
	}
	for _, c := range s[1:] {
		if !isAlpha(c) && !('0' <= c && c <= '9') && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

// checkID refuses ImageIDs that would not make a plain mirror path.
func checkID(id []byte) string {
	if len(id) == 0 {
		return "empty ImageID"
	}
	for _, c := range id {
		if !isAlpha(c) && !('0' <= c && c <= '9') && c != '_' && c != '-' {
			return fmt.Sprintf("ImageID %q is not a plain identifier", printable(string(id)))
		}
	}
	return ""
}

// validMD5 accepts base64 of 16 bytes, as Open Images' OriginalMD5.
func validMD5(b []byte) bool {
	if len(b) != 24 {
		return false
	}
	var dst [18]byte
	n, err := base64.StdEncoding.Decode(dst[:], b)
	return err == nil && n == 16
}

// parseSize reads a positive byte count; anything else is "unknown" (0).
func parseSize(b []byte) int64 {
	if len(b) == 0 || len(b) > 18 {
		return 0
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// printable makes s safe to store as a failed URL or ID: valid UTF-8, at most 1 KiB (and
// "..." when cut). Invalid bytes are replaced before the cut, since each replacement takes
// three bytes, and the cut falls between runes.
func printable(s string) string {
	const most = 1024
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) > most {
		cut := most
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

// countingReader counts the raw bytes read from the input (before gzip), for progress.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// localPath reads a row of a local list (or of standard input) that names a local file: a
// file:// URL, an absolute path, or a relative path ending in an image extension (relative to
// the list's folder; to the working folder for standard input). isPath is false for anything
// else (URLs, and lines that are neither, which checkURL then judges); reason says why a
// file:// URL cannot name a local file.
func (p *parser) localPath(raw []byte) (path string, isPath bool, reason string) {
	s := string(raw)
	switch {
	case !utf8.ValidString(s):
		return "", false, ""
	case len(s) >= 7 && strings.EqualFold(s[:7], "file://"):
		u, err := url.Parse(s)
		switch {
		case err != nil:
			return "", true, "bad file URL: " + err.Error()
		case u.Host != "" && !strings.EqualFold(u.Host, "localhost"):
			return "", true, fmt.Sprintf("file URL names another host %q; give a local path", u.Host)
		case u.Path == "":
			return "", true, "file URL without a path"
		}
		return filepath.Clean(u.Path), true, ""
	case strings.HasPrefix(s, "/"):
		return filepath.Clean(s), true, ""
	case strings.Contains(s, "://") || !isImageName(s):
		return "", false, ""
	}
	abs, err := filepath.Abs(filepath.Join(p.baseDir, s))
	if err != nil {
		return "", true, "bad path: " + err.Error()
	}
	return abs, true, ""
}
