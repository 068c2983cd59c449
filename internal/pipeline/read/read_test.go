package read

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

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
