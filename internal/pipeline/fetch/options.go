// options.go: the fetcher's knobs and their defaults. A zero Options is a working
// configuration; each zero field takes the default named beside it.

package fetch

import (
	"context"
	"net"
	"time"

	"github.com/clipd/clipd/internal/pipeline/budget"
	"github.com/valyala/fasthttp"
)

// DefaultUserAgent names clipd to the servers it fetches from. The CLI should put the build's
// version in Options.UserAgent; this constant carries the version the package was written at.
const DefaultUserAgent = "clipd/0.1.0 (+https://github.com/clipd/clipd)"

// Options configures a Fetcher. Zero fields take the defaults given in the comments.
type Options struct {
	Concurrency     int // workers, i.e. URLs in flight at once; default 256
	MaxConnsPerHost int // connections to one host (host:port); default 16. Workers past it wait for a free one.
	Retries         int // retries after the first attempt (timeouts, connection errors, 429, 5xx); default 3, negative: none
	MaxRedirects    int // redirects followed per URL; default 5, negative: none followed

	// Timeout bounds everything one URL may take: waiting for a connection, every attempt,
	// every redirect and every back-off. Default 60 s.
	Timeout        time.Duration
	ConnectTimeout time.Duration // TCP connect (and DNS lookup) of one attempt; default 10 s
	ReadTimeout    time.Duration // reading one whole response, headers and body; default 30 s
	WriteTimeout   time.Duration // writing one request (and the TLS handshake); default 10 s
	// MaxIdleConnDuration closes a kept-alive connection idle this long; default 4 s, below
	// the 5 s idle timeout of Apache's and Node's defaults, so a connection is dropped by us
	// before such a server drops it. A reused connection found closed anyway (a server with
	// a shorter timeout) is sent on again at once on a new one (Stats.StaleConnections),
	// not counted as a retry.
	MaxIdleConnDuration time.Duration

	BackoffBase   time.Duration // first back-off ceiling, doubled per retry, full jitter; default 250 ms
	BackoffMax    time.Duration // largest back-off ceiling; default 10 s
	RetryAfterMax time.Duration // cap on a server's Retry-After; default 30 s

	MaxBodyBytes     int64         // largest body, before and after gzip/deflate decoding; default 32 MiB
	UserAgent        string        // default DefaultUserAgent
	DNSCacheDuration time.Duration // how long a host's resolved addresses are reused; default 1 min
	DualStack        bool          // also dial IPv6 addresses (fasthttp dials IPv4 only by default)
	AcceptHTML       bool          // deliver HTML bodies instead of failing them "not an image (text/html)"
	OutputBuffer     int           // capacity of the output channel; default Concurrency

	// HostRate caps the requests per second to one host (a token bucket holding one second's
	// worth); 0: no cap. A URL waits for its token off the workers, within its Timeout.
	HostRate float64
	// HostMaxFailures gives a host up after that many connection-level failures in a row
	// (refused, DNS, timeout, reset, TLS) before any answer, with no answer between them (a
	// body that breaks off after its headers is an answer, and the URL's own failure): its remaining URLs
	// fail at once, "host given up (after N failures: <last reason>)". Default 8; negative:
	// never.
	HostMaxFailures int
	// IgnoreOptOut fetches images whose response headers opt out (X-Robots-Tag noai,
	// noimageai, noml, noindex, noimageindex or none, for all agents or for ours); by default
	// they fail "opted out (X-Robots-Tag: ...)" with their body unread.
	IgnoreOptOut bool
	// RobotsTxt obeys each host's robots.txt for our product token (else "*"): a disallowed
	// URL fails "disallowed by robots.txt". Off by default: it costs one more request per
	// host (LAION-size lists span millions of hosts, most with a handful of URLs), image
	// URLs mostly live on CDNs whose robots.txt says nothing about images, and the opt-out
	// that image owners use for data sets is X-Robots-Tag, which is honoured by default.
	RobotsTxt bool

	// DNSConcurrency bounds the host-name lookups in progress at once; default 32.
	DNSConcurrency int
	// AllowPrivateNetworks lets the fetcher connect to loopback, private, link-local and the
	// other reserved addresses listed in guard.go, which it refuses by default (failure
	// "private network"): for tests and local mirrors, never for untrusted URL lists.
	AllowPrivateNetworks bool

	// Budget, when set, bounds the bytes of the bodies alive at once: each body takes its
	// buffer's size (its Content-Length, or MaxBodyBytes when the length is unknown, trimmed
	// to what it used once read) before its first byte is read, waiting within its URL's
	// Timeout while that does not fit, and Result.Release gives it back. nil: each body is
	// only bounded by MaxBodyBytes.
	Budget *budget.Budget

	resolver fasthttp.Resolver // tests replace DNS with this; nil: the system resolver
	// dial replaces the TCP connect to an already resolved and checked "ip:port" in tests;
	// nil: a net.Dialer.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Defaults of Options' zero fields.
const (
	DefaultConcurrency     = 256
	DefaultMaxConnsPerHost = 16 // what a polite crawler opens to one server; browsers open 6
	DefaultRetries         = 3
	DefaultMaxRedirects    = 5
	DefaultTimeout         = 60 * time.Second
	DefaultConnectTimeout  = 10 * time.Second
	DefaultReadTimeout     = 30 * time.Second
	DefaultWriteTimeout    = 10 * time.Second
	DefaultMaxIdleConn     = 4 * time.Second
	DefaultBackoffBase     = 250 * time.Millisecond
	DefaultBackoffMax      = 10 * time.Second
	DefaultRetryAfterMax   = 30 * time.Second
	DefaultMaxBodyBytes    = 32 << 20
	DefaultDNSCache        = time.Minute
	DefaultDNSConcurrency  = 32
	DefaultHostMaxFailures = 8 // two URLs' worth of attempts with the default retries
)

// maxBodyLimit keeps MaxBodyBytes within what fasthttp's int limit and one slice can hold.
const maxBodyLimit = 1 << 30

// withDefaults returns o with every zero field replaced by its default and negative
// counts turned into zero.
func (o Options) withDefaults() Options {
	setInt := func(v *int, def int) {
		switch {
		case *v == 0:
			*v = def
		case *v < 0:
			*v = 0
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.MaxConnsPerHost <= 0 {
		o.MaxConnsPerHost = DefaultMaxConnsPerHost
	}
	setInt(&o.Retries, DefaultRetries)
	setInt(&o.HostMaxFailures, DefaultHostMaxFailures)
	if o.HostRate < 0 {
		o.HostRate = 0
	}
	setInt(&o.MaxRedirects, DefaultMaxRedirects)
	setDur(&o.Timeout, DefaultTimeout)
	setDur(&o.ConnectTimeout, DefaultConnectTimeout)
	setDur(&o.ReadTimeout, DefaultReadTimeout)
	setDur(&o.WriteTimeout, DefaultWriteTimeout)
	setDur(&o.MaxIdleConnDuration, DefaultMaxIdleConn)
	setDur(&o.BackoffBase, DefaultBackoffBase)
	setDur(&o.BackoffMax, DefaultBackoffMax)
	setDur(&o.RetryAfterMax, DefaultRetryAfterMax)
	setDur(&o.DNSCacheDuration, DefaultDNSCache)
	if o.DNSConcurrency <= 0 {
		o.DNSConcurrency = DefaultDNSConcurrency
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxBodyBytes > maxBodyLimit {
		o.MaxBodyBytes = maxBodyLimit
	}
	if o.UserAgent == "" {
		o.UserAgent = DefaultUserAgent
	}
	if o.OutputBuffer <= 0 {
		o.OutputBuffer = o.Concurrency
	}
	return o
}
