// merge.go: Files joins final files of several shards (or runs) into one, streaming, with
// URLs deduplicated across files. Shards of one input are merged back into input order
// by their `lines`; other files are concatenated in the order given.
package merge

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/clipd/clipd/internal/cgo/h5"
	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// Options configure Files.
type Options struct {
	Version string // clipd_version attribute of the output
	Logger  *slog.Logger
}

// Stats describe a merge.
type Stats struct {
	Inputs                        int
	Rows, Failures                int64
	DuplicateRows, DuplicateFails int64 // dropped: a URL already embedded (or already failed)
	ByLine                        bool  // rows ordered by input line (shards of one input)
}

// input is one input file.
type input struct {
	f      *h5.File
	attrs  outfile.Attrs
	kind   h5.Kind
	dim    int
	hasIDs bool
	lines  bool
}

// Files writes out from inputs: every URL once (the first embedding of a URL wins; a URL
// that failed somewhere but was embedded elsewhere is not listed as failed). Memory: one
// 8-byte hash and one 8-byte row index per distinct URL in Go maps, about 40 bytes per
// URL (~360 MB for Open Images' 9M), plus a few blocks of rows per input.
// Errors are outfile.ErrInput (an input cannot be read), outfile.ErrMismatch (the inputs
// disagree), outfile.ErrOutput (out cannot be written) or ctx's.
func Files(ctx context.Context, inputs []string, out string, opt Options) (Stats, error) {
	st := Stats{Inputs: len(inputs)}
	if len(inputs) == 0 {
		return st, outfile.InputErrorf("merge: no input files")
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	var ins []*input
	defer func() {
		for _, in := range ins {
			in.f.Close()
		}
	}()
	for _, p := range inputs {
		in, err := openInput(p)
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
		return st, outfile.WrapWrite(filepath.Dir(out), err)
	}
	f, err := outfile.Create(out)
	if err != nil {
		return st, err
	}
	fail := func(err error) (Stats, error) {
		f.Abort()
		return st, err
	}
	seed := maphash.MakeSeed()
	embedded := newURLSet(seed)
	et := outfile.EmbeddedTable(hasIDs, false, ins[0].kind, ins[0].dim)
	outE, err := f.CreateTable(et, 0, 1024, outfile.FinalCache)
	if err != nil {
		return fail(err)
	}
	st.Rows, st.DuplicateRows, err = mergeTable(ctx, ins, et, outE, embedded, nil, nil, f.Tmp(), st.ByLine)
	if err != nil {
		return fail(err)
	}
	ft := outfile.FailedTable(hasIDs, false)
	outF, err := f.CreateTable(ft, 0, 1024, outfile.FinalCache)
	if err != nil {
		return fail(err)
	}
	st.Failures, st.DuplicateFails, err = mergeTable(ctx, ins, ft, outF, newURLSet(seed), embedded, outE.Dataset(outfile.ColURLs), f.Tmp(), st.ByLine)
	if err != nil {
		return fail(err)
	}
	return st, f.Commit(attrs)
}

// openInput opens an input and reads what agree compares. Errors are outfile.ErrInput.
func openInput(p string) (*input, error) {
	f, err := outfile.Open(p)
	if err != nil {
		return nil, err
	}
	in := &input{f: f}
	if in.attrs, err = outfile.ReadAttrs(f); err == nil {
		var ok bool
		if ok, err = f.Has("embeddings"); err == nil && !ok {
			f.Close()
			return nil, outfile.InputErrorf("%s has no embeddings dataset: not a clipd output file", p)
		}
	}
	if err == nil {
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
		return nil, outfile.WrapRead(p, fmt.Errorf("%v (is it a clipd output file?)", err))
	}
	return in, nil
}

// agree checks that b can be merged with a. Errors are outfile.ErrMismatch.
func agree(a, b *input, pa, pb string) error {
	check := func(what string, x, y any) error {
		if x != y {
			return fmt.Errorf("%w: %s has %s %v, %s has %v; merge only outputs of the same model and settings", outfile.ErrMismatch, pa, what, x, pb, y)
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
	tf      *outfile.TableFile
	n, next int64 // rows, next row to read into the block
	b       *outfile.Block
	i       int // position in b
}

func (c *cursor) valid() bool { return c.i < c.b.N }

func (c *cursor) line() int64 { return c.b.Ints[outfile.ColLines][c.i] }

func (c *cursor) advance() error {
	c.i++
	if c.i < c.b.N || c.next >= c.n {
		return nil
	}
	m := int(min(c.n-c.next, outfile.ReadRows))
	if err := c.tf.Read(c.b, c.next, m); err != nil {
		return err
	}
	c.next += int64(m)
	c.i = 0
	return nil
}

// mergeTable appends one table of every input to out, skipping URLs in seen (and in
// exclude, whose URLs are those of embURLs: embedded URLs are not listed as failed). Rows
// go in line order when byLine, else input by input. tmp is out's file, named in errors.
func mergeTable(ctx context.Context, ins []*input, t outfile.Table, out *outfile.TableFile, seen, exclude *urlSet, embURLs *h5.Dataset, tmp string, byLine bool) (rows, dups int64, err error) {
	var cs []*cursor
	defer func() {
		for _, c := range cs {
			c.tf.Close()
		}
	}()
	for _, in := range ins {
		tf, n, err := outfile.OpenTable(in.f, t, 0)
		if err != nil {
			return 0, 0, err
		}
		c := &cursor{tf: tf, n: n, b: tf.Table().NewBlock(), i: -1}
		cs = append(cs, c)
		if err := c.advance(); err != nil {
			return 0, 0, err
		}
	}
	pending := out.Pending()
	// urlAt reads back the URL of an output row: from the file, or from pend above base.
	urlAt := func(ds *h5.Dataset, pend *outfile.Block, base int64) func(int64) (string, error) {
		return func(row int64) (string, error) {
			if row >= base {
				return pend.Strs[outfile.ColURLs][row-base], nil
			}
			s, err := ds.ReadStrings(row, 1)
			if err != nil {
				return "", outfile.WrapWrite(tmp, err) // reading back the output being written
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
		url := c.b.Strs[outfile.ColURLs][c.i]
		dup := false
		if exclude != nil {
			if dup, _, err = exclude.lookup(url, urlAt(embURLs, nil, embURLs.Rows())); err != nil {
				return 0, 0, err
			}
		}
		var h uint64
		if !dup {
			if dup, h, err = seen.lookup(url, urlAt(out.Dataset(outfile.ColURLs), pending, out.Written())); err != nil {
				return 0, 0, err
			}
		}
		if dup {
			dups++
		} else {
			seen.add(url, h, out.Written()+int64(pending.N))
			pending.AppendRow(c.b, c.i)
			if pending.N >= outfile.ReadRows {
				if err := out.Flush(); err != nil {
					return 0, 0, err
				}
			}
		}
		if err := c.advance(); err != nil {
			return 0, 0, err
		}
	}
	// The failed table's exclude set reads the embedded URLs back from the file: flush now.
	if err := out.Flush(); err != nil {
		return 0, 0, err
	}
	return out.Written(), dups, nil
}
