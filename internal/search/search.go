// search.go: the exact top-k core over any source of rows: blocks read ahead on one
// goroutine, each block's rows normalized (float32) and scored against every query by
// GEMMs, and a bounded heap per query that keeps the best k (ties to the lower row).

package search

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/clipd/clipd/internal/cgo/blas"
)

// DefaultBlockRows is how many rows are read and scored at a time: 16,384 x 512 float32 is
// 32 MiB, large enough that one GEMM and one read per block cost far more than their calls.
const DefaultBlockRows = 16384

// subRows is the sub-block the norms and the GEMM share while it is in the CPU's cache
// (256 x 512 float32 is 512 KiB): one pass over a block's memory instead of two; on 200,000
// x 512 float32 one query took 73 ms instead of 112 (bench/RESULTS.md).
const subRows = 256

// Rows is a matrix read in blocks: a file's embeddings.
type Rows interface {
	Rows() int64
	Dim() int
	// ReadBlock reads rows [start, start+n) as float32 into dst (n x Dim values).
	ReadBlock(start int64, n int, dst []float32) error
}

// HalfRows is Rows whose values are stored as float16: Search reads blocks of them as stored
// (half the bytes) and converts each sub-block in the cache, where it is scored.
type HalfRows interface {
	Rows
	Half() bool // the values are float16
	// ReadHalfBlock reads rows [start, start+n) as IEEE half-precision bits into dst.
	ReadHalfBlock(start int64, n int, dst []uint16) error
}

// Hit is one row found: its index in the file and its cosine with the query.
type Hit struct {
	Row   int64   `json:"row"`
	Score float32 `json:"score"`
}

// Options tune a search.
type Options struct {
	K         int // hits per query; more than the rows: every row
	BlockRows int // rows per block; 0: DefaultBlockRows
}

// Result is a search's outcome.
type Result struct {
	// Hits[q] are query q's best rows, best first: by score, then by row.
	Hits [][]Hit
	// Rows is how many rows were scored; Skipped of them have no cosine (a zero, non-finite
	// or overflowing embedding) and are never hits.
	Rows, Skipped int64
	Blocks        int
}

// ErrZeroQuery is a query vector without a direction (all zeros), or with NaN/Inf values.
var ErrZeroQuery = errors.New("the query vector is zero or not finite")

// Normalize scales each row of v (rows of dim values) to unit length in place. A row that
// is zero or not finite is an ErrZeroQuery naming it.
func Normalize(v []float32, dim int) error {
	for q := 0; q*dim < len(v); q++ {
		row := v[q*dim : (q+1)*dim]
		var ss float64
		for _, x := range row {
			ss += float64(x) * float64(x)
		}
		if ss == 0 || math.IsInf(ss, 0) || math.IsNaN(ss) {
			return fmt.Errorf("query %d: %w", q+1, ErrZeroQuery)
		}
		inv := 1 / math.Sqrt(ss)
		for i := range row {
			row[i] = float32(float64(row[i]) * inv)
		}
	}
	return nil
}

// Search scores every row of src against the queries (nq rows of src.Dim() values, each
// normalized by the caller: Normalize) and returns each query's best opt.K rows. It stops
// when ctx ends (ctx's error). Memory: two blocks of BlockRows x Dim values (float32, or
// float16 from a HalfRows), BlockRows x (nq + 1) float32 and the heaps.
func Search(ctx context.Context, src Rows, queries []float32, opt Options) (*Result, error) {
	dim := src.Dim()
	if dim <= 0 || len(queries) == 0 || len(queries)%dim != 0 {
		return nil, fmt.Errorf("search: %d query values for rows of %d", len(queries), dim)
	}
	if opt.K <= 0 {
		return nil, fmt.Errorf("search: k = %d, want 1 or more", opt.K)
	}
	nq := len(queries) / dim
	rows := src.Rows()
	blockRows := opt.BlockRows
	if blockRows <= 0 {
		blockRows = DefaultBlockRows
	}
	blockRows = int(min(int64(blockRows), max(rows, 1)))
	k := int(min(int64(opt.K), rows))

	res := &Result{Rows: rows, Hits: make([][]Hit, nq)}
	if k == 0 { // an empty file
		return res, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	readerDone := make(chan struct{})
	// The reader may be inside ReadBlock: the caller closes the file only after it returned.
	defer func() { cancel(); <-readerDone }()
	hs, half := src.(HalfRows)
	half = half && hs.Half()
	type block struct {
		start int64
		n     int
		vals  []float32 // float32 rows, or
		half  []uint16  // float16 rows as stored (HalfRows)
		err   error
	}
	// Two buffers: the reader fills one while the other is scored.
	free := make(chan block, 2)
	for range 2 {
		if half {
			free <- block{half: make([]uint16, blockRows*dim)}
		} else {
			free <- block{vals: make([]float32, blockRows*dim)}
		}
	}
	full := make(chan block, 1)
	go func() {
		defer close(readerDone)
		defer close(full)
		for start := int64(0); start < rows; start += int64(blockRows) {
			var b block
			select {
			case b = <-free:
			case <-ctx.Done():
				return
			}
			b.start, b.n = start, int(min(int64(blockRows), rows-start))
			if half {
				b.err = hs.ReadHalfBlock(start, b.n, b.half[:b.n*dim])
			} else {
				b.err = src.ReadBlock(start, b.n, b.vals[:b.n*dim])
			}
			select {
			case full <- b:
			case <-ctx.Done():
				return
			}
			if b.err != nil {
				return
			}
		}
	}()

	heaps := make([]topK, nq)
	for q := range heaps {
		heaps[q] = topK{k: k, h: make([]Hit, 0, k)}
	}
	scores := make([]float32, nq*blockRows)
	norms := make([]float32, blockRows)
	var scratch []float32 // a float16 sub-block converted
	if half {
		scratch = make([]float32, subRows*dim)
	}
	for b := range full {
		if b.err != nil {
			return nil, b.err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var err error
		if half {
			err = blas.ScoresHalf(nq, b.n, dim, subRows, queries, b.half[:b.n*dim], scores, norms, scratch)
		} else {
			err = blas.Scores(nq, b.n, dim, subRows, queries, b.vals[:b.n*dim], scores, norms)
		}
		if err != nil {
			return nil, err
		}
		free <- b
		// norms[j] becomes 1/|row j|, or NaN for a row without a cosine.
		for j, ss := range norms[:b.n] {
			if ss > 0 && ss <= math.MaxFloat32 {
				norms[j] = float32(1 / math.Sqrt(float64(ss)))
			} else {
				norms[j] = float32(math.NaN())
				res.Skipped++
			}
		}
		for q := range heaps {
			heaps[q].scan(scores[q*b.n:(q+1)*b.n], norms[:b.n], b.start)
		}
		res.Blocks++
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for q := range heaps {
		res.Hits[q] = heaps[q].sorted()
	}
	return res, nil
}

// topK keeps the best k hits seen: a min-heap whose root is the worst kept (the lowest
// score; of equal scores the highest row, since rows come in increasing order and the lower
// row wins a tie).
type topK struct {
	k int
	h []Hit
}

// worse reports whether a ranks below b.
func worse(a, b Hit) bool {
	return a.Score < b.Score || a.Score == b.Score && a.Row > b.Row
}

// scan offers the rows of one block (dots with the query, inverse norms; start is the
// block's first row).
func (t *topK) scan(dots, inv []float32, start int64) {
	for j, d := range dots {
		s := d * inv[j]
		if s != s || s > math.MaxFloat32 || s < -math.MaxFloat32 { // NaN (skipped row) or overflow
			continue
		}
		if len(t.h) == t.k {
			// A later row with an equal score loses the tie: only a better score enters.
			if s <= t.h[0].Score {
				continue
			}
			t.h[0] = Hit{Row: start + int64(j), Score: s}
			t.down(0)
			continue
		}
		t.h = append(t.h, Hit{Row: start + int64(j), Score: s})
		t.up(len(t.h) - 1)
	}
}

func (t *topK) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !worse(t.h[i], t.h[p]) {
			return
		}
		t.h[i], t.h[p] = t.h[p], t.h[i]
		i = p
	}
}

func (t *topK) down(i int) {
	n := len(t.h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && worse(t.h[r], t.h[l]) {
			m = r
		}
		if !worse(t.h[m], t.h[i]) {
			return
		}
		t.h[i], t.h[m] = t.h[m], t.h[i]
		i = m
	}
}

// sorted is the hits, best first.
func (t *topK) sorted() []Hit {
	out := append([]Hit(nil), t.h...)
	sort.Slice(out, func(i, j int) bool { return worse(out[j], out[i]) })
	return out
}
