// bench_test.go: how fast the read stage takes s3:// rows from the test S3 server (SeaweedFS
// on 127.0.0.1): objects/s and MB/s at 16 objects at once.
//
//	go test -run '^$' -bench . -benchtime 3x ./internal/pipeline/read/

package read

import (
	"context"
	"fmt"
	"testing"

	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/objstore/s3test"
	"github.com/clipd/clipd/internal/pipeline/item"
)

func BenchmarkReadObjects(b *testing.B) {
	const n, size = 200, 32 << 10
	srv := s3test.Shared(b)
	c := srv.Client(b)
	bucket := srv.Bucket(b)
	body := make([]byte, size)
	var urls []string
	for i := range n {
		l := objstore.Location{Bucket: bucket, Key: fmt.Sprintf("img/%05d.jpg", i)}
		if err := c.PutBytes(context.Background(), l, body, nil); err != nil {
			b.Fatal(err)
		}
		urls = append(urls, l.String())
	}
	b.SetBytes(n * size)
	b.ResetTimer()
	for range b.N {
		in := make(chan item.Item)
		fails := make(chan item.Failure, n)
		s := Start(context.Background(), in, fails, Options{Objects: c, ObjectWorkers: 16})
		go func() {
			defer close(in)
			for i, u := range urls {
				in <- item.Item{Seq: int64(i), URL: u}
			}
		}()
		got := 0
		for e := range s.Out() {
			got++
			e.Release()
		}
		if got != n || len(fails) != 0 {
			b.Fatalf("%d bodies, %d failures", got, len(fails))
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "objects/s")
}
