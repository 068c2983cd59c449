// conns.go: the dialer of a run. It caches DNS through fasthttp's TCPDialer, bounds each
// connect by ConnectTimeout, and remembers every open connection so that canceling the
// run's context closes them and in-flight requests end at once (fasthttp takes no context).

package fetch

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

var errRunCanceled = errors.New("fetch: run canceled")

type connTracker struct {
	ctx     context.Context
	dial    func(addr string, timeout time.Duration) (net.Conn, error)
	connect time.Duration

	mu     sync.Mutex
	open   map[*trackedConn]struct{}
	closed bool
}

func newConnTracker(ctx context.Context, f *Fetcher) *connTracker {
	dial := f.dialer.DialTimeout
	if f.opt.DualStack {
		dial = f.dialer.DialDualStackTimeout
	}
	return &connTracker{ctx: ctx, dial: dial, connect: f.opt.ConnectTimeout, open: map[*trackedConn]struct{}{}}
}

// Dial is fasthttp's DialTimeout hook. timeout is what is left of the request's deadline
// (0 when fasthttp has none); the connect never takes longer than ConnectTimeout.
func (t *connTracker) Dial(addr string, timeout time.Duration) (net.Conn, error) {
	if t.ctx.Err() != nil {
		return nil, errRunCanceled
	}
	if timeout <= 0 || timeout > t.connect {
		timeout = t.connect
	}
	type dialed struct {
		c   net.Conn
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		c, err := t.dial(addr, timeout)
		done <- dialed{c, err}
	}()
	var d dialed
	select {
	case d = <-done:
	case <-t.ctx.Done():
		// Leave the connect to finish in the background and close what it yields.
		go func() {
			if d := <-done; d.c != nil {
				d.c.Close()
			}
		}()
		return nil, errRunCanceled
	}
	if d.err != nil {
		return nil, d.err
	}
	tc := &trackedConn{Conn: d.c, t: t}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		d.c.Close()
		return nil, errRunCanceled
	}
	t.open[tc] = struct{}{}
	return tc, nil
}

// closeAll ends every connection of the run and refuses new ones.
func (t *connTracker) closeAll() {
	t.mu.Lock()
	t.closed = true
	conns := make([]*trackedConn, 0, len(t.open))
	for c := range t.open {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

type trackedConn struct {
	net.Conn
	t    *connTracker
	once sync.Once
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.t.mu.Lock()
		delete(c.t.open, c)
		c.t.mu.Unlock()
	})
	return err
}
