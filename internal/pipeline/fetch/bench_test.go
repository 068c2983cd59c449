// bench_test.go: fetch throughput on loopback against a fasthttp server sending 100 KB
// bodies, at 64, 256 and 1024 connections. Reports requests/s and MB/s (go test -bench).
package fetch

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/pipeline/item"
	"github.com/valyala/fasthttp"
)

func BenchmarkFetch100KB(b *testing.B) {
	body := fakeImage(100<<10, 42)
	url := serveBody(b, body) + "/img.jpg"

	for _, conns := range []int{64, 256, 1024} {
		b.Run("conns="+strconv.Itoa(conns), func(b *testing.B) {
			f := New(Options{Concurrency: conns, MaxConnsPerHost: conns, Timeout: time.Minute, AllowPrivateNetworks: true})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			in := make(chan item.Item, conns)
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			start := time.Now()
			go func() {
				defer close(in)
				for i := range b.N {
					in <- item.Item{Seq: int64(i), URL: url}
				}
			}()
			for r := range f.Run(ctx, in) {
				if r.Failure != nil {
					b.Fatalf("%s: %s", r.Item.URL, r.Failure.Reason)
				}
				if len(r.Body) != len(body) {
					b.Fatalf("got %d bytes", len(r.Body))
				}
				r.Release()
			}
			elapsed := time.Since(start).Seconds()
			b.ReportMetric(float64(b.N)/elapsed, "req/s")
		})
	}
}

// BenchmarkFetchManyHosts: 64 hosts (servers on 64 loopback ports) x 200 URLs each, handed
// out interleaved, with the default Options: what per-host politeness costs when many hosts
// share the work. One op is one URL; reports req/s.
func BenchmarkFetchManyHosts(b *testing.B) {
	const hosts, perHost = 64, 200
	body := fakeImage(100<<10, 42)
	var bases []string
	for range hosts {
		bases = append(bases, serveBody(b, body))
	}
	opt := Options{Timeout: time.Minute, AllowPrivateNetworks: true}
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	start := time.Now()
	for done := 0; done < b.N; done += hosts * perHost {
		f := New(opt)
		in := make(chan item.Item, 256)
		go func() {
			defer close(in)
			for i := range hosts * perHost {
				in <- item.Item{Seq: int64(i), URL: bases[i%hosts] + "/img/" + strconv.Itoa(i) + ".jpg"}
			}
		}()
		for r := range f.Run(context.Background(), in) {
			if r.Failure != nil {
				b.Fatalf("%s: %s", r.Item.URL, r.Failure.Reason)
			}
			r.Release()
		}
	}
	b.StopTimer() // the servers' shutdown (deferred) is not fetching
	b.ReportMetric(float64(max(b.N, hosts*perHost))/time.Since(start).Seconds(), "req/s")
}

// serveBody starts a fasthttp server on a loopback port that answers every request with body
// as image/jpeg, stopped when the benchmark ends; it returns its base URL.
func serveBody(b *testing.B, body []byte) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("image/jpeg")
		ctx.SetBody(body)
	}}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Shutdown() })
	return "http://" + ln.Addr().String()
}
