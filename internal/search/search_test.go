// search_test.go: Search over real clipd files (written by outfile, read back through File)
// against numpy's brute force (testdata/bruteforce.py, h5py reading the same file): 200,000 x
// 512 in float32 and float16, normalized and not, several queries, k = 1, 20 and more than
// the rows; and the edges: ties, rows without a cosine, an empty file, a cancelled search.
package search

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/cgo/h5"
	"github.com/clipd/clipd/internal/pipeline/export"
	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// writeFile writes a final clipd file of the rows of emb (dim values each) stored as kind,
// with urls "row-I" and, when captions is not nil, a saved caption column.
func writeFile(t testing.TB, path string, emb []float32, dim int, kind h5.Kind, normalized bool, captions []string) {
	t.Helper()
	rows := len(emb) / dim
	var saved []string
	if captions != nil {
		saved = []string{"caption"}
	}
	f, err := outfile.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	tf, err := f.CreateTable(outfile.WithRowInfo(outfile.EmbeddedTable(false, false, kind, dim), saved), int64(rows), max(rows, 1), outfile.FinalCache)
	if err != nil {
		t.Fatal(err)
	}
	b := tf.Table().NewBlock()
	for start := 0; start < rows; start += outfile.ReadRows {
		n := min(outfile.ReadRows, rows-start)
		b.Reset()
		raw := make([]byte, 0, n*dim*kind.Size())
		for i := start; i < start+n; i++ {
			b.Strs[outfile.ColURLs] = append(b.Strs[outfile.ColURLs], fmt.Sprintf("row-%d", i))
			b.Ints[outfile.ColLines] = append(b.Ints[outfile.ColLines], int64(i+1))
			b.Ints[outfile.ColWidths] = append(b.Ints[outfile.ColWidths], 1)
			b.Ints[outfile.ColHeights] = append(b.Ints[outfile.ColHeights], 1)
			if captions != nil {
				b.Strs[outfile.ColSaved] = append(b.Strs[outfile.ColSaved], captions[i])
			}
			for _, v := range emb[i*dim : (i+1)*dim] {
				if kind == h5.Float16 {
					raw = binary.LittleEndian.AppendUint16(raw, h5.Float32ToFloat16(v))
				} else {
					raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
				}
			}
		}
		b.Raw[outfile.ColValues] = raw
		b.N = n
		if err := tf.WriteAt(b, int64(start)); err != nil {
			t.Fatal(err)
		}
	}
	dtype := "float32"
	if kind == h5.Float16 {
		dtype = "float16"
	}
	if err := f.Commit(outfile.Attrs{Model: "test", WeightsSHA256: "w", EmbedDim: dim, Normalized: normalized, Dtype: dtype, Columns: saved, Version: "test"}); err != nil {
		t.Fatal(err)
	}
}

// gaussian is n x dim normal values from seed; normalized rows when unit.
func gaussian(seed uint64, n, dim int, unit bool) []float32 {
	rng := rand.New(rand.NewPCG(seed, 7))
	v := make([]float32, n*dim)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	if unit {
		if err := Normalize(v, dim); err != nil {
			panic(err)
		}
	}
	return v
}

// writeNPY writes vals as a (rows, dim) float32 .npy file.
func writeNPY(t testing.TB, path string, vals []float32, dim int) {
	t.Helper()
	h, err := export.NPYHeader("<f4", int64(len(vals)/dim), dim)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vals {
		h = binary.LittleEndian.AppendUint32(h, math.Float32bits(v))
	}
	if err := os.WriteFile(path, h, 0o644); err != nil {
		t.Fatal(err)
	}
}

// bruteForce is numpy's cosines of path's embeddings with the queries: one slice of rows
// per query.
func bruteForce(t testing.TB, path string, queries []float32, dim int) [][]float32 {
	t.Helper()
	dir := t.TempDir()
	qpath, out := filepath.Join(dir, "q.npy"), filepath.Join(dir, "scores.npy")
	writeNPY(t, qpath, queries, dim)
	cmd := exec.Command("/usr/bin/python3", "testdata/bruteforce.py", path, qpath, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bruteforce.py: %v\n%s", err, b)
	}
	scores, rows, nq, err := ReadNPY(out) // (rows, queries)
	if err != nil {
		t.Fatal(err)
	}
	if nq != len(queries)/dim {
		t.Fatalf("numpy scored %d queries, want %d", nq, len(queries)/dim)
	}
	ref := make([][]float32, nq)
	for q := range ref {
		ref[q] = make([]float32, rows)
		for r := range rows {
			ref[q][r] = scores[r*nq+q]
		}
	}
	return ref
}

// scoreTol is how far float32 GEMM cosines may be from numpy's float64 ones.
const scoreTol = 2e-6

// checkTopK checks hits against numpy's scores of every row (ref): as many hits as
// min(k, rows with a cosine); each hit's score numpy's; best first, ties to the lower row;
// and exact: the hits are numpy's own top k, but for rows whose scores are within scoreTol
// of each other (float32 rounding may order those either way).
func checkTopK(t *testing.T, what string, hits []Hit, ref []float32, k int) {
	t.Helper()
	var order []int
	for r, s := range ref {
		if !math.IsNaN(float64(s)) {
			order = append(order, r)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case ref[a] > ref[b]:
			return -1
		case ref[a] < ref[b]:
			return 1
		}
		return 0
	})
	want := order[:min(k, len(order))]
	if len(hits) != len(want) {
		t.Fatalf("%s: %d hits, want %d", what, len(hits), len(want))
	}
	for i, h := range hits {
		if d := math.Abs(float64(h.Score - ref[h.Row])); d > scoreTol {
			t.Fatalf("%s: hit %d row %d score %v, numpy %v", what, i, h.Row, h.Score, ref[h.Row])
		}
		if i > 0 && worse(hits[i-1], h) {
			t.Fatalf("%s: hit %d (%v) ranks above hit %d (%v)", what, i, h, i-1, hits[i-1])
		}
		if int(h.Row) != want[i] && math.Abs(float64(ref[h.Row]-ref[want[i]])) > scoreTol {
			t.Fatalf("%s: hit %d is row %d (numpy %v), numpy's is row %d (%v)", what, i, h.Row, ref[h.Row], want[i], ref[want[i]])
		}
	}
}

// TestSearchMatchesNumpy: 200,000 x 512 files, float32 and float16, normalized and not, four
// queries (one a row of the file) in one search, k = 1, 20 and 250,000, in blocks that do
// and do not divide the rows.
func TestSearchMatchesNumpy(t *testing.T) {
	rows, dim := 200_000, 512
	if testing.Short() {
		rows = 20_000
	}
	for _, c := range []struct {
		kind       h5.Kind
		normalized bool
		blockRows  int
	}{
		{h5.Float32, false, 0}, {h5.Float32, true, 4099}, {h5.Float16, false, 4099}, {h5.Float16, true, 0},
	} {
		what := fmt.Sprintf("%s normalized=%v blocks=%d", c.kind, c.normalized, c.blockRows)
		path := filepath.Join(t.TempDir(), "Images_Embedded.h5")
		emb := gaussian(uint64(c.kind)*2+map[bool]uint64{false: 0, true: 1}[c.normalized], rows, dim, c.normalized)
		if !c.normalized {
			for i := 0; i < rows; i++ { // norms far from 1, and different per row
				s := float32(1 + i%13)
				for j := range dim {
					emb[i*dim+j] *= s
				}
			}
		}
		writeFile(t, path, emb, dim, c.kind, c.normalized, nil)
		queries := gaussian(99, 4, dim, false)
		copy(queries[3*dim:], emb[123_45*dim:(123_45+1)*dim])
		ref := bruteForce(t, path, queries, dim)
		if len(ref[0]) != rows {
			t.Fatalf("numpy scored %d rows, want %d", len(ref[0]), rows)
		}
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		q := append([]float32(nil), queries...)
		if err := Normalize(q, dim); err != nil {
			t.Fatal(err)
		}
		for _, k := range []int{1, 20, rows + 50_000} {
			res, err := Search(context.Background(), f, q, Options{K: k, BlockRows: c.blockRows})
			if err != nil {
				t.Fatal(err)
			}
			if res.Rows != int64(rows) || res.Skipped != 0 || len(res.Hits) != 4 {
				t.Fatalf("%s k=%d: rows %d, skipped %d, %d queries", what, k, res.Rows, res.Skipped, len(res.Hits))
			}
			for qi := range 4 {
				checkTopK(t, fmt.Sprintf("%s k=%d query %d", what, k, qi), res.Hits[qi], ref[qi], k)
			}
			if top := res.Hits[3][0]; top.Row != 123_45 || top.Score < 0.9999 {
				t.Errorf("%s: query 3 (row 12345 itself) found %+v first", what, top)
			}
		}
		f.Close()
		os.Remove(path)
	}
}

// TestSearchTies: rows with equal cosines rank by row, whatever the blocks; rows of zeros,
// NaN or Inf have no cosine and are never hits.
func TestSearchTies(t *testing.T) {
	const dim, rows = 4, 50
	emb := make([]float32, rows*dim)
	for i := 0; i < rows; i++ {
		// Five distinct directions (integers: the dot products are exact), each repeated.
		v := [][dim]float32{{1, 0, 0, 0}, {1, 1, 0, 0}, {2, 1, 1, 0}, {0, 0, 0, 3}, {1, 2, 2, 4}}[i%5]
		copy(emb[i*dim:], v[:])
	}
	copy(emb[7*dim:], []float32{0, 0, 0, 0})
	copy(emb[12*dim:], []float32{float32(math.NaN()), 1, 0, 0})
	copy(emb[17*dim:], []float32{float32(math.Inf(1)), 1, 0, 0})
	for _, kind := range []h5.Kind{h5.Float32, h5.Float16} {
		path := filepath.Join(t.TempDir(), "ties.h5")
		writeFile(t, path, emb, dim, kind, false, nil)
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		q := []float32{1, 0, 0, 0}
		var first []Hit
		for _, block := range []int{1, 3, 7, 50, 0} {
			res, err := Search(context.Background(), f, q, Options{K: 60, BlockRows: block})
			if err != nil {
				t.Fatal(err)
			}
			hits := res.Hits[0]
			if res.Skipped != 3 || len(hits) != rows-3 {
				t.Fatalf("%s blocks of %d: %d hits, %d skipped; want %d and 3", kind, block, len(hits), res.Skipped, rows-3)
			}
			// Rows 0, 5, 10, 15, ... (direction 0, cosine 1) first, in row order.
			for i, h := range hits[:10] {
				if h.Row != int64(5*i) || h.Score != 1 {
					t.Fatalf("%s blocks of %d: hit %d = %+v, want row %d score 1", kind, block, i, h, 5*i)
				}
			}
			for i := 1; i < len(hits); i++ {
				if hits[i].Score == hits[i-1].Score && hits[i].Row < hits[i-1].Row {
					t.Fatalf("%s: equal scores out of row order: %+v then %+v", kind, hits[i-1], hits[i])
				}
				if r := hits[i].Row; r == 7 || r == 12 || r == 17 {
					t.Fatalf("%s: row %d (zero or not finite) is a hit", kind, r)
				}
			}
			// Fewer hits than ties: the lowest rows of the tie.
			for _, k := range []int{1, 3, 12} {
				res, err := Search(context.Background(), f, q, Options{K: k, BlockRows: block})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(res.Hits[0], hits[:k]) {
					t.Fatalf("%s blocks of %d, k = %d: %v, want %v", kind, block, k, res.Hits[0], hits[:k])
				}
			}
			if first == nil {
				first = hits
			} else if !slices.Equal(first, hits) {
				t.Fatalf("%s: blocks of %d give other hits than blocks of 1", kind, block)
			}
		}
		f.Close()
	}
}

// TestSearchEmptyAndCancelled: a file without rows gives no hits; a cancelled context ends
// the search with its error.
func TestSearchEmptyAndCancelled(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.h5")
	writeFile(t, empty, nil, 8, h5.Float32, true, nil)
	f, err := Open(empty)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Search(context.Background(), f, gaussian(1, 1, 8, true), Options{K: 5})
	if err != nil || len(res.Hits) != 1 || len(res.Hits[0]) != 0 {
		t.Fatalf("empty file: %+v, %v", res, err)
	}
	f.Close()

	path := filepath.Join(dir, "f.h5")
	writeFile(t, path, gaussian(2, 5000, 8, false), 8, h5.Float32, false, nil)
	f, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Search(ctx, f, gaussian(3, 1, 8, true), Options{K: 5, BlockRows: 10}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled search: %v", err)
	}
	if _, err := Search(context.Background(), f, gaussian(3, 1, 8, true), Options{K: 0}); err == nil {
		t.Fatal("k = 0 accepted")
	}
}

// TestDescribe: the url, and the caption when saved, of rows asked in any order, repeated,
// near and far apart.
func TestDescribe(t *testing.T) {
	const rows, dim = 10_000, 4
	captions := make([]string, rows)
	for i := range captions {
		captions[i] = fmt.Sprintf("caption %d", i)
	}
	path := filepath.Join(t.TempDir(), "c.h5")
	writeFile(t, path, gaussian(4, rows, dim, true), dim, h5.Float16, true, captions)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ask := []int64{9999, 0, 4095, 4096, 5, 5, 8000}
	got, err := f.Describe(ask)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range ask {
		if got[i].URL != fmt.Sprintf("row-%d", r) || got[i].Columns["caption"] != captions[r] {
			t.Errorf("row %d: %+v", r, got[i])
		}
	}
}

// TestOpenRefuses: a missing file, a file that is not HDF5, and a clipd-like file without
// embeddings are ErrInput errors that name the file.
func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	notH5 := filepath.Join(dir, "x.h5")
	os.WriteFile(notH5, []byte("hello"), 0o644)
	noEmb := filepath.Join(dir, "noemb.h5")
	hf, err := h5.Create(noEmb)
	if err != nil {
		t.Fatal(err)
	}
	hf.Close()
	for _, p := range []string{filepath.Join(dir, "missing.h5"), notH5, noEmb} {
		_, err := Open(p)
		if !errors.Is(err, outfile.ErrInput) || !strings.Contains(err.Error(), p) {
			t.Errorf("Open(%s): %v", p, err)
		}
	}
}
