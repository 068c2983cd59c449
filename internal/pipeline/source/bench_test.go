// bench_test.go: parsing throughput — rows/s and MB/s for a plain list, Open Images-shaped CSV
// (plain and gzipped, from memory and streamed from an S3 bucket), with and without a shard.
//
//	go test -run '^$' -bench . -benchtime 5x ./pipeline/source/

package source

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"testing"

	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/objstore/s3test"
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

// BenchmarkS3OpenImagesCSVGzip is BenchmarkOpenImagesCSVGzip with the list in a bucket of
// the test S3 server (SeaweedFS on 127.0.0.1): what streaming it through the S3 API costs.
func BenchmarkS3OpenImagesCSVGzip(b *testing.B) {
	srv := s3test.Shared(b)
	c := srv.Client(b)
	bucket := srv.Bucket(b)
	var z bytes.Buffer
	zw := gzipWriter(&z)
	zw.Write(benchInput(b, benchRows, true))
	zw.Close()
	l := objstore.Location{Bucket: bucket, Key: "l.csv.gz"}
	if err := c.PutBytes(context.Background(), l, z.Bytes(), nil); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(z.Len()))
	b.ResetTimer()
	for range b.N {
		s, err := Open(context.Background(), l.String(), Options{Objects: c})
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for range s.Records() {
			n++
		}
		if s.Err() != nil || n != benchRows {
			b.Fatalf("%d records, err %v", n, s.Err())
		}
	}
	b.ReportMetric(float64(benchRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
