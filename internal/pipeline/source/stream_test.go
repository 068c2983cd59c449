// stream_test.go: a Source over an input that sends a few rows and then nothing (standard
// input or a FIFO held open) stops when its context ends or it is closed, without waiting
// for the input.
package source

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestBlockedInputAbandoned(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "list.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(fifo, os.O_RDWR, 0) // the write end, held open
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.WriteString("http://h/1.jpg\nhttp://h/2.jpg\n"); err != nil {
		t.Fatal(err)
	}
	r, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer pw.Close()
	if _, err := pw.WriteString("http://h/1.jpg\nhttp://h/2.jpg\n"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		open func(ctx context.Context) (*Source, error)
	}{
		{"fifo", func(ctx context.Context) (*Source, error) { return Open(ctx, fifo, Options{}) }},
		{"reader", func(ctx context.Context) (*Source, error) { return New(ctx, r, "stdin", Options{}) }},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		s, err := c.open(ctx)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for i := 0; i < 2; i++ {
			select {
			case rec := <-s.Records():
				if rec.Item.URL == "" {
					t.Fatalf("%s: record %d: %+v", c.name, i, rec)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: the two rows sent did not come", c.name)
			}
		}
		cancel()
		closed := make(chan struct{})
		go func() { s.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: Close waits for an input that sends nothing", c.name)
		}
		for range s.Records() {
		}
	}
	// A FIFO that no writer opens: Open gives up when ctx ends.
	lonely := filepath.Join(t.TempDir(), "lonely.fifo")
	if err := syscall.Mkfifo(lonely, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := Open(ctx, lonely, Options{}); err == nil {
		t.Fatal("Open of a FIFO without a writer returned no error after ctx ended")
	}
}
