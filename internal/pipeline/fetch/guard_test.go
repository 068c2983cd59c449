// guard_test.go: the private-network guard refuses loopback IP literals, names that resolve
// to them (at the first lookup or after a rebinding) and redirects into them, before any
// request is sent; AllowPrivateNetworks lets them through.
package fetch

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/pipeline/item"
)

func TestReservedBlocks(t *testing.T) {
	refused := []string{
		"0.0.0.0", "0.1.2.3", "10.1.2.3", "100.64.0.1", "100.127.255.255", "127.0.0.1",
		"127.255.0.9", "169.254.169.254", "172.16.0.1", "172.31.255.255", "192.0.0.8",
		"192.0.2.1", "192.168.1.1", "198.18.0.1", "198.51.100.7", "203.0.113.9", "224.0.0.1",
		"239.255.255.250", "240.0.0.1", "255.255.255.255",
		"::", "::1", "::127.0.0.1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
		"64:ff9b::a00:1", "64:ff9b:1::1", "100::1", "2001::1", "2001:db8::1", "2002:7f00:1::1",
		"2002:a9fe:a9fe::1", "3fff::1", "5f00::1", "fc00::1", "fd12:3456::1", "fe80::1",
		"fe80::1%eth0", "fec0::1", "ff02::1",
	}
	public := []string{
		"1.1.1.1", "8.8.8.8", publicTestIP, "100.63.255.255", "100.128.0.1", "172.15.255.255",
		"172.32.0.1", "192.169.0.1", "223.255.255.255",
		"::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1", "2001:4860:4860::8888",
		"2606:4700::1111", "2a00:1450:4001::1",
	}
	for _, s := range refused {
		if block := reservedBlockOf(netip.MustParseAddr(s)); block == "" {
			t.Errorf("%s passes the guard, want it refused", s)
		}
	}
	for _, s := range public {
		if block := reservedBlockOf(netip.MustParseAddr(s)); block != "" {
			t.Errorf("%s refused as %s, want it public", s, block)
		}
	}
	if reservedBlockOf(netip.Addr{}) == "" {
		t.Errorf("the zero address passes the guard")
	}
}

// TestPrivateNetworkClassified: a refusal fails the URL at once with ReasonPrivateNetwork.
func TestPrivateNetworkClassified(t *testing.T) {
	err := &privateNetworkError{host: "x.test", ip: netip.MustParseAddr("10.0.0.1"), block: "10/8"}
	if reason, retry := classifyError(err); reason != ReasonPrivateNetwork || retry {
		t.Fatalf("classifyError = %q, retry %v; want %q, no retry", reason, retry, ReasonPrivateNetwork)
	}
}

func TestPrivateNetworkRefused(t *testing.T) {
	img := fakeImage(300, 21)
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write(img) })
	port := portOf(t, s.URL)
	res := &scriptedResolver{answers: map[string][]string{"inside.test": {"127.0.0.1"}}}
	opt := testOptions()
	opt.AllowPrivateNetworks = false
	opt.resolver = res

	wantRefused(t, fetchURL(t, opt, s.URL+"/literal"))
	wantRefused(t, fetchURL(t, opt, "http://inside.test:"+port+"/name"))
	wantRefused(t, fetchURL(t, opt, "http://[::1]:"+port+"/v6-literal"))
	wantRequests(t, s.requests.Load(), 0)
	if n := res.count("127.0.0.1"); n != 0 {
		t.Fatalf("an IP literal went to the resolver %d times, want 0", n)
	}

	opt.AllowPrivateNetworks = true
	wantBody(t, fetchURL(t, opt, s.URL+"/literal"), img)
	wantBody(t, fetchURL(t, opt, "http://inside.test:"+port+"/name"), img)
	wantRequests(t, s.requests.Load(), 2)
}

// TestPrivateNetworkRebinding: the same name resolves first to a public address, then, once
// the cached answer has expired, to 127.0.0.1. The check is at connect time, so the second
// connection is refused although the name passed before.
func TestPrivateNetworkRebinding(t *testing.T) {
	img := fakeImage(300, 22)
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close") // every URL dials, and so resolves, anew
		w.Write(img)
	})
	res := &scriptedResolver{answers: map[string][]string{"rebind.test": {publicTestIP, "127.0.0.1"}}}
	opt := testOptions()
	opt.AllowPrivateNetworks = false
	opt.Concurrency = 1
	opt.DNSCacheDuration = time.Nanosecond
	opt.resolver = res
	opt.dial = rerouteDial
	u := "http://rebind.test:" + portOf(t, s.URL)
	results := runItems(t, New(opt), []item.Item{{Seq: 0, URL: u + "/a"}, {Seq: 1, URL: u + "/b"}})
	wantBody(t, results[0], img)
	wantRefused(t, results[1])
	wantRequests(t, s.requests.Load(), 1)
}

// TestPrivateNetworkRedirect: a public host (a name resolving to publicTestIP, which the test
// dialer reroutes to a loopback server) redirects into loopback, by IP literal and by name;
// both hops are refused and the loopback server sees nothing.
func TestPrivateNetworkRedirect(t *testing.T) {
	inside := newServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write(fakeImage(100, 23)) })
	insidePort := portOf(t, inside.URL)
	outside := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-literal":
			http.Redirect(w, r, inside.URL+"/secret", http.StatusFound)
		case "/to-name":
			http.Redirect(w, r, "http://inside.test:"+insidePort+"/secret", http.StatusFound)
		}
	})
	res := &scriptedResolver{answers: map[string][]string{
		"public.test": {publicTestIP},
		"inside.test": {"127.0.0.1"},
	}}
	opt := testOptions()
	opt.AllowPrivateNetworks = false
	opt.resolver = res
	opt.dial = rerouteDial
	u := "http://public.test:" + portOf(t, outside.URL)
	for _, path := range []string{"/to-literal", "/to-name"} {
		r := fetchURL(t, opt, u+path)
		wantRefused(t, r)
		if r.Attempts < 2 {
			t.Fatalf("%s: %d attempts, want the redirect to have been followed", path, r.Attempts)
		}
	}
	wantRequests(t, outside.requests.Load(), 2)
	wantRequests(t, inside.requests.Load(), 0)
}

// publicTestIP is a public address that the guard lets through; rerouteDial sends its
// connections to the loopback server on the same port, so no test packet leaves the machine.
const publicTestIP = "93.184.216.34"

// rerouteDial is the dialer of the tests that need a "public" server: the guard judges the
// address a name really resolved to, and only the connect below it is redirected.
func rerouteDial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if host == publicTestIP {
		addr = net.JoinHostPort("127.0.0.1", port)
	} else if !netip.MustParseAddr(host).IsLoopback() {
		return nil, errors.New("test dialer: refusing to leave the machine for " + addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// scriptedResolver answers each host with its list of addresses, one per lookup, the last
// repeated; other hosts do not exist. It counts lookups per host.
type scriptedResolver struct {
	answers map[string][]string

	mu      sync.Mutex
	lookups map[string]int
}

func (r *scriptedResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lookups == nil {
		r.lookups = map[string]int{}
	}
	n := r.lookups[host]
	r.lookups[host]++
	list := r.answers[host]
	if len(list) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return []net.IPAddr{{IP: net.ParseIP(list[min(n, len(list)-1)])}}, nil
}

func (r *scriptedResolver) count(host string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lookups[host]
}

func portOf(t *testing.T, rawURL string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(rawURL[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// wantRefused: r failed on the guard.
func wantRefused(t *testing.T, r *Result) {
	t.Helper()
	wantFailure(t, r, ReasonPrivateNetwork)
}
