// memory_test.go: a multi-million-row input streams in flat memory — the live heap, sampled
// while the rows pass, stays bounded however many rows there are (no timing involved).

package source

import (
	"fmt"
	"io"
	"runtime"
	"strconv"
	"testing"
)

// genList is an io.Reader that makes a URL list of n lines on the fly (never held whole), or
// with csv set, Open Images-shaped rows under a header.
type genList struct {
	n, i int
	csv  bool
	buf  []byte
}

func (g *genList) Read(p []byte) (int, error) {
	for len(g.buf) < len(p) && g.i < g.n {
		if g.csv && g.i == 0 && len(g.buf) == 0 {
			g.buf = append(g.buf, oiHeader...)
			g.buf = append(g.buf, '\n')
		}
		if g.csv {
			g.buf = fmt.Appendf(g.buf, "%016x,train,https://farm1.staticflickr.com/%d/%d_o.jpg,https://www.flickr.com/photos/u/%d,https://creativecommons.org/licenses/by/2.0/,https://www.flickr.com/people/u/,Someone,\"A title, with a comma\",%d,KFukvivpCM5QXl5SqKe41g==,https://c1.staticflickr.com/1/%d_z.jpg,0\n",
				uint64(g.i)*0x9e3779b97f4a7c15, g.i%1000, g.i, g.i, 100000+g.i, g.i)
		} else {
			g.buf = append(g.buf, "https://images.example.com/"...)
			g.buf = strconv.AppendInt(g.buf, int64(g.i), 10)
			g.buf = append(g.buf, ".jpg\n"...)
		}
		g.i++
	}
	if len(g.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, g.buf)
	g.buf = g.buf[:copy(g.buf, g.buf[n:])]
	return n, nil
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func TestMemoryFlat(t *testing.T) {
	rows := 2_000_000
	if raceEnabled || testing.Short() {
		rows = 300_000 // still far more than the bound if held whole
	}
	for _, csv := range []bool{false, true} {
		n := rows
		if csv {
			n = rows / 4 // ~300-byte rows: 500k of them is ~150 MB of CSV
		}
		t.Run(fmt.Sprintf("csv=%v", csv), func(t *testing.T) {
			base := liveHeap()
			s, err := New(testContext(t), &genList{n: n, csv: csv}, "gen.csv", Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var count int
			var peak uint64
			for r := range s.Records() {
				if r.Failure != nil {
					t.Fatalf("failure %+v", r.Failure)
				}
				if count++; count%(n/20) == 0 {
					peak = max(peak, liveHeap())
				}
			}
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			if count != n {
				t.Fatalf("%d records, want %d", count, n)
			}
			// Held whole, even the smallest case would be tens of MB of strings.
			const bound = 16 << 20
			grew := int64(peak) - int64(base)
			t.Logf("%d rows: live heap grew by at most %.1f MB", n, float64(grew)/(1<<20))
			if grew > bound {
				t.Fatalf("live heap grew by %d bytes over %d rows; want under %d (the input must stream)", grew, n, bound)
			}
		})
	}
}

// The measurement can see a held input: with a channel as large as the input and a consumer
// that waits for the whole input to be read, the live heap does grow past the bound.
func TestMemoryMeasurementSeesHeldInput(t *testing.T) {
	const n = 300_000
	base := liveHeap()
	s, err := New(testContext(t), &genList{n: n}, "gen.txt", Options{Buffer: n})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	<-s.done // everything read, all of it waiting in the channel
	grew := int64(liveHeap()) - int64(base)
	drainErr(s)
	if grew < 16<<20 {
		t.Fatalf("holding %d rows grew the live heap by only %d bytes; the bound in TestMemoryFlat would not catch it", n, grew)
	}
}
