// stats.go: the failure reasons a fetch can end with and the atomic counters behind
// Fetcher.Stats, which the progress display reads while the run goes on.

package fetch

import (
	"strconv"
	"strings"
	"sync/atomic"
)

// The reasons a fetch fails with, besides "http <status>" (see HTTPReason).
const (
	ReasonTimeout          = "timeout"            // an attempt or the whole URL ran out of time
	ReasonConnRefused      = "connection refused" // nothing listens on the port
	ReasonConnClosed       = "connection closed"  // the server closed or reset the connection before answering
	ReasonConnError        = "connection error"   // any other network or protocol error
	ReasonDNS              = "dns"                // the host name did not resolve
	ReasonTLS              = "tls"                // certificate or handshake failure
	ReasonTooLarge         = "too large"          // body (declared, streamed or decoded) over MaxBodyBytes
	ReasonTruncated        = "truncated"          // the server closed before the declared Content-Length
	ReasonRedirectLoop     = "redirect loop"      // a redirect went back to a URL already visited
	ReasonTooManyRedirects = "too many redirects" // more than MaxRedirects hops
	ReasonBadRedirect      = "bad redirect"       // missing or unparsable Location, or a scheme other than http(s)
	ReasonBadURL           = "bad url"            // the item's URL is not an absolute http(s) URL
	ReasonBadEncoding      = "bad encoding"       // corrupt gzip/deflate data or an unsupported Content-Encoding
	ReasonEmptyBody        = "empty body"         // a 2xx answer with no bytes
	ReasonNotImage         = "not an image (text/html)"
	ReasonMD5Mismatch      = "md5 mismatch" // body differs from Item.MD5: for Open Images originals, a placeholder
	ReasonSizeMismatch     = "size mismatch"
	ReasonCanceled         = "canceled" // the run's context ended first; the item was not judged, so do not record it as failed

	// ReasonHostGivenUp begins the failure of every URL of a host that failed
	// HostMaxFailures times in a row: "host given up (after 8 failures: connection refused)".
	// Stats count these under ReasonHostGivenUp alone.
	ReasonHostGivenUp = "host given up"
	// ReasonOptedOut begins "opted out (X-Robots-Tag: noai)": the response's headers opt
	// the image out (optout.go); its body was not read. Counted under ReasonOptedOut alone.
	ReasonOptedOut = "opted out"
	// ReasonRobotsDisallowed: Options.RobotsTxt is set and the host's robots.txt disallows
	// the URL for our product token.
	ReasonRobotsDisallowed = "disallowed by robots.txt"
	// ReasonRobotsUnreachable begins "robots.txt unreachable (http 503)": with RobotsTxt set,
	// a host whose robots.txt answers 5xx or 429 or not at all is not crawled (RFC 9309).
	ReasonRobotsUnreachable = "robots.txt unreachable"
)

var reasons = []string{
	ReasonTimeout, ReasonConnRefused, ReasonConnClosed, ReasonConnError, ReasonDNS, ReasonTLS,
	ReasonTooLarge, ReasonTruncated, ReasonRedirectLoop, ReasonTooManyRedirects, ReasonBadRedirect,
	ReasonBadURL, ReasonBadEncoding, ReasonEmptyBody, ReasonNotImage, ReasonMD5Mismatch,
	ReasonSizeMismatch, ReasonCanceled, ReasonPrivateNetwork, ReasonHostGivenUp, ReasonOptedOut,
	ReasonRobotsDisallowed, ReasonRobotsUnreachable,
}

// detailedReasons are reasons that carry details after them; Stats count them by the prefix.
var detailedReasons = []string{ReasonHostGivenUp, ReasonOptedOut, ReasonRobotsUnreachable}

var reasonIndex = func() map[string]int {
	m := make(map[string]int, len(reasons))
	for i, r := range reasons {
		m[r] = i
	}
	return m
}()

// httpReasons holds "http 100" .. "http 599" so failures do not format strings.
var httpReasons = func() []string {
	s := make([]string, 600)
	for code := 100; code < 600; code++ {
		s[code] = "http " + strconv.Itoa(code)
	}
	return s
}()

// HTTPReason is the failure reason for an HTTP status: "http 404".
func HTTPReason(status int) string {
	if status >= 100 && status < 600 {
		return httpReasons[status]
	}
	return "http " + strconv.Itoa(status)
}

// Stats is a snapshot of a Fetcher's counters, summed over all its runs.
type Stats struct {
	Started   int64 // items taken from the input
	InFlight  int64 // items being fetched now
	OK        int64 // items that ended as bodies
	Failed    int64 // items that ended as failures, "canceled" included
	Retries   int64 // attempts after an item's first
	Redirects int64 // redirects followed
	// StaleConnections counts requests sent again at once on a new connection because a
	// reused keep-alive connection turned out closed before any answer byte (not retries).
	StaleConnections int64
	BytesReceived    int64            // body bytes read off the network over all attempts, before decoding
	BytesOK          int64            // body bytes delivered in successful results, after decoding
	Reasons          map[string]int64 // failures by reason; only reasons seen so far
	RetryReasons     map[string]int64 // retries by the reason of the attempt that was retried
}

type counters struct {
	started, inFlight, ok, failed, retries, redirects atomic.Int64
	staleConns                                        atomic.Int64
	bytesReceived, bytesOK                            atomic.Int64
	failures                                          reasonCounts // why items failed
	retried                                           reasonCounts // why attempts were retried
}

// reasonCounts counts by reason without a lock or a map on the hot path.
type reasonCounts struct {
	byReason [32]atomic.Int64 // indexed like reasons
	byStatus [600]atomic.Int64
	other    atomic.Int64 // statuses outside 100..599
}

func (c *reasonCounts) add(reason string, status int) {
	if i, ok := reasonIndex[reason]; ok {
		c.byReason[i].Add(1)
		return
	}
	for _, prefix := range detailedReasons {
		if strings.HasPrefix(reason, prefix) {
			c.byReason[reasonIndex[prefix]].Add(1)
			return
		}
	}
	if status >= 100 && status < 600 {
		c.byStatus[status].Add(1)
		return
	}
	c.other.Add(1)
}

func (c *reasonCounts) snapshot() map[string]int64 {
	m := map[string]int64{}
	for i, r := range reasons {
		if n := c.byReason[i].Load(); n > 0 {
			m[r] = n
		}
	}
	for code := range c.byStatus {
		if n := c.byStatus[code].Load(); n > 0 {
			m[HTTPReason(code)] = n
		}
	}
	if n := c.other.Load(); n > 0 {
		m["http other"] = n
	}
	return m
}

func (c *counters) fail(reason string, status int) {
	c.failed.Add(1)
	c.failures.add(reason, status)
}

func (c *counters) retry(reason string, status int) {
	c.retries.Add(1)
	c.retried.add(reason, status)
}

func (c *counters) snapshot() Stats {
	return Stats{
		Started:          c.started.Load(),
		InFlight:         c.inFlight.Load(),
		OK:               c.ok.Load(),
		Failed:           c.failed.Load(),
		Retries:          c.retries.Load(),
		Redirects:        c.redirects.Load(),
		StaleConnections: c.staleConns.Load(),
		BytesReceived:    c.bytesReceived.Load(),
		BytesOK:          c.bytesOK.Load(),
		Reasons:          c.failures.snapshot(),
		RetryReasons:     c.retried.snapshot(),
	}
}
