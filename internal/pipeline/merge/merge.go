// merge.go: Files joins final files of several shards (or runs) into one, streaming, with
// URLs deduplicated across files. The files are grouped by input: the shards of one input
// must be of one run, each shard once (and all of them, unless AllowMissing), and come back
// in input order by their `lines`; the groups of other inputs follow in the order given,
// and a file of several inputs records each row's input in input_index.
package merge

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/clipd/clipd/internal/cgo/h5"
	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// Options configure Files.
type Options struct {
	Version      string // clipd_version attribute of the output
	AllowMissing bool   // merge the shards present when some of an input's shards are missing
	Logger       *slog.Logger
}

// Stats describe a merge.
type Stats struct {
	Inputs                        int // files merged
	DistinctInputs                int // inputs they came from (entries of the inputs datasets when > 1)
	Rows, Failures                int64
	DuplicateRows, DuplicateFails int64  // dropped: a URL already embedded (or already failed)
	ByLine                        bool   // rows ordered by input line (shards of one input)
	Shard                         string // the output's shard attribute: "0/1" when every shard was merged
}

// MissingShardsError: some shards of an input are missing (and AllowMissing is off). It
// matches outfile.ErrMismatch.
type MissingShardsError struct {
	Input         string
	Missing, Have []int
	Count         int
}

func (e *MissingShardsError) Error() string {
	return fmt.Sprintf("%s: %s %s of %d missing (have %s): finish %s (rerun %s, or clipd embed --shard %d/%d with the run's flags) and merge again",
		e.Input, plural(len(e.Missing), "shard", "shards"), joinInts(e.Missing), e.Count, joinInts(e.Have),
		plural(len(e.Missing), "it", "them"), plural(len(e.Missing), "that array task", "those array tasks"), e.Missing[0], e.Count)
}

func (e *MissingShardsError) Unwrap() error { return outfile.ErrMismatch }

// input is one input file.
type input struct {
	path   string
	f      *h5.File
	attrs  outfile.Attrs
	kind   h5.Kind
	dim    int
	hasIDs bool
	lines  bool
	text   bool                 // has text_embeddings
	parts  []outfile.InputEntry // its inputs: one from its Attrs, or its inputs datasets
	remap  []int64              // its input index -> the output's
}

// group is the files of one input (by its resolved location).
type group struct {
	entry outfile.InputEntry // of its first file; Shards set at the end
	first *input             // the file that set entry
	count int                // shards of the run
	holds map[int]*input     // shard index -> the file that holds it
	files []int              // its single-input files, in the order given
}

// Files writes out from inputs: every URL once (the first embedding of a URL wins; a URL
// that failed somewhere but was embedded elsewhere is not listed as failed). Memory: one
// 8-byte hash and one 8-byte row index per distinct URL in Go maps, about 40 bytes per
// URL (~360 MB for Open Images' 9M), plus a few blocks of rows per input. A path given
// twice is merged once.
// Errors are outfile.ErrInput (an input cannot be read), outfile.ErrMismatch (the inputs
// disagree; *MissingShardsError when shards are missing), outfile.ErrOutput (out cannot be
// written), outfile.ErrLocked (another clipd writes out's folder) or ctx's.
func Files(ctx context.Context, inputs []string, out string, opt Options) (Stats, error) {
	inputs = uniquePaths(inputs)
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
		if err := agree(ins[0], in); err != nil {
			return st, err
		}
	}
	groups, err := groupInputs(ins, opt)
	if err != nil {
		return st, err
	}
	st.DistinctInputs = len(groups)
	attrs := mergedAttrs(ins, groups, opt.Version)
	st.Shard = attrs.Shard
	segs := segments(ins, groups)
	st.ByLine = len(segs) == 1 && segs[0].byLine
	hasIDs := false
	for _, in := range ins {
		hasIDs = hasIDs || in.hasIDs
	}
	indexed := len(groups) > 1

	// A merge into an output folder (its Images_Embedded.h5, or any file of a folder clipd
	// has locked before) takes the folder's lock as clipd embed does: a run writing that
	// folder, or another merge, would overwrite the final file. Elsewhere (-o /tmp/x.h5) no
	// lock file is left behind.
	if lockFolder(out) {
		lock, err := outfile.LockDir(filepath.Dir(out))
		if err != nil {
			return st, err
		}
		defer lock.Unlock()
	} else if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
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
	withIndex := func(t outfile.Table) outfile.Table {
		if indexed {
			return outfile.WithInputIndex(t)
		}
		return t
	}
	seed := maphash.MakeSeed()
	embedded := newURLSet(seed)
	kind, dim := ins[0].kind, ins[0].dim
	saved := attrs.Columns // every input's saved columns; rows of a file without one get ""
	text := ins[0].text    // all or none of the inputs have text embeddings (agree)
	outE, err := f.CreateTable(outfile.WithRowInfo(withIndex(outfile.WithText(outfile.EmbeddedTable(hasIDs, false, kind, dim), text)), saved), 0, 1024, outfile.FinalCache)
	if err != nil {
		return fail(err)
	}
	readE := outfile.WithRowInfo(outfile.WithInputIndex(outfile.WithText(outfile.EmbeddedTable(true, false, kind, dim), text)), saved)
	st.Rows, st.DuplicateRows, err = mergeTable(ctx, ins, segs, readE, outE, indexed, embedded, nil, nil, f.Tmp())
	if err != nil {
		return fail(err)
	}
	outF, err := f.CreateTable(withIndex(outfile.FailedTable(hasIDs, false)), 0, 1024, outfile.FinalCache)
	if err != nil {
		return fail(err)
	}
	readF := outfile.WithInputIndex(outfile.FailedTable(true, false))
	st.Failures, st.DuplicateFails, err = mergeTable(ctx, ins, segs, readF, outF, indexed, newURLSet(seed), embedded, outE.Dataset(outfile.ColURLs), f.Tmp())
	if err != nil {
		return fail(err)
	}
	if indexed {
		entries := make([]outfile.InputEntry, len(groups))
		for i, g := range groups {
			entries[i] = g.entry
		}
		if err := f.WriteInputs(entries); err != nil {
			return fail(err)
		}
	}
	return st, f.Commit(attrs)
}

// lockFolder reports whether a merge into out locks out's folder (see Files).
func lockFolder(out string) bool {
	if filepath.Base(out) == outfile.FinalName {
		return true
	}
	_, err := os.Stat(filepath.Join(filepath.Dir(out), outfile.LockName))
	return err == nil
}

// uniquePaths drops the repeats of a path (the same file named twice, e.g. by a folder and
// a glob), keeping the first.
func uniquePaths(paths []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range paths {
		k, err := filepath.Abs(p)
		if err != nil {
			k = filepath.Clean(p)
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	return out
}

// openInput opens an input and reads what agree and groupInputs compare. Errors are
// outfile.ErrInput.
func openInput(p string) (*input, error) {
	f, err := outfile.Open(p)
	if err != nil {
		return nil, err
	}
	in := &input{path: p, f: f}
	if in.attrs, err = outfile.ReadAttrs(f); err == nil {
		var ok bool
		if ok, err = f.Has("embeddings"); err == nil && !ok {
			f.Close()
			return nil, outfile.InputErrorf("%s has no embeddings dataset: not a clipd output file", p)
		}
	}
	if err == nil {
		var d *h5.Dataset
		if d, err = outfile.OpenDataset(f, "embeddings", 0); err == nil {
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
	if err == nil {
		in.text, err = f.Has(outfile.TextEmbeddings)
	}
	if err == nil {
		in.parts, err = outfile.ReadInputs(f)
	}
	if err != nil {
		f.Close()
		return nil, outfile.WrapRead(p, fmt.Errorf("%v (is it a clipd output file?)", err))
	}
	if len(in.parts) == 0 {
		a := in.attrs
		in.parts = []outfile.InputEntry{{Input: a.Input, Fingerprint: a.InputFingerprint, Shards: a.Shard, Limit: a.Limit, URLKind: a.URLKind}}
	}
	return in, nil
}

// agree checks that b can be merged with a (whatever their inputs: the rows go in one
// embeddings matrix). Errors are outfile.ErrMismatch.
func agree(a, b *input) error {
	check := func(what string, x, y any) error {
		if x != y {
			return fmt.Errorf("%w: %s has %s %v, %s has %v; merge only outputs of the same model and settings", outfile.ErrMismatch, a.path, what, x, b.path, y)
		}
		return nil
	}
	for _, err := range []error{
		check("model", a.attrs.Model, b.attrs.Model),
		check("dtype", a.kind.String(), b.kind.String()),
		check("embed_dim", a.dim, b.dim),
		check("normalized", a.attrs.Normalized, b.attrs.Normalized),
		check("text_embeddings", a.text, b.text),
		check("text_column", quoted(a.attrs.TextColumn), quoted(b.attrs.TextColumn)),
	} {
		if err != nil {
			return err
		}
	}
	if a.attrs.TokenizerSHA256 != "" && b.attrs.TokenizerSHA256 != "" {
		if err := check("tokenizer_sha256", a.attrs.TokenizerSHA256, b.attrs.TokenizerSHA256); err != nil {
			return err
		}
	}
	if a.attrs.WeightsSHA256 != "" && b.attrs.WeightsSHA256 != "" {
		return check("weights_sha256", a.attrs.WeightsSHA256, b.attrs.WeightsSHA256)
	}
	return nil
}

// groupInputs groups the inputs' parts by input, checks that the parts of one input are
// shards of one run, each once, and all of them unless opt.AllowMissing, and sets each
// input's remap. Errors are outfile.ErrMismatch (or ErrInput for an unreadable shard).
func groupInputs(ins []*input, opt Options) ([]*group, error) {
	var groups []*group
	byInput := map[string]*group{}
	for fi, in := range ins {
		in.remap = make([]int64, len(in.parts))
		for pi, p := range in.parts {
			idx, n, err := outfile.ParseShards(p.Shards)
			if err != nil {
				return nil, outfile.InputErrorf("%s: %v (is it a clipd output file?)", in.path, err)
			}
			g := byInput[p.Input]
			if g == nil {
				g = &group{entry: p, first: in, count: n, holds: map[int]*input{}}
				byInput[p.Input] = g
				groups = append(groups, g)
			} else if err := sameRun(g, in, p, n); err != nil {
				return nil, err
			}
			if g.entry.Fingerprint == "" {
				g.entry.Fingerprint = p.Fingerprint
			}
			for _, i := range idx {
				if other := g.holds[i]; other != nil {
					return nil, outfile.MismatchErrorf("merge: %s and %s both hold shard %d/%d of %s: merge each shard once (leave one of them out)",
						other.path, in.path, i, n, p.Input)
				}
				g.holds[i] = in
			}
			if len(in.parts) == 1 {
				g.files = append(g.files, fi)
			}
			for gi := range groups {
				if groups[gi] == g {
					in.remap[pi] = int64(gi)
				}
			}
		}
	}
	for _, g := range groups {
		var have, missing []int
		for i := 0; i < g.count; i++ {
			if g.holds[i] != nil {
				have = append(have, i)
			} else {
				missing = append(missing, i)
			}
		}
		g.entry.Shards = outfile.FormatShards(have, g.count)
		if len(missing) == 0 {
			continue
		}
		e := &MissingShardsError{Input: g.entry.Input, Missing: missing, Have: have, Count: g.count}
		if !opt.AllowMissing {
			return nil, e
		}
		opt.Logger.Warn("merge: shards missing; merging the others", "input", e.Input, "missing", joinInts(missing), "of", g.count)
	}
	return groups, nil
}

// sameRun checks that part p of in (n shards) comes from the run of g's first file: what
// a run's identity holds besides the shard index. Errors are outfile.ErrMismatch.
func sameRun(g *group, in *input, p outfile.InputEntry, n int) error {
	a := g.first
	differ := func(what string, x, y any) error {
		return outfile.MismatchErrorf("merge: %s and %s are runs of %s with different %s (%v vs %v): merge the shards of one run only (rerun the odd one with the run's flags)",
			a.path, in.path, p.Input, what, x, y)
	}
	switch {
	case n != g.count:
		return differ("shard counts", g.count, n)
	case p.Fingerprint != "" && g.entry.Fingerprint != "" && p.Fingerprint != g.entry.Fingerprint:
		return outfile.MismatchErrorf("merge: %s and %s are runs of %s with different input_fingerprint (%s vs %s): the input changed between the runs; rerun every shard on one version of it",
			a.path, in.path, p.Input, g.entry.Fingerprint, p.Fingerprint)
	case p.Limit != g.entry.Limit:
		return differ("limit", g.entry.Limit, p.Limit)
	case p.URLKind != g.entry.URLKind:
		return differ("url_kind", quoted(g.entry.URLKind), quoted(p.URLKind))
	case in.attrs.Preprocess != a.attrs.Preprocess:
		return differ("preprocess", quoted(a.attrs.Preprocess), quoted(in.attrs.Preprocess))
	}
	return nil
}

// mergedAttrs is the run identity of the whole: that of the one input (shard "0/1" when
// every shard was merged), or, of several inputs, a pointer to the inputs datasets.
func mergedAttrs(ins []*input, groups []*group, version string) outfile.Attrs {
	attrs := ins[0].attrs
	attrs.Version = version
	attrs.Columns = savedColumns(ins)
	for _, in := range ins {
		if attrs.WeightsSHA256 == "" {
			attrs.WeightsSHA256 = in.attrs.WeightsSHA256
		}
	}
	if len(groups) == 1 {
		e := groups[0].entry
		attrs.Input, attrs.InputFingerprint, attrs.Shard, attrs.Limit, attrs.URLKind = e.Input, e.Fingerprint, e.Shards, e.Limit, e.URLKind
		return attrs
	}
	attrs.Input = fmt.Sprintf("merge of %d inputs (see the inputs datasets)", len(groups))
	attrs.InputFingerprint, attrs.Shard = "", "0/1"
	attrs.Limit, attrs.URLKind = groups[0].entry.Limit, groups[0].entry.URLKind
	for _, g := range groups {
		if g.entry.Shards != "0/1" {
			attrs.Shard = "partial (see inputs_shards)"
		}
		if g.entry.Limit != attrs.Limit {
			attrs.Limit = -1 // differs: see inputs_limit
		}
		if g.entry.URLKind != attrs.URLKind {
			attrs.URLKind = "mixed (see inputs_url_kind)"
		}
	}
	return attrs
}

// segment is a run of output rows: the files of one input (by line when all have lines),
// or one file of several inputs as it is.
type segment struct {
	files  []int
	byLine bool
}

// segments orders the output: each input's files where its first file was given, a file
// of several inputs where it was given.
func segments(ins []*input, groups []*group) []segment {
	var segs []segment
	done := map[*group]bool{}
	groupOf := map[int]*group{}
	for _, g := range groups {
		for _, fi := range g.files {
			groupOf[fi] = g
		}
	}
	for fi := range ins {
		g := groupOf[fi]
		if g == nil {
			segs = append(segs, segment{files: []int{fi}})
			continue
		}
		if done[g] {
			continue
		}
		done[g] = true
		s := segment{files: g.files, byLine: true}
		for _, f := range g.files {
			s.byLine = s.byLine && ins[f].lines
		}
		segs = append(segs, s)
	}
	return segs
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
	in      *input
	tf      *outfile.TableFile
	n, next int64 // rows, next row to read into the block
	b       *outfile.Block
	i       int // position in b
}

func (c *cursor) valid() bool { return c.i < c.b.N }

func (c *cursor) line() int64 { return c.b.Ints[outfile.ColLines][c.i] }

// inputIndex is the output's input index of the current row.
func (c *cursor) inputIndex() (int64, error) {
	var local int64
	if v := c.b.Ints[outfile.ColInput]; c.i < len(v) {
		local = v[c.i]
	}
	if local < 0 || local >= int64(len(c.in.remap)) {
		return 0, outfile.InputErrorf("%s: input index %d of row %d is not in its inputs datasets: the file is damaged", c.in.path, local, c.next-int64(c.b.N)+int64(c.i))
	}
	return c.in.remap[local], nil
}

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

// mergeTable appends table t of every input to out, segment by segment, skipping URLs in
// seen (and in exclude, whose URLs are those of embURLs: embedded URLs are not listed as
// failed); indexed sets each row's input index. tmp is out's file, named in errors.
func mergeTable(ctx context.Context, ins []*input, segs []segment, t outfile.Table, out *outfile.TableFile, indexed bool, seen, exclude *urlSet, embURLs *h5.Dataset, tmp string) (rows, dups int64, err error) {
	cs := make([]*cursor, len(ins))
	defer func() {
		for _, c := range cs {
			if c != nil {
				c.tf.Close()
			}
		}
	}()
	for i, in := range ins {
		tf, n, err := outfile.OpenTable(in.f, t, 0)
		if err != nil {
			return 0, 0, err
		}
		c := &cursor{in: in, tf: tf, n: n, b: tf.Table().NewBlock(), i: -1}
		cs[i] = c
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
	k := 0
	for _, seg := range segs {
		cur := 0
		for ; ; k++ {
			if k%4096 == 0 && ctx.Err() != nil {
				return 0, 0, ctx.Err()
			}
			// pick the file whose row comes next
			pick := -1
			if seg.byLine {
				for _, fi := range seg.files {
					if c := cs[fi]; c.valid() && (pick < 0 || c.line() < cs[pick].line()) {
						pick = fi
					}
				}
			} else {
				for cur < len(seg.files) && !cs[seg.files[cur]].valid() {
					cur++
				}
				if cur < len(seg.files) {
					pick = seg.files[cur]
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
				if indexed {
					gi, err := c.inputIndex()
					if err != nil {
						return 0, 0, err
					}
					pending.Ints[outfile.ColInput][pending.N-1] = gi
				}
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
	}
	// The failed table's exclude set reads the embedded URLs back from the file: flush now.
	if err := out.Flush(); err != nil {
		return 0, 0, err
	}
	return out.Written(), dups, nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func quoted(s string) string { return strconv.Quote(s) }

// savedColumns is the union of the inputs' saved input columns, in the order met.
func savedColumns(ins []*input) []string {
	var cols []string
	for _, in := range ins {
		for _, c := range in.attrs.Columns {
			if !slices.Contains(cols, c) {
				cols = append(cols, c)
			}
		}
	}
	return cols
}
