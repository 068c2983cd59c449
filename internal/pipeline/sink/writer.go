// writer.go: the Writer: Add/AddFailure from any goroutine, one goroutine doing every HDF5
// call, a chunk file per ChunkSize items (tmp, fsync, rename, fsync dir), and the resume
// state read back at Open.
package sink

import (
	"encoding/json"
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
)

// Row is one embedded item; Add copies Embedding (EmbedDim values).
type Row struct {
	Item      item.Item
	Embedding []float32
}

// RunKey identifies a run's work: a resumed run must have the same key.
type RunKey struct {
	Input         string
	Shard         string
	Limit         int64
	URLKind       string
	WeightsSHA256 string
	Preprocess    string
	Dtype         string
	Normalized    bool
}

// Options configure a Writer.
type Options struct {
	Dir         string // output directory, created if missing
	ChunkSize   int    // items (rows + failures) per chunk file; 0: 10000
	Attrs       Attrs
	Key         RunKey
	HasImageIDs bool // write image_ids / failed_image_ids
	NoResume    bool // discard the chunks and state of an earlier run in Dir
	Logger      *slog.Logger
}

// Errors Open returns (errors.Is).
var (
	ErrRunMismatch     = errors.New("output directory holds another run")
	ErrAlreadyComplete = errors.New("run already complete")
)

// state is the resume state file's content.
type state struct {
	Format    int    `json:"format"`
	Key       RunKey `json:"key"`
	EmbedDim  int    `json:"embed_dim"`
	Dtype     string `json:"dtype"`
	HasIDs    bool   `json:"has_image_ids"`
	Finalized bool   `json:"finalized,omitempty"` // the final file is complete; only cleanup is left
}

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

	// faultAfter, when > 0 (tests), makes the chunk write fail after that many chunk files.
	faultAfter int
}

type msg struct {
	row  Row
	fail *item.Failure
}

const (
	defaultChunkSize = 10000
	flushRows        = 512      // rows buffered in memory before they go to the chunk file
	writerCache      = 4 << 20  // chunk cache per embeddings dataset while writing chunks
	finalCache       = 64 << 20 // chunk cache of the final file's embeddings
	stringDeflate    = 4
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
	kind, err := opt.Attrs.kind()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opt.Dir, 0o755); err != nil {
		return nil, wrapWrite(opt.Dir, err)
	}
	w := &Writer{opt: opt, kind: kind, log: opt.Logger, in: make(chan msg, 256)}
	if err := removeTemps(opt.Dir); err != nil {
		return nil, err
	}
	chunks, err := listChunks(opt.Dir)
	if err != nil {
		return nil, err
	}
	statePath := filepath.Join(opt.Dir, StateName)
	old, haveState, err := readState(statePath)
	if err != nil {
		return nil, err
	}
	_, finalErr := os.Stat(filepath.Join(opt.Dir, FinalName))
	haveFinal := finalErr == nil
	switch {
	case opt.NoResume:
		for _, c := range chunks {
			if err := os.Remove(c.path); err != nil {
				return nil, wrapWrite(c.path, err)
			}
		}
		chunks = nil
	case haveState && old.Finalized:
		// a crash after the final file was renamed into place: finish the cleanup
		if err := cleanup(opt.Dir, chunks); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s is complete; use --no-resume to run again, or another --output", ErrAlreadyComplete, filepath.Join(opt.Dir, FinalName))
	case haveState:
		want := state{Format: 1, Key: opt.Key, EmbedDim: opt.Attrs.EmbedDim, Dtype: kind.String(), HasIDs: opt.HasImageIDs}
		if !reflect.DeepEqual(old, want) {
			return nil, fmt.Errorf("%w: %s was written by a run with other settings (%s); use --no-resume to discard it, or another --output",
				ErrRunMismatch, opt.Dir, diffState(old, want))
		}
	case len(chunks) > 0:
		return nil, fmt.Errorf("%w: %s holds chunk files but no %s; use --no-resume to discard them, or another --output",
			ErrRunMismatch, opt.Dir, StateName)
	case haveFinal:
		return nil, fmt.Errorf("%w: %s exists; use --no-resume to run again, or another --output", ErrAlreadyComplete, filepath.Join(opt.Dir, FinalName))
	}
	for _, c := range chunks {
		if err := w.load(c); err != nil {
			return nil, err
		}
		w.nextChunk = c.k + 1
	}
	st := state{Format: 1, Key: opt.Key, EmbedDim: opt.Attrs.EmbedDim, Dtype: kind.String(), HasIDs: opt.HasImageIDs}
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

// removeTemps removes the temporary files a crash may leave in dir.
func removeTemps(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		n := e.Name()
		if strings.HasSuffix(n, ".tmp") && (strings.HasPrefix(n, chunkPrefix) || n == FinalName+".tmp" || n == StateName+".tmp") {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				return wrapWrite(filepath.Join(dir, n), err)
			}
		}
	}
	return nil
}

func diffState(old, want state) string {
	var d []string
	ov, wv := reflect.ValueOf(old.Key), reflect.ValueOf(want.Key)
	for i := 0; i < ov.NumField(); i++ {
		if !reflect.DeepEqual(ov.Field(i).Interface(), wv.Field(i).Interface()) {
			d = append(d, fmt.Sprintf("%s %v, now %v", strings.ToLower(ov.Type().Field(i).Name), ov.Field(i), wv.Field(i)))
		}
	}
	if old.EmbedDim != want.EmbedDim {
		d = append(d, fmt.Sprintf("embed dim %d, now %d", old.EmbedDim, want.EmbedDim))
	}
	if old.Dtype != want.Dtype {
		d = append(d, fmt.Sprintf("dtype %s, now %s", old.Dtype, want.Dtype))
	}
	if old.HasIDs != want.HasIDs {
		d = append(d, fmt.Sprintf("image ids %v, now %v", old.HasIDs, want.HasIDs))
	}
	if old.Format != want.Format {
		d = append(d, fmt.Sprintf("format %d, now %d", old.Format, want.Format))
	}
	return strings.Join(d, "; ")
}

func readState(path string) (state, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return state{}, false, nil
	}
	if err != nil {
		return state{}, false, err
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return state{}, false, fmt.Errorf("%s: %v; remove it or use --no-resume", path, err)
	}
	return s, true, nil
}

// writeState writes the state file atomically (tmp, fsync, rename, fsync dir).
func writeState(path string, s state) error {
	b, _ := json.MarshalIndent(s, "", "  ")
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return wrapWrite(tmp, err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return wrapWrite(tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return wrapWrite(path, err)
	}
	return wrapWrite(filepath.Dir(path), syncDir(filepath.Dir(path)))
}

// load records the Seqs of a complete chunk file as done.
func (w *Writer) load(c chunkFile) error {
	f, err := h5.Open(c.path)
	if err != nil {
		return fmt.Errorf("reading %s: %v; remove it (its items will be redone) or use --no-resume", c.path, err)
	}
	defer f.Close()
	for _, failed := range []bool{false, true} {
		t := embeddedTable(false, true, w.kind, w.opt.Attrs.EmbedDim)
		if failed {
			t = failedTable(false, true)
		}
		t.cols = []column{t.cols[colSeqs]}
		tf, n, err := openTable(f, t, 0)
		if err != nil {
			return fmt.Errorf("reading %s: %v; remove it (its items will be redone) or use --no-resume", c.path, err)
		}
		for start := int64(0); start < n; start += 1 << 16 {
			seqs, err := tf.ds[0].ReadInt64(start, int(min(n-start, 1<<16)))
			if err != nil {
				tf.close()
				return err
			}
			for _, s := range seqs {
				w.done.set(s)
			}
		}
		tf.close()
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
	r.Embedding = append([]float32(nil), r.Embedding...)
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

// chunkWriter is the chunk file being written (writer goroutine only).
type chunkWriter struct {
	k           int
	tmp, path   string
	f           *h5.File
	emb, fail   *tableFile
	nEmb, nFail int64
	bEmb, bFail *block
}

func (w *Writer) run() {
	defer w.wg.Done()
	var cur *chunkWriter
	var seen bitset // Seqs of this run, so a repeated Add cannot make a duplicate row
	items := 0
	for m := range w.in {
		if w.firstErr() != nil {
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
		if cur.bEmb.n+cur.bFail.n >= flushRows {
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
	if cur != nil && w.firstErr() == nil {
		if err := w.endChunk(cur); err != nil {
			w.abort(cur)
			w.setErr(err)
		}
	}
}

func (w *Writer) startChunk() (*chunkWriter, error) {
	c := &chunkWriter{k: w.nextChunk, path: ChunkPath(w.opt.Dir, w.nextChunk)}
	c.tmp = c.path + ".tmp"
	w.nextChunk++
	f, err := h5.Create(c.tmp)
	if err != nil {
		return nil, wrapWrite(c.tmp, err)
	}
	c.f = f
	et := embeddedTable(w.opt.HasImageIDs, true, w.kind, w.opt.Attrs.EmbedDim)
	ft := failedTable(w.opt.HasImageIDs, true)
	if c.emb, err = createTable(f, et, 0, w.opt.ChunkSize, stringDeflate, writerCache); err == nil {
		c.fail, err = createTable(f, ft, 0, w.opt.ChunkSize, stringDeflate, writerCache)
	}
	if err == nil {
		err = writeAttrs(f, w.opt.Attrs)
	}
	if err != nil {
		w.abort(c)
		return nil, wrapWrite(c.tmp, err)
	}
	c.bEmb, c.bFail = et.newBlock(), ft.newBlock()
	return c, nil
}

func (c *chunkWriter) addRow(r Row) {
	b := c.bEmb
	b.strs[colURLs] = append(b.strs[colURLs], r.Item.URL)
	b.strs[colIDs] = append(b.strs[colIDs], r.Item.ImageID)
	b.ints[colLines] = append(b.ints[colLines], r.Item.Line)
	b.ints[colSeqs] = append(b.ints[colSeqs], r.Item.Seq)
	b.raw[colValues] = appendEmbedding(b.raw[colValues], r.Embedding, c.emb.t.cols[colValues].kind)
	b.n++
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
	b := c.bFail
	b.strs[colURLs] = append(b.strs[colURLs], f.URL)
	b.strs[colIDs] = append(b.strs[colIDs], f.ImageID)
	b.ints[colLines] = append(b.ints[colLines], f.Line)
	b.ints[colSeqs] = append(b.ints[colSeqs], f.Seq)
	b.strs[colValues] = append(b.strs[colValues], f.Reason)
	b.strs[colStages] = append(b.strs[colStages], f.Stage)
	b.n++
}

func (w *Writer) flush(c *chunkWriter) error {
	if err := c.emb.write(c.bEmb, c.nEmb); err != nil {
		return wrapWrite(c.tmp, err)
	}
	c.nEmb += int64(c.bEmb.n)
	c.bEmb.reset()
	if err := c.fail.write(c.bFail, c.nFail); err != nil {
		return wrapWrite(c.tmp, err)
	}
	c.nFail += int64(c.bFail.n)
	c.bFail.reset()
	return nil
}

// endChunk makes the chunk file complete: flush, close, fsync, rename, fsync the directory.
func (w *Writer) endChunk(c *chunkWriter) error {
	if err := w.flush(c); err != nil {
		return err
	}
	if w.faultAfter > 0 && int(w.chks.Load()) >= w.faultAfter {
		return wrapWrite(c.tmp, errInjected)
	}
	if err := c.emb.close(); err != nil {
		return wrapWrite(c.tmp, err)
	}
	if err := c.fail.close(); err != nil {
		return wrapWrite(c.tmp, err)
	}
	if err := finish(c.f, c.tmp, c.path); err != nil {
		return err
	}
	w.chks.Add(1)
	w.log.Debug("chunk written", "path", c.path, "rows", c.nEmb, "failures", c.nFail)
	return nil
}

var errInjected = errors.New("injected write fault")

// abort closes and removes a chunk that cannot be completed; earlier chunks stay intact.
func (w *Writer) abort(c *chunkWriter) {
	if c == nil {
		return
	}
	c.emb.close()
	c.fail.close()
	if c.f != nil {
		c.f.Close()
	}
	os.Remove(c.tmp)
}
