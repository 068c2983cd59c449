// bench_test.go: parsing throughput — rows/s and MB/s for a plain list, Open Images-shaped CSV
// (plain and gzipped), with and without a shard.
//
//	go test -run '^$' -bench . -benchtime 5x ./pipeline/source/

package source

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"testing"
)

func benchInput(b *testing.B, rows int, csv bool) []byte {
	data, err := io.ReadAll(&genList{n: rows, csv: csv})
	if err != nil {
		b.Fatal(err)
	}
	return data
}

func benchRead(b *testing.B, data []byte, rows int, name string, opt Options) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s, err := New(context.Background(), bytes.NewReader(data), name, opt)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for range s.Records() {
			n++
		}
		if s.Err() != nil || (opt.Shard.Count <= 1 && n != rows) {
			b.Fatalf("%d records, err %v", n, s.Err())
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

const benchRows = 200_000

func BenchmarkText(b *testing.B) {
	benchRead(b, benchInput(b, benchRows, false), benchRows, "l.txt", Options{})
}

func BenchmarkOpenImagesCSV(b *testing.B) {
	benchRead(b, benchInput(b, benchRows, true), benchRows, "l.csv", Options{})
}

func BenchmarkOpenImagesCSVGzip(b *testing.B) {
	var z bytes.Buffer
	data := benchInput(b, benchRows, true)
	zw := gzipWriter(&z)
	zw.Write(data)
	zw.Close()
	benchRead(b, z.Bytes(), benchRows, "l.csv.gz", Options{})
}

func BenchmarkOpenImagesCSVShard(b *testing.B) {
	benchRead(b, benchInput(b, benchRows, true), benchRows, "l.csv", Options{Shard: Shard{3, 8}})
}

func gzipWriter(w io.Writer) io.WriteCloser { return gzip.NewWriter(w) }
