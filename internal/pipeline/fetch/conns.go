// conns.go: the dialer of a run. It resolves through the Fetcher's DNS cache (dns.go), refuses
// private-network addresses (guard.go), bounds each connect by ConnectTimeout, and remembers
// every open connection so that canceling the run's context closes them and in-flight
// requests end at once (fasthttp takes no context).

package fetch

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

var errRunCanceled = errors.New("fetch: run canceled")

type connTracker struct {
	ctx          context.Context
	dns          *dnsCache
	dial         func(ctx context.Context, network, addr string) (net.Conn, error)
	connect      time.Duration
	dualStack    bool
	allowPrivate bool

	mu     sync.Mutex
	open   map[*trackedConn]struct{}
	closed bool

	// stale holds the local addresses of reused connections that failed before any byte of
	// an answer: the server had closed them while they sat idle in the pool. The worker
	// whose request failed takes its entry (takeStale) and sends the request again at once.
	staleMu sync.Mutex
	stale   map[string]struct{}
}

func newConnTracker(ctx context.Context, f *Fetcher) *connTracker {
	dial := f.opt.dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	return &connTracker{
		ctx:          ctx,
		dns:          f.dns,
		dial:         dial,
		connect:      f.opt.ConnectTimeout,
		dualStack:    f.opt.DualStack,
		allowPrivate: f.opt.AllowPrivateNetworks,
		open:         map[*trackedConn]struct{}{},
		stale:        map[string]struct{}{},
	}
}

// Dial is fasthttp's DialTimeout hook, so every connection of the run, for a first request
// or a redirect, comes through here. timeout is what is left of the request's deadline (0
// when fasthttp has none); the lookup and connect never take longer than ConnectTimeout.
func (t *connTracker) Dial(addr string, timeout time.Duration) (net.Conn, error) {
	if t.ctx.Err() != nil {
		return nil, errRunCanceled
	}
	if timeout <= 0 || timeout > t.connect {
		timeout = t.connect
	}
	ctx, cancel := context.WithTimeout(t.ctx, timeout)
	defer cancel()
	c, err := t.dialChecked(ctx, addr)
	if t.ctx.Err() != nil {
		if c != nil {
			c.Close()
		}
		return nil, errRunCanceled
	}
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, t: t}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return nil, errRunCanceled
	}
	t.open[tc] = struct{}{}
	return tc, nil
}

// dialChecked resolves addr's host, drops the addresses the guard refuses and those of a
// family not dialed, and connects to the others in turn from a random one (spreading a
// host's connections over its addresses) until one answers.
func (t *connTracker) dialChecked(ctx context.Context, addr string) (net.Conn, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return nil, &net.AddrError{Err: "invalid port", Addr: addr}
	}
	ips, err := t.dns.lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	var (
		usable  = make([]netip.Addr, 0, len(ips))
		refused error
	)
	for _, ip := range ips {
		if !t.allowPrivate {
			if block := reservedBlockOf(ip); block != "" {
				refused = &privateNetworkError{host: host, ip: ip, block: block}
				continue
			}
		}
		if ip.Is4() || t.dualStack {
			usable = append(usable, ip)
		}
	}
	if len(usable) == 0 {
		if refused != nil {
			return nil, refused
		}
		return nil, &net.DNSError{Err: "no IPv4 address (IPv6 needs DualStack)", Name: host, IsNotFound: true}
	}
	first := rand.N(len(usable))
	for i := range usable {
		ip := usable[(first+i)%len(usable)]
		var c net.Conn
		c, err = t.dial(ctx, "tcp", netip.AddrPortFrom(ip, uint16(port)).String())
		if err == nil || ctx.Err() != nil {
			return c, err
		}
	}
	return nil, err
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

// markStale records that the connection at local address addr was found closed by its
// server when reused. Entries are taken by the failed request's worker; at most maxStale are
// kept, so entries nobody takes cannot pile up.
func (t *connTracker) markStale(addr string) {
	const maxStale = 4096
	t.staleMu.Lock()
	defer t.staleMu.Unlock()
	if len(t.stale) >= maxStale {
		clear(t.stale)
	}
	t.stale[addr] = struct{}{}
}

// takeStale reports whether the request answered on local address addr failed on a stale
// reused connection, and forgets the address.
func (t *connTracker) takeStale(addr net.Addr) bool {
	if addr == nil {
		return false
	}
	key := addr.String()
	t.staleMu.Lock()
	defer t.staleMu.Unlock()
	_, ok := t.stale[key]
	delete(t.stale, key)
	return ok
}

// trackedConn is one connection of the run. It notices a stale keep-alive connection: one
// that served an answer before (so fasthttp reused it from its pool) and now fails, on the
// write of a new request or on the read before any byte of the answer. That is the server
// having closed it while idle, not a fault of the request's URL.
//
// Reads and writes of one connection come from one goroutine at a time (fasthttp hands a
// pooled connection to one request at a time), so the fields need no lock.
type trackedConn struct {
	net.Conn
	t    *connTracker
	once sync.Once

	answered      bool  // bytes were read before the current request was written: a reused connection
	readSinceSend int64 // bytes of the current answer read so far
}

// Write sends (part of) a request. The first write after an answer starts a new request on
// a reused connection.
func (c *trackedConn) Write(b []byte) (int, error) {
	if c.readSinceSend > 0 {
		c.answered, c.readSinceSend = true, 0
	}
	n, err := c.Conn.Write(b)
	if err != nil && c.answered && c.readSinceSend == 0 && !isTimeout(err) {
		c.t.markStale(c.LocalAddr().String())
	}
	return n, err
}

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.readSinceSend += int64(n)
	if err != nil && n == 0 && c.answered && c.readSinceSend == 0 && !isTimeout(err) {
		c.t.markStale(c.LocalAddr().String())
	}
	return n, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
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
