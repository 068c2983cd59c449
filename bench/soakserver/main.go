// Command soakserver serves the soak benchmark (bench/soak.sh) on 127.0.0.1: /img/N.jpg is
// one of the JPEGs of -dir, or, for a fixed pseudo-random FAULT% of the N (a hash of N and
// -seed, so the checker can tell which), one of five faults: the connection reset before any
// answer, a 404, a slow answer (-slow, then the image: it must still embed), a body cut
// short of its Content-Length, or a corrupt image. It prints its address, then serves until
// killed. `soakserver -list N` prints the fault of each of 0..N-1 instead, one a line ("ok",
// "reset", "404", "slow", "truncated" or "corrupt"), for the checker.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"hash/fnv"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

var faults = []string{"reset", "404", "slow", "truncated", "corrupt"}

// faultOf is the fault of image n: "ok" for all but pct% of them.
func faultOf(n int64, seed uint64, pct float64) string {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d", seed, n)
	v := h.Sum64()
	if float64(v%1_000_000) >= pct*10_000 {
		return "ok"
	}
	return faults[(v/1_000_000)%uint64(len(faults))]
}

func main() {
	dir := flag.String("dir", ".", "directory of .jpg files to serve")
	addr := flag.String("addr", "127.0.0.1:0", "listen address (loopback only)")
	seed := flag.Uint64("seed", 1, "fault assignment seed")
	pct := flag.Float64("faults", 5, "percent of the images that fail in one of the five ways")
	slow := flag.Duration("slow", 2*time.Second, "delay of a slow answer")
	list := flag.Int64("list", -1, "print the faults of images 0..N-1 and exit")
	flag.Parse()
	if *list >= 0 {
		w := bufio.NewWriter(os.Stdout)
		for n := range *list {
			fmt.Fprintln(w, faultOf(n, *seed, *pct))
		}
		w.Flush()
		return
	}
	names, _ := filepath.Glob(filepath.Join(*dir, "*.jpg"))
	sort.Strings(names)
	var files [][]byte
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			log.Fatal(err)
		}
		files = append(files, b)
	}
	if len(files) == 0 {
		log.Fatalf("no .jpg in %s", *dir)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ln.Addr().String())
	os.Stdout.Sync()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/img/"), ".jpg"), 10, 64)
		if err != nil || n < 0 {
			http.NotFound(w, r)
			return
		}
		body := files[n%int64(len(files))]
		switch faultOf(n, *seed, *pct) {
		case "reset":
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				if tc, ok := conn.(*net.TCPConn); ok {
					tc.SetLinger(0) // RST, not FIN
				}
				conn.Close()
			}
			return
		case "404":
			http.NotFound(w, r)
			return
		case "slow":
			time.Sleep(*slow)
		case "truncated":
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Header().Set("Content-Type", "image/jpeg")
			w.Write(body[:len(body)/2])
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		case "corrupt":
			bad := append([]byte(nil), body...)
			for i := 200; i < len(bad)-2; i += 7 {
				bad[i] = 0xFF // marker bytes everywhere: libjpeg fails, not warns
			}
			bad = bad[:min(len(bad), 600)] // and no end: "truncated" or "corrupt", never decodes
			body = bad
		}
		w.Header().Set("Content-Type", "image/jpeg")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	log.Fatal(http.Serve(ln, h))
}
