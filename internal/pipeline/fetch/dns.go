// dns.go: the resolver cache of a run. fasthttp's TCPDialer caches answers too, but every
// goroutine that misses looks the host up itself, nothing bounds how many lookups run at once,
// failures are neither retried nor remembered, and IP literals go to the resolver. Here one
// lookup per host runs at a time and the others wait for it, at most DNSConcurrency run at
// once, a temporary failure is retried once, and answers live DNSCacheDuration (failures
// less).

package fetch

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

const (
	// dnsRetryDelay is the pause before the one retry of a failed lookup: long enough for a
	// dropped UDP answer or a resolver restart, short next to a URL's Timeout.
	dnsRetryDelay = 500 * time.Millisecond
	// dnsFailureTTL bounds how long a failed lookup is remembered, so the other URLs of a dead
	// host, and the fetch's own retries, fail at once instead of asking again.
	dnsFailureTTL = 10 * time.Second
	// dnsSweepMin: below this many hosts the cache never looks for expired entries.
	dnsSweepMin = 1024
)

type dnsCache struct {
	resolver   fasthttp.Resolver
	ttl        time.Duration // answers
	failTTL    time.Duration // failures
	timeout    time.Duration // one attempt: waiting for a slot and the lookup itself
	retryDelay time.Duration
	slots      chan struct{} // one per lookup in progress

	mu      sync.Mutex
	hosts   map[string]*dnsEntry
	sweepAt int // sweep expired entries once the map holds this many
}

// dnsEntry is one host's answer, or the lookup that will give it.
type dnsEntry struct {
	done    chan struct{} // closed when addrs, err and expires are set
	addrs   []netip.Addr
	err     error
	expires time.Time
}

func newDNSCache(opt *Options) *dnsCache {
	res := opt.resolver
	if res == nil {
		res = net.DefaultResolver
	}
	return &dnsCache{
		resolver:   res,
		ttl:        opt.DNSCacheDuration,
		failTTL:    min(dnsFailureTTL, opt.DNSCacheDuration),
		timeout:    opt.ConnectTimeout,
		retryDelay: dnsRetryDelay,
		slots:      make(chan struct{}, opt.DNSConcurrency),
		hosts:      map[string]*dnsEntry{},
		sweepAt:    dnsSweepMin,
	}
}

// lookup returns host's addresses, IPv4-mapped ones unmapped; an IP literal is its own answer.
// Its errors are *net.DNSError. ctx bounds only this caller's wait: the lookup itself goes on
// for the others waiting on it and for the cache.
func (c *dnsCache) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}
	key := strings.ToLower(host)
	now := time.Now()
	c.mu.Lock()
	e := c.hosts[key]
	if e == nil || e.expired(now) {
		e = &dnsEntry{done: make(chan struct{})}
		c.hosts[key] = e
		c.sweepLocked(now)
		go c.resolve(host, e)
	}
	c.mu.Unlock()
	select {
	case <-e.done:
		return e.addrs, e.err
	case <-ctx.Done():
		return nil, &net.DNSError{Err: "lookup not answered in time", Name: host,
			IsTimeout: true, IsTemporary: true}
	}
}

func (e *dnsEntry) expired(now time.Time) bool {
	select {
	case <-e.done:
		return now.After(e.expires)
	default:
		return false // in flight
	}
}

// sweepLocked drops expired entries once the map has doubled since the last sweep, so a
// long run over millions of hosts keeps only the live ones at an amortized constant cost.
func (c *dnsCache) sweepLocked(now time.Time) {
	if len(c.hosts) < c.sweepAt {
		return
	}
	for k, e := range c.hosts {
		if e.expired(now) {
			delete(c.hosts, k)
		}
	}
	c.sweepAt = max(2*len(c.hosts), dnsSweepMin)
}

// resolve looks host up, once more after retryDelay if the first failure may pass, and
// publishes the answer in e.
func (c *dnsCache) resolve(host string, e *dnsEntry) {
	addrs, err := c.lookupOnce(host)
	if err != nil && !err.IsNotFound {
		time.Sleep(c.retryDelay)
		addrs, err = c.lookupOnce(host)
	}
	ttl := c.ttl
	if err != nil {
		e.err, ttl = err, c.failTTL
	}
	e.addrs, e.expires = addrs, time.Now().Add(ttl)
	close(e.done)
}

func (c *dnsCache) lookupOnce(host string) ([]netip.Addr, *net.DNSError) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	case <-ctx.Done():
		return nil, &net.DNSError{Err: "too many lookups waiting (DNSConcurrency)", Name: host,
			IsTimeout: true, IsTemporary: true}
	}
	answers, err := c.resolver.LookupIPAddr(ctx, host)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			return nil, dnsErr
		}
		// A resolver that is not net.Resolver: keep the reason "dns" for whatever it says.
		return nil, &net.DNSError{Err: err.Error(), Name: host, UnwrapErr: err,
			IsTimeout: errors.Is(err, context.DeadlineExceeded), IsTemporary: true}
	}
	addrs := make([]netip.Addr, 0, len(answers))
	for _, a := range answers {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			addrs = append(addrs, ip.Unmap().WithZone(a.Zone))
		}
	}
	if len(addrs) == 0 {
		return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
	}
	return addrs, nil
}
