// merge.go: Merge joins final files of several shards (or runs) into one, streaming, with
// URLs deduplicated across files. Shards of one input are merged back into input order
// by their `lines`; other files are concatenated in the order given.
package sink

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/clipd/clipd/internal/cgo/h5"
)

// MergeOptions configure Merge.
type MergeOptions struct {
	Version string // clipd_version attribute of the output
	Logger  *slog.Logger
}

// MergeStats describe a merge.
type MergeStats struct {
	Inputs                        int
	Rows, Failures                int64
	DuplicateRows, DuplicateFails int64 // dropped: a URL already embedded (or already failed)
	ByLine                        bool  // rows ordered by input line (shards of one input)
}

// ErrMismatch is returned (errors.Is) when the inputs disagree on model, weights, dtype,
// embed dim or normalization.
var ErrMismatch = errors.New("inputs do not match")

// mergeInput is one input file.
type mergeInput struct {
	f      *h5.File
	attrs  Attrs
	kind   h5.Kind
	dim    int
	hasIDs bool
	lines  bool
}

// Merge writes out from inputs: every URL once (the first embedding of a URL wins; a URL
// that failed somewhere but was embedded elsewhere is not listed as failed). Memory: one
// 8-byte hash and one 8-byte row index per distinct URL in Go maps, about 40 bytes per
// URL (~360 MB for Open Images' 9M), plus a few blocks of rows per input.
func Merge(ctx context.Context, inputs []string, out string, opt MergeOptions) (MergeStats, error) {
	st := MergeStats{Inputs: len(inputs)}
	if len(inputs) == 0 {
		return st, fmt.Errorf("merge: no input files")
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	var ins []*mergeInput
	defer func() {
		for _, in := range ins {
			in.f.Close()
		}
	}()
	for _, p := range inputs {
		in, err := openMergeInput(p)
		if err != nil {
			return st, err
		}
		ins = append(ins, in)
		if err := agree(ins[0], in, inputs[0], p); err != nil {
			return st, err
		}
	}
	attrs := ins[0].attrs
	attrs.Version = opt.Version
	hasIDs := true
	st.ByLine = true
	for _, in := range ins {
		hasIDs = hasIDs && in.hasIDs
		st.ByLine = st.ByLine && in.lines && in.attrs.Input == attrs.Input
		if in.attrs.Preprocess != attrs.Preprocess {
			opt.Logger.Warn("merge: inputs used different preprocessing", "first", attrs.Preprocess, "other", in.attrs.Preprocess)
		}
	}
	if !st.ByLine && len(ins) > 1 {
		attrs.Input = fmt.Sprintf("merge of %d files", len(ins))
	}

	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return st, wrapWrite(filepath.Dir(out), err)
	}
	tmp := out + ".tmp"
	f, err := h5.Create(tmp)
	if err != nil {
		return st, wrapWrite(tmp, err)
	}
	fail := func(err error) (MergeStats, error) {
		f.Close()
		os.Remove(tmp)
		return st, err
	}
	if err := writeAttrs(f, attrs); err != nil {
		return fail(wrapWrite(tmp, err))
	}
	seed := maphash.MakeSeed()
	embedded := newURLSet(seed)
	et := embeddedTable(hasIDs, false, ins[0].kind, ins[0].dim)
	outE, err := createTable(f, et, 0, 1024, stringDeflate, finalCache)
	if err != nil {
		return fail(wrapWrite(tmp, err))
	}
	defer outE.close()
	st.Rows, st.DuplicateRows, err = mergeTable(ctx, ins, et, outE, embedded, nil, nil, st.ByLine, tmp)
	if err != nil {
		return fail(err)
	}
	ft := failedTable(hasIDs, false)
	outF, err := createTable(f, ft, 0, 1024, stringDeflate, finalCache)
	if err != nil {
		return fail(wrapWrite(tmp, err))
	}
	defer outF.close()
	st.Failures, st.DuplicateFails, err = mergeTable(ctx, ins, ft, outF, newURLSet(seed), embedded, outE.ds[colURLs], st.ByLine, tmp)
	if err != nil {
		return fail(err)
	}
	if err := outE.close(); err != nil {
		return fail(wrapWrite(tmp, err))
	}
	if err := outF.close(); err != nil {
		return fail(wrapWrite(tmp, err))
	}
	if err := finish(f, tmp, out); err != nil {
		os.Remove(tmp)
		return st, err
	}
	return st, nil
}

func openMergeInput(p string) (*mergeInput, error) {
	f, err := h5.Open(p)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %v", p, err)
	}
	in := &mergeInput{f: f}
	if in.attrs, err = readAttrs(f); err == nil {
		var d *h5.Dataset
		if d, err = f.OpenDataset("embeddings", 0); err == nil {
			in.kind, in.dim = d.Kind(), d.Cols()
			d.Close()
		}
	}
	if err == nil {
		in.hasIDs, err = f.Has("image_ids")
	}
	if err == nil {
		in.lines, err = f.Has("lines")
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("reading %s: %v (is it a clipd output file?)", p, err)
	}
	return in, nil
}

func agree(a, b *mergeInput, pa, pb string) error {
	check := func(what string, x, y any) error {
		if x != y {
			return fmt.Errorf("%w: %s has %s %v, %s has %v; merge only outputs of the same model and settings", ErrMismatch, pa, what, x, pb, y)
		}
		return nil
	}
	for _, err := range []error{
		check("model", a.attrs.Model, b.attrs.Model),
		check("dtype", a.kind.String(), b.kind.String()),
		check("embed_dim", a.dim, b.dim),
		check("normalized", a.attrs.Normalized, b.attrs.Normalized),
	} {
		if err != nil {
			return err
		}
	}
	if a.attrs.WeightsSHA256 != "" && b.attrs.WeightsSHA256 != "" {
		return check("weights_sha256", a.attrs.WeightsSHA256, b.attrs.WeightsSHA256)
	}
	return nil
}

// urlSet is a set of URLs as 64-bit hashes, each with the output row of its first URL for
// the exact check; URLs whose hash another URL took live in full in the overflow map.
type urlSet struct {
	seed     maphash.Seed
	first    map[uint64]int64
	overflow map[string]struct{}
}

func newURLSet(seed maphash.Seed) *urlSet {
	return &urlSet{seed: seed, first: map[uint64]int64{}, overflow: map[string]struct{}{}}
}

// lookup reports whether url is in the set; urlAt reads back the URL of an output row.
func (s *urlSet) lookup(url string, urlAt func(int64) (string, error)) (found bool, h uint64, err error) {
	h = maphash.String(s.seed, url)
	row, ok := s.first[h]
	if !ok {
		return false, h, nil
	}
	u, err := urlAt(row)
	if err != nil || u == url {
		return err == nil, h, err
	}
	_, found = s.overflow[url]
	return found, h, nil
}

func (s *urlSet) add(url string, h uint64, row int64) {
	if _, ok := s.first[h]; ok {
		s.overflow[url] = struct{}{}
		return
	}
	s.first[h] = row
}

// cursor reads one input's table a block at a time.
type cursor struct {
	tf      *tableFile
	n, next int64 // rows, next row to read into the block
	b       *block
	i       int // position in b
}

func (c *cursor) valid() bool { return c.i < c.b.n }

func (c *cursor) line() int64 { return c.b.ints[colLines][c.i] }

func (c *cursor) advance() error {
	c.i++
	if c.i < c.b.n || c.next >= c.n {
		return nil
	}
	m := int(min(c.n-c.next, readRows))
	if err := c.tf.read(c.b, c.next, m); err != nil {
		return err
	}
	c.next += int64(m)
	c.i = 0
	return nil
}

// mergeTable copies one table of every input into out, skipping URLs in seen (and in
// exclude, whose URLs are those of embURLs: embedded URLs are not listed as failed). Rows go in line order
// when byLine, else input by input.
func mergeTable(ctx context.Context, ins []*mergeInput, t table, out *tableFile, seen, exclude *urlSet, embURLs *h5.Dataset, byLine bool, tmp string) (rows, dups int64, err error) {
	var cs []*cursor
	defer func() {
		for _, c := range cs {
			c.tf.close()
		}
	}()
	for _, in := range ins {
		it := table{cols: append([]column(nil), t.cols...)}
		tf, n, err := openTable(in.f, it, 0)
		if err != nil {
			return 0, 0, fmt.Errorf("reading %s: %v", in.f.Path(), err)
		}
		c := &cursor{tf: tf, n: n, b: it.newBlock(), i: -1}
		cs = append(cs, c)
		if err := c.advance(); err != nil {
			return 0, 0, err
		}
	}
	pending := t.newBlock()
	flushed := int64(0)
	urlAt := func(ds *h5.Dataset, pend *block, base int64) func(int64) (string, error) {
		return func(row int64) (string, error) {
			if row >= base {
				return pend.strs[colURLs][row-base], nil
			}
			s, err := ds.ReadStrings(row, 1)
			if err != nil {
				return "", err
			}
			return s[0], nil
		}
	}
	cur := 0
	for k := 0; ; k++ {
		if k%4096 == 0 && ctx.Err() != nil {
			return 0, 0, ctx.Err()
		}
		// pick the input whose row comes next
		pick := -1
		if byLine {
			for i, c := range cs {
				if c.valid() && (pick < 0 || c.line() < cs[pick].line()) {
					pick = i
				}
			}
		} else {
			for cur < len(cs) && !cs[cur].valid() {
				cur++
			}
			if cur < len(cs) {
				pick = cur
			}
		}
		if pick < 0 {
			break
		}
		c := cs[pick]
		url := c.b.strs[colURLs][c.i]
		dup := false
		if exclude != nil {
			if dup, _, err = exclude.lookup(url, urlAt(embURLs, nil, embURLs.Rows())); err != nil {
				return 0, 0, err
			}
		}
		var h uint64
		if !dup {
			if dup, h, err = seen.lookup(url, urlAt(out.ds[colURLs], pending, flushed)); err != nil {
				return 0, 0, err
			}
		}
		if dup {
			dups++
		} else {
			seen.add(url, h, flushed+int64(pending.n))
			pending.appendRow(c.b, c.i)
			if pending.n >= readRows {
				if err := out.write(pending, flushed); err != nil {
					return 0, 0, wrapWrite(tmp, err)
				}
				flushed += int64(pending.n)
				pending.reset()
			}
		}
		if err := c.advance(); err != nil {
			return 0, 0, err
		}
	}
	if err := out.write(pending, flushed); err != nil {
		return 0, 0, wrapWrite(tmp, err)
	}
	return flushed + int64(pending.n), dups, nil
}
