// bench_test.go: time per query of Search on a synthetic file of $CLIPD_SEARCH_BENCH_ROWS
// (default 200,000) x 512 normal values, float32 and float16, for 1 and 8 queries at once.
// The files are written once into $CLIPD_SEARCH_BENCH_DIR (default: a temporary folder) and
// kept there, so that `clipd search` can be timed on the same files:
//
//	CLIPD_SEARCH_BENCH_DIR=/tmp/sb CLIPD_SEARCH_BENCH_ROWS=2000000 go test -run - -bench Search -benchtime 5x ./internal/search/
package search

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/cgo/h5"
	"github.com/clipd/clipd/internal/pipeline/outfile"
)

// benchFile is the path of a rows x dim file of kind, written (streaming, so any size fits
// in memory) when it is not there yet.
func benchFile(b *testing.B, dir string, rows, dim int, kind h5.Kind) string {
	b.Helper()
	path := filepath.Join(dir, fmt.Sprintf("search-bench-%d-%s.h5", rows, kind))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	f, err := outfile.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	tf, err := f.CreateTable(outfile.WithRowInfo(outfile.EmbeddedTable(false, false, kind, dim), nil), int64(rows), rows, outfile.FinalCache)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(rows), uint64(kind)))
	blk := tf.Table().NewBlock()
	for start := 0; start < rows; start += outfile.ReadRows {
		n := min(outfile.ReadRows, rows-start)
		blk.Reset()
		raw := make([]byte, 0, n*dim*kind.Size())
		for i := start; i < start+n; i++ {
			blk.Strs[outfile.ColURLs] = append(blk.Strs[outfile.ColURLs], "https://example.com/img/"+strconv.Itoa(i)+".jpg")
			blk.Ints[outfile.ColLines] = append(blk.Ints[outfile.ColLines], int64(i+1))
			blk.Ints[outfile.ColWidths] = append(blk.Ints[outfile.ColWidths], 640)
			blk.Ints[outfile.ColHeights] = append(blk.Ints[outfile.ColHeights], 480)
			for range dim {
				v := float32(rng.NormFloat64())
				if kind == h5.Float16 {
					raw = binary.LittleEndian.AppendUint16(raw, h5.Float32ToFloat16(v))
				} else {
					raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
				}
			}
		}
		blk.Raw[outfile.ColValues], blk.N = raw, n
		if err := tf.WriteAt(blk, int64(start)); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Commit(outfile.Attrs{Model: "bench", WeightsSHA256: "bench", EmbedDim: dim, Dtype: kind.String(), Version: "bench"}); err != nil {
		b.Fatal(err)
	}
	return path
}

// cpuTime is the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkSearch(b *testing.B) {
	rows, dim := 200_000, 512
	if s := os.Getenv("CLIPD_SEARCH_BENCH_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("CLIPD_SEARCH_BENCH_ROWS=%q", s)
		}
		rows = n
	}
	dir := os.Getenv("CLIPD_SEARCH_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	for _, kind := range []h5.Kind{h5.Float32, h5.Float16} {
		path := benchFile(b, dir, rows, dim, kind)
		f, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		for _, nq := range []int{1, 8} {
			q := gaussian(5, nq, dim, true)
			b.Run(fmt.Sprintf("%s/rows=%d/queries=%d", kind, rows, nq), func(b *testing.B) {
				b.SetBytes(int64(rows) * int64(dim) * int64(kind.Size()))
				cpu0 := cpuTime()
				for b.Loop() {
					if _, err := Search(context.Background(), f, q, Options{K: 20}); err != nil {
						b.Fatal(err)
					}
				}
				// CPU time (user + system, all threads) per search: on a machine that other
				// work shares, wall time measures the sharing as much as the search.
				b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
			})
		}
		f.Close()
	}
}
