// stream.go: inputs that may block forever (standard input, a FIFO that a writer holds open):
// their reads run in a goroutine of their own, so that cancelling the Source abandons a read
// that waits for bytes that may never come, and a FIFO is opened without waiting for a writer
// past cancellation.

package source

import (
	"context"
	"io"
	"os"
)

// streamChunk is what one read of the underlying input returned.
type streamChunk struct {
	b   []byte
	err error
}

// abandonable reads r in a goroutine, a chunk at a time, one chunk ahead. Read returns ctx's
// error as soon as ctx ends, even while the goroutine is blocked in r.Read; that goroutine is
// then left to end when r sends or closes (or with the process). Close closes r.
type abandonable struct {
	ctx    context.Context
	r      io.ReadCloser
	chunks chan streamChunk
	cur    []byte
	err    error
	began  bool
}

const streamChunkBytes = 64 << 10

func newAbandonable(ctx context.Context, r io.ReadCloser) *abandonable {
	return &abandonable{ctx: ctx, r: r, chunks: make(chan streamChunk, 1)}
}

func (a *abandonable) pump() {
	for {
		b := make([]byte, streamChunkBytes)
		n, err := a.r.Read(b)
		select {
		case a.chunks <- streamChunk{b[:n], err}:
		case <-a.ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

func (a *abandonable) Read(p []byte) (int, error) {
	if !a.began {
		a.began = true
		go a.pump()
	}
	for len(a.cur) == 0 {
		if a.err != nil {
			return 0, a.err
		}
		select {
		case c := <-a.chunks:
			a.cur, a.err = c.b, c.err
		case <-a.ctx.Done():
			a.err = a.ctx.Err()
			return 0, a.err
		}
	}
	n := copy(p, a.cur)
	a.cur = a.cur[n:]
	return n, nil
}

func (a *abandonable) Close() error { return a.r.Close() }

// isStream reports whether path is a FIFO, a socket or a character device: an input whose
// reads may block for ever and whose content cannot be fingerprinted ahead of reading.
func isStream(st os.FileInfo) bool {
	return st.Mode()&(os.ModeNamedPipe|os.ModeSocket|os.ModeCharDevice) != 0
}

// openStream opens a FIFO (or device) for reading; opening a FIFO waits for a writer, so it
// is done in a goroutine and given up when ctx ends (the file, once it opens, is closed).
func openStream(ctx context.Context, path string) (*os.File, error) {
	type opened struct {
		f   *os.File
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		f, err := os.Open(path)
		ch <- opened{f, err}
	}()
	select {
	case o := <-ch:
		return o.f, o.err
	case <-ctx.Done():
		go func() {
			if o := <-ch; o.f != nil {
				o.f.Close()
			}
		}()
		return nil, ctx.Err()
	}
}
