// tar.go: webdataset tar shards as input, as img2dataset writes them — one or many shards
// read one after another, streaming, members grouped by key, one Record per sample carrying
// its image bytes in Record.Body, through the same sharding, limit and Seq numbering as a list.

package source

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/clipd/clipd/internal/echo"
	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/pipeline/budget"
	"github.com/clipd/clipd/internal/pipeline/item"
)

// FormatTar is reported in Info for a tar shard input.
const FormatTar Format = "tar"

// MaxTarMemberBytes bounds one image member; a larger one makes its sample a failure
// "too large" and is skipped without being read into memory.
const MaxTarMemberBytes = 32 << 20

// Limits the tests may lower; see MaxTarMemberBytes.
var (
	maxTarMember     int64 = MaxTarMemberBytes
	maxTarMetaMember int64 = 1 << 20 // a .json or .txt member over this is ignored
)

// tarBuffer is the Records channel's default capacity for a tar input: each Record holds an
// image, so the list default (DefaultBuffer) could hold gigabytes.
const tarBuffer = 64

// tarColumns are the columns a tar input can carry (Options.Columns), any case.
var tarColumns = []string{"caption", "key"}

// isTarName reports whether name ends in .tar, .tar.gz or .tgz (any case).
func isTarName(name string) bool {
	l := strings.ToLower(name)
	return strings.HasSuffix(l, ".tar") || strings.HasSuffix(l, ".tar.gz") || strings.HasSuffix(l, ".tgz")
}

// maxTarList bounds a list of shards read whole (a shard holds thousands of samples, so a
// million shards is far beyond any data set).
const maxTarList = 1 << 20

// tarList reads a text list of tar shards (one path a line, relative to the list's folder;
// blank lines and # comments skipped). It returns nil, nil when the list's first entry is
// not a tar shard's name: then it is an ordinary list of URLs or files. Every entry must be a
// shard once the first is.
func tarList(list string) ([]string, error) {
	f, err := os.Open(list)
	if err != nil {
		return nil, nil // Open reports it as it does for any list
	}
	defer f.Close()
	base := filepath.Dir(list)
	var paths []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if !isTarName(l) || strings.Contains(l, "://") {
			if paths == nil {
				return nil, nil
			}
			return nil, fmt.Errorf("source %s: line %d: %s is not a tar shard, but the list's first entry is; a list of shards names shards only", list, n, echo.Quote(l))
		}
		if !filepath.IsAbs(l) {
			l = filepath.Join(base, l)
		}
		if st, err := os.Stat(l); err != nil || !st.Mode().IsRegular() {
			why := "not a regular file"
			var pe *os.PathError
			if errors.As(err, &pe) {
				why = pe.Err.Error() // without the path, named once already
			} else if err != nil {
				why = err.Error()
			}
			return nil, fmt.Errorf("source %s: line %d: shard %s cannot be read (%s)", list, n, echo.Short(l), why)
		}
		if paths = append(paths, l); len(paths) > maxTarList {
			return nil, fmt.Errorf("source %s: more than %d shards; split the list", list, maxTarList)
		}
	}
	if err := sc.Err(); err != nil {
		if paths == nil {
			return nil, nil // a line too long for a shard list: an ordinary list, read as such
		}
		return nil, fmt.Errorf("source %s: %w", list, err)
	}
	return paths, nil
}

// tarShard is one shard of the input.
type tarShard struct {
	path string // as opened
	name string // in fallback URLs, messages and the fingerprint: the base name, the path under a folder input, or an object's s3:// location
	size int64
	// object is the shard's object as listed when the input is in a bucket; nil for a file.
	object *objstore.Info
}

// openTar opens spec as tar shards when it names some (the rules are on Open); ok is false
// for anything else, and the caller goes on as before.
func openTar(ctx context.Context, spec string, opt Options) (s *Source, ok bool, err error) {
	lower := strings.ToLower(spec)
	if spec == "" || spec == "-" || strings.Contains(spec, "://") || strings.HasPrefix(lower, "openimages:") {
		return nil, false, nil
	}
	var paths []string
	var names []string // nil: base names
	st, statErr := os.Stat(spec)
	switch {
	case statErr == nil && st.IsDir():
		paths, names, err = tarFolder(spec)
		if err != nil {
			return nil, true, fmt.Errorf("source %s: %w", spec, err)
		}
		if paths == nil {
			return nil, false, nil // a folder of images, or of neither: the folder input's
		}
	case statErr == nil && st.Mode().IsRegular() && isTarName(spec):
		paths = []string{spec}
	case statErr == nil && st.Mode().IsRegular():
		if paths, err = tarList(spec); paths == nil || err != nil {
			return nil, err != nil, err // nil, nil: not a list of shards, an ordinary list
		}
	case isImagePattern(spec):
		return nil, false, nil // a pattern of images ('photos/*.jpg'): openImagePattern's
	case hasPattern(spec):
		if paths, err = expandShardPattern(spec); err != nil {
			return nil, true, err
		}
	default:
		return nil, false, nil // a missing file: Open says so
	}
	if err := checkTarOptions(spec, opt); err != nil {
		return nil, true, err
	}
	shards := make([]tarShard, len(paths))
	h := sha256.New()
	var total int64
	for i, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, true, fmt.Errorf("source %s: %w", spec, err)
		}
		shards[i] = tarShard{path: p, name: filepath.Base(p), size: st.Size()}
		if names != nil {
			shards[i].name = names[i]
		}
		total += st.Size()
		fmt.Fprintf(h, "%s\t%d\t%d\n", shards[i].name, st.Size(), st.ModTime().UnixNano())
	}
	fingerprint := fmt.Sprintf("shards:%d sha256:%s", len(shards), hex.EncodeToString(h.Sum(nil)))
	s, err = startTar(ctx, spec, shards, fingerprint, total, opt)
	return s, true, err
}

// checkTarOptions refuses the options that have no meaning for tar shards.
func checkTarOptions(spec string, opt Options) error {
	if err := opt.validate(); err != nil {
		return err
	}
	if opt.OpenImagesURL != "" && opt.OpenImagesURL != OriginalURL {
		return fmt.Errorf("source %s: the Open Images URL kind %q applies only to openimages:<split> inputs", spec, opt.OpenImagesURL)
	}
	if opt.Format != FormatAuto {
		return fmt.Errorf("source %s: tar shards have no format to choose; leave the format option empty", spec)
	}
	if opt.URLColumn != "" && !strings.EqualFold(opt.URLColumn, "url") {
		return fmt.Errorf("source %s: tar shards take their URLs from each sample's json \"url\"; there is no URL column %q to choose", spec, opt.URLColumn)
	}
	return nil
}

// tarFolder lists the tar shards under dir, recursively, in lexical order, with their paths
// relative to dir; nil when dir holds an image file (then it is a folder of images) or no
// shard. The walk stops at the first image, so deciding costs little for an image folder.
func tarFolder(dir string) (paths, names []string, err error) {
	images := false
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || (d.Type()&fs.ModeSymlink == 0 && !d.Type().IsRegular()) {
			return nil
		}
		if isImageName(p) {
			images = true
			return fs.SkipAll
		}
		if isTarName(p) {
			rel, _ := filepath.Rel(dir, p)
			paths, names = append(paths, p), append(names, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil || images {
		return nil, nil, err
	}
	return paths, names, nil
}

// startTar starts the goroutine that reads the shards.
func startTar(ctx context.Context, spec string, shards []tarShard, fingerprint string, total int64, opt Options) (*Source, error) {
	r := &tarRows{shards: shards, cur: -1, files: &tarFiles{}, counted: &countingReader{}, budget: opt.Budget, opt: opt}
	for _, name := range opt.Columns {
		switch {
		case strings.EqualFold(name, "caption"):
			r.captionCol = append(r.captionCol, name)
		case strings.EqualFold(name, "key"):
			r.keyCol = append(r.keyCol, name)
		default:
			return nil, fmt.Errorf("source %s: tar shards have no column %q to save; their columns are %s", spec, name, strings.Join(tarColumns, " and "))
		}
	}
	r.textCol = opt.TextColumn
	info := Info{Spec: spec, Format: FormatTar, Columns: tarColumns, URLColumn: "url", Fingerprint: fingerprint, TotalBytes: total}
	buffer := opt.Buffer
	if buffer == 0 {
		buffer = tarBuffer
	}
	ctx, cancel := context.WithCancel(ctx)
	r.ctx = ctx
	s := &Source{info: info, out: make(chan Record, buffer), done: make(chan struct{}), cancel: cancel, closer: r.files, counted: r.counted}
	go s.run(ctx, r, opt)
	return s, nil
}

// runTar ends the stream as run does for a list.
func (r *tarRows) readError(spec string, err error) error {
	return fmt.Errorf("source %s: %w", spec, err)
}

func (r *tarRows) close() {}

// tarFiles holds the shard being read so that Close can close it from another goroutine.
type tarFiles struct {
	mu     sync.Mutex
	f      io.ReadCloser
	closed bool
}

// open opens the shard with open (a file's or an object's opener).
func (t *tarFiles) open(open func() (io.ReadCloser, error)) (io.ReadCloser, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, os.ErrClosed
	}
	f, err := open()
	if err != nil {
		return nil, err
	}
	t.f = f
	return f, nil
}

func (t *tarFiles) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
}

func (t *tarFiles) Close() error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.release()
	return nil
}

// tarSample is the members of one key read so far.
type tarSample struct {
	key       string
	image     []byte
	held      int64  // bytes of the budget image holds
	tooLarge  string // why the image member was not read
	json, txt []byte
	hasMeta   bool // a .json or .txt member was seen (even one too large to read)
}

// keyedRecord is a Record with its shard key, waiting to be sent.
type keyedRecord struct {
	rec Record
	key string
}

// tarRows is what the reading goroutine of a tar input holds.
type tarRows struct {
	shards  []tarShard
	cur     int // the shard being read; -1 before the first
	files   *tarFiles
	counted *countingReader
	tr      *tar.Reader // nil between shards
	sample  *tarSample  // the key being gathered; nil at a shard's start
	samples int64       // samples read in the current shard, for messages
	ordinal int64       // samples (and shard failures) so far across shards: Item.Line
	queue   []keyedRecord

	captionCol, keyCol []string // the names asked for in Options.Columns
	textCol            string   // Options.TextColumn: "caption", or a field of the json

	pending *tar.Header // a member of a new key, read once the finished sample is sent

	ctx    context.Context
	budget *budget.Budget // Options.Budget
	opt    Options
}

// next returns the next sample's Record and its shard key (its URL); ok is false after the
// last shard. Members of one key are gathered until a member of another key (or the end of
// the shard) shows the sample is complete, as webdataset groups them.
//
// A truncated or corrupt shard ends with a failure Record saying so (the samples completed
// before it are sent as usual) and the next shard is read: one broken shard among thousands
// should cost its own rest, not the run, and the sink lists it. The Records stay the same on
// a rerun, so Seqs stay stable. Any other read error (the disk, a shard removed after Open)
// may not recur, so it ends the Source with Err instead, as for a list.
func (r *tarRows) next() (rec Record, key string, ok bool, err error) {
	for {
		if len(r.queue) > 0 {
			k := r.queue[0]
			r.queue = r.queue[1:]
			return k.rec, k.key, true, nil
		}
		if r.tr == nil {
			if r.cur+1 >= len(r.shards) {
				return Record{}, "", false, nil
			}
			r.cur++
			if err := r.openShard(); err != nil {
				if !brokenShard(err) {
					return Record{}, "", false, fmt.Errorf("shard %s: %w", echo.Short(r.shards[r.cur].path), err)
				}
				r.endShard(err)
			}
			continue
		}
		if hdr := r.pending; hdr != nil {
			r.pending = nil
			if err := r.member(hdr); err != nil {
				return Record{}, "", false, err
			}
			continue
		}
		hdr, err := r.tr.Next()
		if errors.Is(err, tar.ErrInsecurePath) {
			err = nil // the name is only read, never used as a path here
		}
		if err == io.EOF {
			// Read the end-of-archive padding too (bounded), so Stats.Bytes reaches TotalBytes.
			io.Copy(io.Discard, io.LimitReader(r.counted, 1<<20))
			r.endShard(nil)
			continue
		}
		if err != nil {
			if !brokenShard(err) {
				return Record{}, "", false, fmt.Errorf("shard %s after %d samples: %w", echo.Short(r.shards[r.cur].path), r.samples, err)
			}
			r.endShard(err)
			continue
		}
		if hdr.Typeflag != tar.TypeReg { // the reader reports old-style regular files (TypeRegA) as TypeReg too
			continue
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		memberKey := strings.TrimSuffix(name, path.Ext(name))
		if r.sample == nil || r.sample.key != memberKey {
			r.flush()
			r.sample = &tarSample{key: memberKey}
			if len(r.queue) > 0 {
				// Send the finished sample before reading this member: its bytes may have to
				// wait for the budget the finished one holds.
				r.pending = hdr
				continue
			}
		}
		if err := r.member(hdr); err != nil {
			return Record{}, "", false, err
		}
	}
}

// member reads the current member of header hdr into the sample; a broken shard ends with
// its failure queued, any other error is returned.
func (r *tarRows) member(hdr *tar.Header) error {
	if err := r.readMember(hdr, strings.ToLower(path.Ext(strings.TrimPrefix(hdr.Name, "./")))); err != nil {
		if !brokenShard(err) {
			return fmt.Errorf("shard %s, member %s: %w", echo.Short(r.shards[r.cur].path), echo.Short(hdr.Name), err)
		}
		r.sample = nil // incomplete: not a sample
		r.endShard(err)
	}
	return nil
}

// openShard starts reading the next shard, ungzipping it when it starts with gzip's magic.
func (r *tarRows) openShard() error {
	sh := r.shards[r.cur]
	f, err := r.files.open(func() (io.ReadCloser, error) {
		if sh.object != nil {
			return openShardObject(r.ctx, r.opt, sh.object)
		}
		return os.Open(sh.path)
	})
	if err != nil {
		return err
	}
	r.counted.r = f
	br := bufio.NewReaderSize(r.counted, 256<<10)
	var in io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return err
		}
		in = gz
	}
	r.tr, r.samples = tar.NewReader(in), 0
	return nil
}

// endShard sends the last sample of the shard and, when broken says why the shard ended
// early, a failure for the rest of it; then the next shard is opened.
func (r *tarRows) endShard(broken error) {
	r.flush()
	r.files.release()
	r.tr = nil
	if broken == nil {
		return
	}
	sh := r.shards[r.cur]
	what := "corrupt shard"
	if errors.Is(broken, io.ErrUnexpectedEOF) {
		what = "truncated shard"
	}
	r.ordinal++
	f := &item.Failure{
		Item:   item.Item{Line: r.ordinal, URL: sh.name},
		Stage:  "source",
		Reason: fmt.Sprintf("%s: %s ends after %d samples (%v); the rest of it is skipped", what, sh.name, r.samples, broken),
	}
	r.queue = append(r.queue, keyedRecord{Record{Failure: f}, sh.name})
}

// brokenShard reports whether err says the shard's bytes are truncated or not a tar (or
// gzip) stream, rather than that reading them failed.
func brokenShard(err error) bool {
	var corrupt flate.CorruptInputError
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, tar.ErrHeader) || errors.Is(err, tar.ErrFieldTooLong) ||
		errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) || errors.As(err, &corrupt)
}

// readMember reads one member into the current sample: the first image member (bounded), the
// .json and the .txt; other members are skipped unread.
func (r *tarRows) readMember(hdr *tar.Header, ext string) error {
	s := r.sample
	switch {
	case isImageName(ext):
		if s.image != nil || s.tooLarge != "" {
			return nil // a second image of the same key: the first one is the sample's
		}
		if hdr.Size > maxTarMember {
			s.tooLarge = fmt.Sprintf("too large: %s is %d bytes, over the %d MiB limit", path.Base(hdr.Name), hdr.Size, maxTarMember>>20)
			return nil
		}
		if err := r.budget.Acquire(r.ctx, hdr.Size); err != nil {
			if r.ctx.Err() != nil {
				return r.ctx.Err()
			}
			s.tooLarge = fmt.Sprintf("too large for --memory: %s (%v)", path.Base(hdr.Name), err)
			return nil
		}
		b, err := readAll(r.tr, hdr.Size)
		if err != nil {
			r.budget.Release(hdr.Size)
			return err
		}
		s.image, s.held = b, hdr.Size
		return nil
	case ext == ".json" || ext == ".txt":
		s.hasMeta = true
		if hdr.Size > maxTarMetaMember {
			return nil
		}
		b, err := readAll(r.tr, hdr.Size)
		if ext == ".json" {
			s.json = b
		} else {
			s.txt = b
		}
		return err
	}
	return nil
}

// readAll reads a member of the size its header gives; a short member is io.ErrUnexpectedEOF.
func readAll(r io.Reader, size int64) ([]byte, error) {
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

// flush turns the gathered sample into its Record on the queue: an item with its image, a
// failure "too large", a failure "no image in the shard" for a key with a json or txt but no
// image (img2dataset's failed downloads), and nothing for a key with only other members.
func (r *tarRows) flush() {
	s := r.sample
	r.sample = nil
	if s == nil || (s.image == nil && s.tooLarge == "" && !s.hasMeta) {
		return
	}
	r.samples++
	r.ordinal++
	meta := parseSampleJSON(s.json)
	u := meta.url
	if u == "" {
		// Member and file names are bytes; the URL is stored as a UTF-8 string.
		u = strings.ToValidUTF8(r.shards[r.cur].name+"/"+s.key, "\uFFFD")
	}
	it := item.Item{Line: r.ordinal, URL: u}
	if s.image == nil {
		reason := s.tooLarge
		if reason == "" {
			reason = "no image in the shard"
			if meta.errorMessage != "" {
				reason += ": " + meta.errorMessage
			}
		}
		r.queue = append(r.queue, keyedRecord{Record{Failure: &item.Failure{Item: it, Stage: "source", Reason: reason}}, u})
		return
	}
	if len(r.captionCol)+len(r.keyCol) > 0 {
		caption := meta.caption
		if !meta.hasCaption {
			caption = strings.ToValidUTF8(string(bytes.TrimRight(s.txt, "\r\n")), "\uFFFD")
		}
		it.Columns = make(map[string]string, len(r.captionCol)+len(r.keyCol))
		for _, n := range r.captionCol {
			it.Columns[n] = caption
		}
		for _, n := range r.keyCol {
			it.Columns[n] = strings.ToValidUTF8(s.key, "\uFFFD")
		}
	}
	if r.textCol != "" {
		it.Text = sampleText(r.textCol, meta, s)
	}
	r.queue = append(r.queue, keyedRecord{Record{Item: it, Body: s.image, held: s.held, budget: r.budget}, u})
}

// sampleText is a sample's text of column name: for "caption" (any case) its json's caption,
// else its .txt member (as --save-columns caption reads it); for another name that field of
// its json (a string as it is, another value as written); "" when the sample has none.
func sampleText(name string, meta sampleJSON, s *tarSample) string {
	if strings.EqualFold(name, "caption") {
		if meta.hasCaption {
			return meta.caption
		}
		return strings.ToValidUTF8(string(bytes.TrimRight(s.txt, "\r\n")), "\uFFFD")
	}
	v, _ := jsonField(s.json, name)
	return v
}

// sampleJSON is what a sample's json contributes.
type sampleJSON struct {
	url, caption, errorMessage string
	hasCaption                 bool // the json has a non-null caption
}

// parseSampleJSON reads the fields of img2dataset's KEY.json used here. A json that does not
// parse counts as absent: the sample keeps its image, under the fallback URL.
func parseSampleJSON(b []byte) sampleJSON {
	var out sampleJSON
	if len(b) == 0 {
		return out
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(b, &fields) != nil {
		return out
	}
	text := func(name string) (string, bool) { return fieldText(fields, name) }
	out.url, _ = text("url")
	out.url = printable(out.url)
	out.caption, out.hasCaption = text("caption")
	out.errorMessage, _ = text("error_message")
	out.errorMessage = printable(out.errorMessage)
	return out
}

// fieldText is field name of a parsed json object as text: a string as it is, another value
// as written; ok is false when the field is absent or null.
func fieldText(fields map[string]json.RawMessage, name string) (string, bool) {
	raw, ok := fields[name]
	if !ok || string(raw) == "null" {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		s = string(raw) // a number or the like, as written
	}
	return strings.ToValidUTF8(s, "\uFFFD"), true
}

// jsonField is field name of the json object b as fieldText gives it; "" and false when b is
// no object or lacks the field.
func jsonField(b []byte, name string) (string, bool) {
	var fields map[string]json.RawMessage
	if len(b) == 0 || json.Unmarshal(b, &fields) != nil {
		return "", false
	}
	return fieldText(fields, name)
}
