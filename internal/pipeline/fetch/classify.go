// classify.go: turns fasthttp's errors and HTTP answers into the short failure reasons and
// the retry decisions, and computes how long to wait before a retry.

package fetch

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// classifyError names a failed attempt and says whether another attempt may succeed.
func classifyError(err error) (reason string, retry bool) {
	var (
		dnsErr    *net.DNSError
		netErr    net.Error
		brokenErr fasthttp.ErrBrokenChunk
	)
	switch {
	case errors.Is(err, errPrivateNetwork):
		return ReasonPrivateNetwork, false
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return ReasonTooLarge, false
	case errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &brokenErr):
		return ReasonTruncated, true
	case errors.As(err, &dnsErr):
		return ReasonDNS, !dnsErr.IsNotFound
	case strings.Contains(err.Error(), "couldn't find dns entries"):
		// fasthttp's unexported error for a name with no IPv4 address.
		return ReasonDNS, false
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReasonConnRefused, true
	case isTLSError(err):
		return ReasonTLS, false
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, fasthttp.ErrTLSHandshakeTimeout),
		errors.As(err, &netErr) && netErr.Timeout():
		return ReasonTimeout, true
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		// Only when the connection wait ends before the URL's deadline; treated as a timeout.
		return ReasonTimeout, true
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF):
		return ReasonConnClosed, true
	default:
		return ReasonConnError, true
	}
}

func isTLSError(err error) bool {
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verification     *tls.CertificateVerificationError
		recordHeader     tls.RecordHeaderError
		alert            tls.AlertError
	)
	return errors.As(err, &unknownAuthority) || errors.As(err, &hostname) ||
		errors.As(err, &invalid) || errors.As(err, &verification) ||
		errors.As(err, &recordHeader) || errors.As(err, &alert)
}

// retryableStatus: 429 and every 5xx may succeed later; other statuses will not.
func retryableStatus(status int) bool {
	return status == fasthttp.StatusTooManyRequests || (status >= 500 && status <= 599)
}

func isRedirect(status int) bool {
	switch status {
	case fasthttp.StatusMovedPermanently, fasthttp.StatusFound, fasthttp.StatusSeeOther,
		fasthttp.StatusTemporaryRedirect, fasthttp.StatusPermanentRedirect:
		return true
	}
	return false
}

// checkURL accepts absolute http(s) URLs with a host and returns them parsed.
func checkURL(raw string) (*url.URL, bool) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, false
	}
	return u, true
}

// resolveRedirect resolves a Location header against the URL that answered with it.
func resolveRedirect(from *url.URL, location []byte) (*url.URL, bool) {
	loc := strings.TrimSpace(string(location))
	if loc == "" {
		return nil, false
	}
	ref, err := url.Parse(loc)
	if err != nil {
		return nil, false
	}
	next := from.ResolveReference(ref)
	next.Fragment, next.RawFragment = "", ""
	if (next.Scheme != "http" && next.Scheme != "https") || next.Host == "" {
		return nil, false
	}
	return next, true
}

// retryAfter reads a Retry-After header (delay seconds or an HTTP-date) as a wait from now.
// ok is false when there is no usable header.
func retryAfter(value []byte, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(string(value))
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(365*24*time.Hour/time.Second) {
			secs = int64(365 * 24 * time.Hour / time.Second)
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// backoff is the "full jitter" wait before retry number n (1-based): uniform in
// [0, min(max, base*2^(n-1))).
func backoff(n int, base, ceiling time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}
