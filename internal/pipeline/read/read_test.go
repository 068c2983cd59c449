package read

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/pipeline/budget"
	"github.com/clipd/clipd/internal/pipeline/item"
)

// Every item ends once: a body on Out, or a failure with its reason.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok := write("ok.jpg", 100)
	empty := write("empty.jpg", 0)
	big := write("big.jpg", 2000)
	cases := map[string]string{
		ok:                             "",
		empty:                          "empty file",
		big:                            "too large",
		filepath.Join(dir, "gone.jpg"): "file not found",
		dir:                            "not a regular file",
	}
	in := make(chan item.Item)
	fails := make(chan item.Failure, len(cases))
	s := Start(context.Background(), in, fails, Options{Workers: 2, MaxBodyBytes: 1000})
	go func() {
		defer close(in)
		seq := int64(0)
		for p := range cases {
			in <- item.Item{Seq: seq, URL: p}
			seq++
		}
	}()
	var got []string
	for e := range s.Out() {
		if e.URL != ok || len(e.Body) != 100 {
			t.Errorf("body of %s: %d bytes", e.URL, len(e.Body))
		}
		got = append(got, e.URL)
		e.Release()
		e.Release() // twice is fine
	}
	close(fails)
	for f := range fails {
		if f.Stage != "read" || cases[f.URL] == "" || !strings.HasPrefix(f.Reason, cases[f.URL]) {
			t.Errorf("%s failed %s %q, want %q", f.URL, f.Stage, f.Reason, cases[f.URL])
		}
		got = append(got, f.URL)
	}
	sort.Strings(got)
	if len(got) != len(cases) {
		t.Fatalf("%d items came out of %d: %v", len(got), len(cases), got)
	}
	if st := s.Stats(); st.OK != 1 || st.Failed != 4 || st.Bytes != 100 {
		t.Errorf("stats %+v", st)
	}
}

// After ctx ends, items are drained unjudged: neither a body nor a failure.
func TestReadCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	in := make(chan item.Item, 3)
	for i := range 3 {
		in <- item.Item{Seq: int64(i), URL: "/nonexistent"}
	}
	close(in)
	fails := make(chan item.Failure, 3)
	s := Start(ctx, in, fails, Options{})
	for range s.Out() {
		t.Error("a body after cancellation")
	}
	if len(fails) != 0 {
		t.Errorf("%d failures judged after cancellation", len(fails))
	}
}

// With a budget, a file takes its size before it is read and gives it back when its body is
// released: the files alive at once stay within it, and one larger than all of it fails.
func TestReadWithinBudget(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for i := range 20 {
		p := filepath.Join(dir, string(rune('a'+i))+".jpg")
		if err := os.WriteFile(p, make([]byte, 1000), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	huge := filepath.Join(dir, "huge.jpg")
	if err := os.WriteFile(huge, make([]byte, 5000), 0o644); err != nil {
		t.Fatal(err)
	}
	b := budget.New("bodies", 3003) // three 1000-byte files (each takes size+1)
	in := make(chan item.Item)
	fails := make(chan item.Failure, 1)
	s := Start(context.Background(), in, fails, Options{Workers: 4, Output: 8, Budget: b})
	go func() {
		defer close(in)
		for i, p := range append(paths, huge) {
			in <- item.Item{Seq: int64(i), URL: p}
		}
	}()
	n := 0
	for e := range s.Out() {
		if len(e.Body) != 1000 {
			t.Errorf("%s: %d bytes", e.URL, len(e.Body))
		}
		n++
		e.Release()
	}
	close(fails)
	f := <-fails
	if n != 20 || f.URL != huge || !strings.HasPrefix(f.Reason, "too large for --memory") {
		t.Errorf("%d bodies, failure %+v", n, f)
	}
	if b.Held() != 0 || b.Peak() > b.Limit() || b.Peak() < 2002 {
		t.Errorf("held %d, peak %d of %d", b.Held(), b.Peak(), b.Limit())
	}
}
