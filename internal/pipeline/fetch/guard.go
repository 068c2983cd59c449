// guard.go: the private-network guard. A URL list is untrusted input, so unless
// Options.AllowPrivateNetworks is set the dialer refuses every address that is not plainly
// on the public Internet: the check is on the resolved IP, at connect time, for the first
// request and for every redirect, so neither an IP literal nor DNS rebinding gets past it.

package fetch

import (
	"errors"
	"fmt"
	"net/netip"
)

// ReasonPrivateNetwork: the URL, or a redirect, led to an address the guard refuses.
const ReasonPrivateNetwork = "private network"

// errPrivateNetwork is wrapped by every refusal, so classifyError can name it with errors.Is.
var errPrivateNetwork = errors.New("private network address")

// privateNetworkError is a connect the guard refused.
type privateNetworkError struct {
	host  string     // the host of the URL, a name or an IP literal
	ip    netip.Addr // the address it resolved to
	block string     // the reserved block that holds ip
}

func (e *privateNetworkError) Error() string {
	what := e.host
	if e.host != e.ip.String() {
		what = fmt.Sprintf("%s resolves to %s, which", e.host, e.ip)
	}
	return fmt.Sprintf("fetch: %s is in %s; clipd does not fetch from private networks "+
		"unless AllowPrivateNetworks is set", what, e.block)
}

func (e *privateNetworkError) Unwrap() error { return errPrivateNetwork }

// reservedBlock is an address range no crawl should reach.
type reservedBlock struct {
	prefix netip.Prefix
	name   string
}

// reservedBlocks lists what the guard refuses: every block of the IANA IPv4 and IPv6
// special-purpose registries (RFC 6890 and later) that is not globally reachable, and the
// documentation, benchmarking, multicast and reserved space besides; no web server of a public
// URL list lives in any of them. IPv6 forms that carry an IPv4 address (IPv4-mapped, NAT64,
// 6to4) are judged by the IPv4 address inside; see reservedBlockOf.
var reservedBlocks = func() []reservedBlock {
	blocks := []struct{ cidr, name string }{
		// IPv4
		{"0.0.0.0/8", "\"this network\" (0.0.0.0/8)"},
		{"10.0.0.0/8", "a private network (10.0.0.0/8)"},
		{"100.64.0.0/10", "carrier-grade NAT space (100.64.0.0/10)"},
		{"127.0.0.0/8", "loopback (127.0.0.0/8)"},
		{"169.254.0.0/16", "link-local space, cloud metadata included (169.254.0.0/16)"},
		{"172.16.0.0/12", "a private network (172.16.0.0/12)"},
		{"192.0.0.0/24", "IETF protocol assignments (192.0.0.0/24)"},
		{"192.0.2.0/24", "documentation space (192.0.2.0/24)"},
		{"192.88.99.0/24", "the retired 6to4 relay anycast (192.88.99.0/24)"},
		{"192.168.0.0/16", "a private network (192.168.0.0/16)"},
		{"198.18.0.0/15", "benchmarking space (198.18.0.0/15)"},
		{"198.51.100.0/24", "documentation space (198.51.100.0/24)"},
		{"203.0.113.0/24", "documentation space (203.0.113.0/24)"},
		{"224.0.0.0/4", "multicast (224.0.0.0/4)"},
		{"240.0.0.0/4", "reserved space and broadcast (240.0.0.0/4)"},
		// IPv6
		{"::/128", "the unspecified address (::)"},
		{"::1/128", "loopback (::1)"},
		{"::/96", "deprecated IPv4-compatible space (::/96)"},
		{"64:ff9b:1::/48", "local-use NAT64 (64:ff9b:1::/48)"},
		{"100::/64", "discard-only space (100::/64)"},
		{"2001::/23", "IETF protocol assignments, Teredo included (2001::/23)"},
		{"2001:db8::/32", "documentation space (2001:db8::/32)"},
		{"3fff::/20", "documentation space (3fff::/20)"},
		{"5f00::/16", "SRv6 segment identifiers (5f00::/16)"},
		{"fc00::/7", "a unique-local (private) network (fc00::/7)"},
		{"fe80::/10", "link-local space (fe80::/10)"},
		{"fec0::/10", "deprecated site-local space (fec0::/10)"},
		{"ff00::/8", "multicast (ff00::/8)"},
	}
	out := make([]reservedBlock, len(blocks))
	for i, b := range blocks {
		out[i] = reservedBlock{netip.MustParsePrefix(b.cidr), b.name}
	}
	return out
}()

var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

// reservedBlockOf names the reserved block that holds ip, or returns "" for a public address.
func reservedBlockOf(ip netip.Addr) string {
	if !ip.IsValid() {
		return "no valid address"
	}
	ip = ip.WithZone("").Unmap() // Prefix.Contains never matches a zoned or IPv4-mapped address
	if ip.Is6() {
		// Forms that reach an IPv4 address through a translator or tunnel inherit its verdict.
		b := ip.As16()
		switch {
		case nat64Prefix.Contains(ip):
			if name := reservedBlockOf(netip.AddrFrom4([4]byte(b[12:16]))); name != "" {
				return name + " behind NAT64"
			}
			return ""
		case sixToFour.Contains(ip):
			if name := reservedBlockOf(netip.AddrFrom4([4]byte(b[2:6]))); name != "" {
				return name + " behind 6to4"
			}
			return ""
		}
	}
	for _, r := range reservedBlocks {
		if r.prefix.Contains(ip) {
			return r.name
		}
	}
	return ""
}
