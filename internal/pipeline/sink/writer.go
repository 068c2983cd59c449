// writer.go: the Writer: Add/AddFailure from any goroutine, one goroutine doing every HDF5
// call, a chunk file per ChunkSize items (tmp, fsync, rename, fsync dir), and the resume
// state read back at Open.
package sink

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/clipd/clipd/internal/cgo/h5"
	"github.com/clipd/clipd/internal/pipeline/item"
	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// Row is one embedded item; Add copies Embedding (EmbedDim values) and, in a run with a text
// column (Attrs.TextColumn), TextEmbedding (EmbedDim values: the embedding of Item.Text).
type Row struct {
	Item          item.Item
	Embedding     []float32
	TextEmbedding []float32
}

// Options configure a Writer.
type Options struct {
	Dir         string        // output directory, created if missing
	ChunkSize   int           // items (rows + failures) per chunk file; 0: 10000
	Attrs       outfile.Attrs // also the run's identity (see keyOf)
	HasImageIDs bool          // write image_ids / failed_image_ids
	NoResume    bool          // discard the chunks and state of an earlier run in Dir
	Logger      *slog.Logger
	// Committed, when set, is called with each chunk file's path once the chunk and its
	// checksum file are complete on disk (from the writer goroutine: a slow one holds the
	// writer back). An s3:// output uploads the chunk from there.
	Committed func(path string)
}

// Errors Open returns (errors.Is), besides outfile.ErrInput (the chunks or state of an earlier run
// cannot be read) and outfile.ErrOutput (Dir cannot be written).
var (
	ErrRunMismatch     = errors.New("output directory holds another run")
	ErrAlreadyComplete = errors.New("run already complete")
)

// Writer writes a run's chunk files. Add, AddFailure, Done, Resumed and Stats are safe
// from any goroutine; Close from one.
type Writer struct {
	opt  Options
	kind h5.Kind
	log  *slog.Logger

	done              bitset // read-only after Open
	resumedRows       int64
	resumedFails      int64
	nextChunk         int
	rows, fails, chks atomic.Int64

	in      chan msg
	errMu   sync.Mutex
	err     error
	closeMu sync.Mutex
	closed  bool
	wg      sync.WaitGroup

	discard    atomic.Bool // Discard: the writer goroutine writes nothing more
	firstChunk int         // the first chunk index of this run (nextChunk after Open's loading)

	// commitHook, set by tests only, runs before chunk k is completed; its error is
	// the chunk's write error (an injected fault).
	commitHook func(k int) error
}

type msg struct {
	row  Row
	fail *item.Failure
}

const (
	defaultChunkSize = 10000
	flushRows        = 512     // rows buffered in memory before they go to the chunk file
	writerCache      = 4 << 20 // chunk cache per embeddings dataset while writing chunks
)

// Open prepares Dir for a run: removes leftover temporary files, reads the complete chunk
// files of an earlier run with the same key (resume), writes the state file and starts
// the writer goroutine.
func Open(opt Options) (*Writer, error) {
	if opt.ChunkSize <= 0 {
		opt.ChunkSize = defaultChunkSize
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Attrs.EmbedDim <= 0 {
		return nil, fmt.Errorf("sink: embed dim %d: want > 0", opt.Attrs.EmbedDim)
	}
	kind, err := opt.Attrs.Kind()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opt.Dir, 0o755); err != nil {
		return nil, outfile.WrapWrite(opt.Dir, err)
	}
	w := &Writer{opt: opt, kind: kind, log: opt.Logger, in: make(chan msg, 256)}
	if err := removeTemps(opt.Dir); err != nil {
		return nil, err
	}
	chunks, err := outfile.ListChunks(opt.Dir)
	if err != nil {
		return nil, outfile.WrapWrite(opt.Dir, err)
	}
	statePath := filepath.Join(opt.Dir, StateName)
	old, haveState, err := readState(statePath)
	if err != nil {
		return nil, err
	}
	_, finalErr := os.Stat(filepath.Join(opt.Dir, outfile.FinalName))
	haveFinal := finalErr == nil
	switch {
	case opt.NoResume:
		for _, c := range chunks {
			if err := removeChunk(c); err != nil {
				return nil, err
			}
		}
		chunks = nil
	case haveState && old.Finalized:
		// a crash after the final file was renamed into place: finish the cleanup
		if err := cleanup(opt.Dir, chunks); err != nil {
			return nil, err
		}
		return nil, finished(opt, old.Key)
	case haveState:
		if err := sameRun(opt, kind, old); err != nil {
			return nil, err
		}
	case len(chunks) > 0:
		return nil, fmt.Errorf("%w: %s holds chunk files but no %s; use --no-resume to discard them, or another --output",
			ErrRunMismatch, opt.Dir, StateName)
	case haveFinal:
		final := filepath.Join(opt.Dir, outfile.FinalName)
		f, err := outfile.Open(final)
		if err != nil {
			return nil, err
		}
		a, err := outfile.ReadAttrs(f)
		f.Close()
		if err != nil {
			return nil, err
		}
		return nil, finished(opt, keyOf(a))
	}
	if chunks, err = w.trusted(chunks); err != nil {
		return nil, err
	}
	for _, c := range chunks {
		if err := w.load(c); err != nil {
			return nil, err
		}
		w.nextChunk = c.K + 1
	}
	w.firstChunk = w.nextChunk
	st := state{Format: 1, Key: keyOf(opt.Attrs), EmbedDim: opt.Attrs.EmbedDim, Dtype: kind.String(), HasIDs: opt.HasImageIDs}
	if err := writeState(statePath, st); err != nil {
		return nil, err
	}
	if len(chunks) > 0 {
		w.log.Info("resuming", "dir", opt.Dir, "chunks", len(chunks), "rows", w.resumedRows, "failures", w.resumedFails)
	}
	w.wg.Add(1)
	go w.run()
	return w, nil
}

// sameRun is nil when the state old is of the run opt describes, else ErrRunMismatch saying
// what differs.
func sameRun(opt Options, kind h5.Kind, old state) error {
	want := state{Format: 1, Key: keyOf(opt.Attrs), EmbedDim: opt.Attrs.EmbedDim, Dtype: kind.String(), HasIDs: opt.HasImageIDs}
	if !reflect.DeepEqual(old, want) {
		return fmt.Errorf("%w: %s was written by a run with other settings (%s); use --no-resume to discard it, or another --output",
			ErrRunMismatch, opt.Dir, diffState(old, want))
	}
	return nil
}

// CheckState is what Open says of Dir's state file (ErrRunMismatch when it is another run's,
// nil when it is this run's or there is none or it is finalized) without reading or
// touching anything else: an s3:// output checks the state it downloaded from the bucket
// before it downloads the chunks.
func CheckState(opt Options) error {
	kind, err := opt.Attrs.Kind()
	if err != nil {
		return err
	}
	old, have, err := readState(filepath.Join(opt.Dir, StateName))
	if err != nil || !have || old.Finalized || opt.NoResume {
		return err
	}
	return sameRun(opt, kind, old)
}

// finished is what Open says when Dir holds a finished run with key done: complete when it
// is this run, else another run that this one must not pass off as its own.
func finished(opt Options, done RunKey) error {
	return Finished(filepath.Join(opt.Dir, outfile.FinalName), done, opt.Attrs)
}

// Finished is what a run with attrs says of the finished file final, made by the run with key
// done: ErrAlreadyComplete when it is this run, else ErrRunMismatch saying what differs. An
// s3:// output asks it of the final object's recorded key.
func Finished(final string, done RunKey, attrs outfile.Attrs) error {
	if d := diffKeys(done, keyOf(attrs)); d != "" {
		return fmt.Errorf("%w: %s was made by another run (%s); use --no-resume to replace it, or another --output",
			ErrRunMismatch, final, d)
	}
	return fmt.Errorf("%w: %s is complete; use --no-resume to run again, or another --output", ErrAlreadyComplete, final)
}

// trusted is the chunks whose checksum holds. A chunk that fails it (damaged on disk, altered,
// or written before chunks had checksums) is removed and said in the log: its rows are redone.
// A checksum file without its chunk (a crash between the two) is removed too.
func (w *Writer) trusted(chunks []outfile.Chunk) ([]outfile.Chunk, error) {
	var ok []outfile.Chunk
	for _, c := range chunks {
		if err := outfile.VerifyChecksum(c.Path); err != nil {
			w.log.Warn("damaged chunk file discarded; its rows will be redone", "chunk", c.Path, "why", err.Error())
			if err := removeChunk(c); err != nil {
				return nil, err
			}
			continue
		}
		ok = append(ok, c)
	}
	sums, _ := filepath.Glob(filepath.Join(w.opt.Dir, "Images_Embedded_*.h5"+".sha256"))
	for _, s := range sums {
		if _, err := os.Stat(strings.TrimSuffix(s, ".sha256")); errors.Is(err, os.ErrNotExist) {
			if err := outfile.Remove(s); err != nil {
				return nil, err
			}
		}
	}
	return ok, nil
}

// removeChunk removes a chunk file and its checksum file. Errors are outfile.ErrOutput.
func removeChunk(c outfile.Chunk) error {
	if err := outfile.Remove(c.Path); err != nil {
		return err
	}
	return outfile.Remove(outfile.ChecksumPath(c.Path))
}

// removeTemps removes the temporary files a crash may leave in dir.
func removeTemps(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return outfile.WrapWrite(dir, err)
	}
	for _, e := range ents {
		n := e.Name()
		if outfile.IsTemp(n) || n == StateName+".tmp" {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				return outfile.WrapWrite(filepath.Join(dir, n), err)
			}
		}
	}
	return nil
}

// load records the Seqs of a complete chunk file as done. Errors are outfile.ErrInput.
func (w *Writer) load(c outfile.Chunk) error {
	damaged := func(err error) error {
		return fmt.Errorf("%w; remove it (its items will be redone) or use --no-resume", outfile.WrapRead(c.Path, err))
	}
	f, err := h5.Open(c.Path)
	if err != nil {
		return damaged(err)
	}
	defer f.Close()
	for _, failed := range []bool{false, true} {
		t := outfile.EmbeddedTable(false, true, w.kind, w.opt.Attrs.EmbedDim)
		if failed {
			t = outfile.FailedTable(false, true)
		}
		t.Cols = []outfile.Column{t.Cols[outfile.ColSeqs]}
		tf, n, err := outfile.OpenTable(f, t, 0)
		if err != nil {
			return damaged(err)
		}
		for start := int64(0); start < n; start += 1 << 16 {
			seqs, err := tf.Dataset(0).ReadInt64(start, int(min(n-start, 1<<16)))
			if err != nil {
				tf.Close()
				return damaged(err)
			}
			for _, s := range seqs {
				w.done.set(s)
			}
		}
		tf.Close()
		if failed {
			w.resumedFails += n
		} else {
			w.resumedRows += n
		}
	}
	return nil
}

// Done reports whether seq was recorded by an earlier run (resume).
func (w *Writer) Done(seq int64) bool { return w.done.has(seq) }

// Resumed is what the earlier runs recorded: rows and failures.
func (w *Writer) Resumed() (rows, failures int64) { return w.resumedRows, w.resumedFails }

// Stats counts what this run accepted: rows, failures, and chunk files written.
func (w *Writer) Stats() (rows, failures, chunks int64) {
	return w.rows.Load(), w.fails.Load(), w.chks.Load()
}

func (w *Writer) firstErr() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

func (w *Writer) setErr(err error) {
	w.errMu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.errMu.Unlock()
}

var errClosed = errors.New("sink: writer is closed")

func (w *Writer) send(m msg) error {
	if err := w.firstErr(); err != nil {
		return err
	}
	w.closeMu.Lock()
	defer w.closeMu.Unlock()
	if w.closed {
		return errClosed
	}
	w.in <- m
	return nil
}

// Add queues an embedded row; it blocks while the writer is behind. It returns the
// writer's first error, if any.
func (w *Writer) Add(r Row) error {
	if len(r.Embedding) != w.opt.Attrs.EmbedDim {
		return fmt.Errorf("sink: embedding of %d values, want %d", len(r.Embedding), w.opt.Attrs.EmbedDim)
	}
	if text := w.opt.Attrs.TextColumn != ""; text && len(r.TextEmbedding) != w.opt.Attrs.EmbedDim || !text && r.TextEmbedding != nil {
		return fmt.Errorf("sink: text embedding of %d values in a run with text column %q, want %d", len(r.TextEmbedding), w.opt.Attrs.TextColumn, w.opt.Attrs.EmbedDim)
	}
	r.Embedding = append([]float32(nil), r.Embedding...)
	if r.TextEmbedding != nil {
		r.TextEmbedding = append([]float32(nil), r.TextEmbedding...)
	}
	return w.send(msg{row: r})
}

// AddFailure queues a failed item.
func (w *Writer) AddFailure(f item.Failure) error {
	return w.send(msg{fail: &f})
}

// Close writes the last partial chunk and returns the first error; safe to call twice.
func (w *Writer) Close() error {
	w.closeMu.Lock()
	if !w.closed {
		w.closed = true
		close(w.in)
	}
	w.closeMu.Unlock()
	w.wg.Wait()
	return w.firstErr()
}

// chunkWriter is the chunk file being written (writer goroutine only); rows wait in its
// tables' pending blocks until flush.
type chunkWriter struct {
	k         int
	f         *outfile.File
	emb, fail *outfile.TableFile
	saved     []string // the input columns saved with each row (Attrs.Columns)
}

func (w *Writer) run() {
	defer w.wg.Done()
	var cur *chunkWriter
	var seen bitset // Seqs of this run, so a repeated Add cannot make a duplicate row
	items := 0
	for m := range w.in {
		if w.firstErr() != nil || w.discard.Load() {
			continue // drain so that senders never block
		}
		seq := m.row.Item.Seq
		if m.fail != nil {
			seq = m.fail.Seq
		}
		if seq < 0 || w.done.has(seq) || seen.has(seq) {
			w.log.Warn("sink: item added twice or already done; kept the first", "seq", seq)
			continue
		}
		seen.set(seq)
		if cur == nil {
			var err error
			if cur, err = w.startChunk(); err != nil {
				w.setErr(err)
				continue
			}
		}
		if m.fail != nil {
			cur.addFailure(m.fail)
			w.fails.Add(1)
		} else {
			cur.addRow(m.row)
			w.rows.Add(1)
		}
		items++
		var err error
		if cur.emb.Pending().N+cur.fail.Pending().N >= flushRows {
			err = w.flush(cur)
		}
		if err == nil && items >= w.opt.ChunkSize {
			if err = w.endChunk(cur); err == nil {
				cur, items = nil, 0
			}
		}
		if err != nil {
			w.abort(cur)
			cur = nil
			w.setErr(err)
		}
	}
	if cur != nil && w.discard.Load() {
		w.abort(cur)
	} else if cur != nil && w.firstErr() == nil {
		if err := w.endChunk(cur); err != nil {
			w.abort(cur)
			w.setErr(err)
		}
	}
}

func (w *Writer) startChunk() (*chunkWriter, error) {
	c := &chunkWriter{k: w.nextChunk}
	f, err := outfile.Create(outfile.ChunkPath(w.opt.Dir, w.nextChunk))
	w.nextChunk++
	if err != nil {
		return nil, err
	}
	c.f = f
	et := embeddedTable(w.opt.Attrs, w.opt.HasImageIDs, true, w.kind)
	ft := outfile.FailedTable(w.opt.HasImageIDs, true)
	c.saved = w.opt.Attrs.Columns
	if c.emb, err = f.CreateTable(et, 0, w.opt.ChunkSize, writerCache); err == nil {
		c.fail, err = f.CreateTable(ft, 0, w.opt.ChunkSize, writerCache)
	}
	if err != nil {
		w.abort(c)
		return nil, err
	}
	return c, nil
}

func (c *chunkWriter) addRow(r Row) {
	b := c.emb.Pending()
	b.Strs[outfile.ColURLs] = append(b.Strs[outfile.ColURLs], r.Item.URL)
	b.Strs[outfile.ColIDs] = append(b.Strs[outfile.ColIDs], r.Item.ImageID)
	b.Ints[outfile.ColLines] = append(b.Ints[outfile.ColLines], r.Item.Line)
	b.Ints[outfile.ColSeqs] = append(b.Ints[outfile.ColSeqs], r.Item.Seq)
	b.Raw[outfile.ColValues] = appendEmbedding(b.Raw[outfile.ColValues], r.Embedding, c.emb.Table().Cols[outfile.ColValues].Kind)
	b.Ints[outfile.ColWidths] = append(b.Ints[outfile.ColWidths], int64(r.Item.Width))
	b.Ints[outfile.ColHeights] = append(b.Ints[outfile.ColHeights], int64(r.Item.Height))
	if r.TextEmbedding != nil {
		b.Raw[outfile.ColText] = appendEmbedding(b.Raw[outfile.ColText], r.TextEmbedding, c.emb.Table().Cols[outfile.ColText].Kind)
	}
	for i, name := range c.saved {
		b.Strs[outfile.ColSaved+i] = append(b.Strs[outfile.ColSaved+i], r.Item.Columns[name])
	}
	b.N++
}

// embeddedTable is the embedded table of a run's chunk files (seqs) or final file: its row
// information, saved columns and, with a text column, its text embeddings.
func embeddedTable(a outfile.Attrs, ids, seqs bool, kind h5.Kind) outfile.Table {
	t := outfile.WithText(outfile.EmbeddedTable(ids, seqs, kind, a.EmbedDim), a.TextColumn != "")
	return outfile.WithRowInfo(t, a.Columns)
}

func appendEmbedding(dst []byte, v []float32, kind h5.Kind) []byte {
	for _, x := range v {
		if kind == h5.Float16 {
			h := h5.Float32ToFloat16(x)
			dst = append(dst, byte(h), byte(h>>8))
		} else {
			u := float32bits(x)
			dst = append(dst, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
		}
	}
	return dst
}

func (c *chunkWriter) addFailure(f *item.Failure) {
	b := c.fail.Pending()
	b.Strs[outfile.ColURLs] = append(b.Strs[outfile.ColURLs], f.URL)
	b.Strs[outfile.ColIDs] = append(b.Strs[outfile.ColIDs], f.ImageID)
	b.Ints[outfile.ColLines] = append(b.Ints[outfile.ColLines], f.Line)
	b.Ints[outfile.ColSeqs] = append(b.Ints[outfile.ColSeqs], f.Seq)
	b.Strs[outfile.ColValues] = append(b.Strs[outfile.ColValues], f.Reason)
	b.Strs[outfile.ColStages] = append(b.Strs[outfile.ColStages], f.Stage)
	b.N++
}

// flush appends the rows waiting in memory to the chunk file.
func (w *Writer) flush(c *chunkWriter) error {
	if err := c.emb.Flush(); err != nil {
		return err
	}
	return c.fail.Flush()
}

// endChunk makes the chunk file complete (outfile.File.Commit).
func (w *Writer) endChunk(c *chunkWriter) error {
	if err := w.flush(c); err != nil {
		return err
	}
	if w.commitHook != nil {
		if err := w.commitHook(c.k); err != nil {
			return outfile.WrapWrite(c.f.Tmp(), err)
		}
	}
	if err := c.f.CommitWithChecksum(w.opt.Attrs); err != nil {
		return err
	}
	w.chks.Add(1)
	w.log.Debug("chunk written", "path", c.f.Path(), "rows", c.emb.Written(), "failures", c.fail.Written())
	if w.opt.Committed != nil {
		w.opt.Committed(c.f.Path())
	}
	return nil
}

// abort closes and removes a chunk that cannot be completed; earlier chunks stay intact.
func (w *Writer) abort(c *chunkWriter) {
	if c != nil && c.f != nil {
		c.f.Abort()
	}
}

// Discard ends the writer like Close but keeps nothing of what this run added: the chunk
// being written is removed unfinished, and when the run resumed nothing (its state file and
// chunks are its own), the chunks it completed and the state file go too, so that the
// folder holds no run. For a run that must not leave output (broken weights); safe to call
// after Close, and Close after it.
func (w *Writer) Discard() error {
	w.discard.Store(true)
	w.Close()
	if w.resumedRows+w.resumedFails > 0 {
		return nil // the chunks of earlier runs stay, and with them the state file and this run's
	}
	var errs []error
	for k := w.firstChunk; k < w.nextChunk; k++ {
		p := outfile.ChunkPath(w.opt.Dir, k)
		for _, f := range []string{p, outfile.ChecksumPath(p)} {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, outfile.WrapWrite(f, err))
			}
		}
	}
	if err := os.Remove(filepath.Join(w.opt.Dir, StateName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, outfile.WrapWrite(filepath.Join(w.opt.Dir, StateName), err))
	}
	return errors.Join(errs...)
}
