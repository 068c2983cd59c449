// classify_test.go: the pure helpers: Retry-After parsing, back-off bounds, redirect
// resolution, error naming, MD5 parsing, HTML sniffing, option defaults.
package fetch

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1", time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"0", 0, true},
		{"Sat, 01 Mar 2025 12:00:05 GMT", 5 * time.Second, true},
		{"Sat, 01 Mar 2025 11:00:00 GMT", 0, true}, // in the past: retry now
		{"", 0, false},
		{"-3", 0, false},
		{"soon", 0, false},
	} {
		got, ok := retryAfter([]byte(tc.in), now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("retryAfter(%q) = %v %v, want %v %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestBackoffFullJitterBounds(t *testing.T) {
	for n := 1; n <= 8; n++ {
		ceiling := min(100*time.Millisecond<<(n-1), time.Second)
		var maxSeen time.Duration
		for range 200 {
			d := backoff(n, 100*time.Millisecond, time.Second)
			if d < 0 || d >= ceiling {
				t.Fatalf("backoff(%d) = %v outside [0, %v)", n, d, ceiling)
			}
			maxSeen = max(maxSeen, d)
		}
		if maxSeen < ceiling/2 { // 200 uniform draws all in the lower half: p = 2^-200
			t.Fatalf("backoff(%d) never above %v: not spread over [0, %v)", n, maxSeen, ceiling)
		}
	}
}

func TestResolveRedirect(t *testing.T) {
	from, _ := url.Parse("https://img.example/a/b/c.jpg?x=1")
	for loc, want := range map[string]string{
		"d.jpg":                      "https://img.example/a/b/d.jpg",
		"../e.jpg":                   "https://img.example/a/e.jpg",
		"/f.jpg#frag":                "https://img.example/f.jpg",
		"//cdn.example/g.jpg":        "https://cdn.example/g.jpg",
		"http://other.example/h.jpg": "http://other.example/h.jpg",
		"ftp://other.example/h.jpg":  "",
		"mailto:x@example.com":       "",
		"":                           "",
		"http://[::1":                "",
	} {
		next, ok := resolveRedirect(from, []byte(loc))
		got := ""
		if ok {
			got = next.String()
		}
		if got != want {
			t.Errorf("Location %q -> %q, want %q", loc, got, want)
		}
	}
}

func TestClassifyError(t *testing.T) {
	for _, tc := range []struct {
		err    error
		reason string
		retry  bool
	}{
		{fasthttp.ErrBodyTooLarge, ReasonTooLarge, false},
		{fasthttp.ErrTimeout, ReasonTimeout, true},
		{fmt.Errorf("dial: %w", fasthttp.ErrDialTimeout), ReasonTimeout, true},
		{io.ErrUnexpectedEOF, ReasonTruncated, true},
		{fasthttp.ErrConnectionClosed, ReasonConnClosed, true},
		{&net.DNSError{Err: "no such host", IsNotFound: true}, ReasonDNS, false},
		{&net.DNSError{Err: "server misbehaving", IsTemporary: true}, ReasonDNS, true},
		{errors.New("something odd"), ReasonConnError, true},
	} {
		reason, retry := classifyError(tc.err)
		if reason != tc.reason || retry != tc.retry {
			t.Errorf("classifyError(%v) = %q %v, want %q %v", tc.err, reason, retry, tc.reason, tc.retry)
		}
	}
}

func TestExpectedMD5(t *testing.T) {
	// Open Images' OriginalMD5 is base64 of the 16 digest bytes.
	if b, ok := expectedMD5("x0Tb5y6i8G6xDx1q8r3ZNw=="); !ok || len(b) != 16 {
		t.Fatalf("base64 MD5 not accepted")
	}
	if b, ok := expectedMD5("c744dbe72ea2f06eb10f1d6af2bdd937"); !ok || b[0] != 0xc7 {
		t.Fatalf("hex MD5 not accepted")
	}
	for _, s := range []string{"", "abc", "not base64 at all!", "AAAA"} {
		if _, ok := expectedMD5(s); ok {
			t.Fatalf("%q accepted as an MD5", s)
		}
	}
}

func TestLooksLikeHTML(t *testing.T) {
	for _, tc := range []struct {
		ct, body string
		want     bool
	}{
		{"text/html", "<p>gone</p>", true},
		{"TEXT/HTML; charset=utf-8", "x", true},
		{"image/jpeg", "\xef\xbb\xbf <!DOCTYPE HTML><html>", true},
		{"", "<html><body>", true},
		{"text/html", "\xFF\xD8\xFF\xE0 jpeg", false},
		{"text/html", "\x89PNG\r\n\x1a\n...", false},
		{"image/png", "\x89PNG\r\n\x1a\n...", false},
		{"application/octet-stream", "<svg>", false},
	} {
		if got := looksLikeHTML([]byte(tc.ct), []byte(tc.body)); got != tc.want {
			t.Errorf("looksLikeHTML(%q, %q) = %v", tc.ct, tc.body, got)
		}
	}
}

func TestOptionDefaults(t *testing.T) {
	o := New(Options{}).Options()
	if o.Concurrency != 256 || o.MaxConnsPerHost != 16 || o.Retries != 3 || o.MaxRedirects != 5 ||
		o.MaxBodyBytes != 32<<20 || o.UserAgent != DefaultUserAgent || o.OutputBuffer != 256 ||
		o.Timeout != time.Minute || o.RetryAfterMax != 30*time.Second {
		t.Fatalf("defaults %+v", o)
	}
	o = New(Options{Retries: -1, MaxRedirects: -1}).Options()
	if o.Retries != 0 || o.MaxRedirects != 0 {
		t.Fatalf("negative counts give %d retries, %d redirects; want 0, 0", o.Retries, o.MaxRedirects)
	}
}
