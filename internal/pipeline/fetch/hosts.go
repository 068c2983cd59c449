// hosts.go: what the fetcher remembers about each host (host:port) to be polite to it: its
// connection slots and the requests waiting for one, its request rate (a token bucket), its
// back-off after 429/503, the run of connection failures after which it is given up, and
// its robots.txt. The table is an LRU of bounded size, so a
// run over millions of hosts keeps only the recently used ones.

package fetch

import (
	"container/list"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"
)

// hostTableSize bounds the hosts remembered at once. Only hosts with URLs in flight need
// their state; an evicted host starts afresh (a given-up host gets another chance, its
// robots.txt is fetched again).
const hostTableSize = 1 << 16

// hostKey names u's host as the politeness state sees it: lower-case host and explicit port.
func hostKey(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// hostTable maps host keys to their state, least recently used first out.
type hostTable struct {
	mu    sync.Mutex
	hosts map[string]*list.Element // of *hostState
	lru   list.List                // front: most recently used
	size  int
}

func newHostTable(size int) *hostTable {
	return &hostTable{hosts: map[string]*list.Element{}, size: size}
}

// get returns key's state, creating it (and evicting the least recently used) if needed.
// A state evicted while a fetch still holds it stays valid for that fetch; it is only
// forgotten. A host with requests in flight or waiting is not evicted (its slots would be
// forgotten with it), so the table can exceed size by the hosts that are busy.
func (t *hostTable) get(key string) *hostState {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.hosts[key]; ok {
		t.lru.MoveToFront(e)
		return e.Value.(*hostState)
	}
	for e := t.lru.Back(); e != nil && t.lru.Len() >= t.size; {
		prev := e.Prev()
		if h := e.Value.(*hostState); !h.busy() {
			t.lru.Remove(e)
			delete(t.hosts, h.key)
		}
		e = prev
	}
	h := &hostState{key: key}
	t.hosts[key] = t.lru.PushFront(h)
	return h
}

func (t *hostTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lru.Len()
}

// hostState is one host's politeness state.
type hostState struct {
	key string

	mu sync.Mutex
	// Token bucket as a "theoretical arrival time": the next request may go at tat minus the
	// burst allowance.
	tat time.Time
	// Back-off after 429/503: no request before backoffUntil.
	backoffUntil  time.Time
	backoffReason string // "http 429" or "http 503"
	backoffStatus int
	throttles     int // 429/503 answers since the last other answer
	// Consecutive connection-level failures, and the verdict once they reach the limit.
	failures   int
	lastReason string
	givenUp    string // the failure reason of every later URL; "" while the host is tried

	robots *robotsFile // nil until a URL of the host needs it

	// Connection slots: active requests hold one each, at most MaxConnsPerHost; requests
	// past that wait in waiting (FIFO) and are handed a slot as one is released.
	active  int
	waiting []*task
}

// acquireSlot takes a connection slot for t and returns true, or, with the host's slots all
// taken, puts t at the end of the host's queue and returns false: releaseSlot hands it a
// slot later (handoff).
func (h *hostState) acquireSlot(t *task, slots int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.active < slots {
		h.active++
		return true
	}
	h.waiting = append(h.waiting, t)
	return false
}

// releaseSlot gives a slot back: to the first waiting request (returned; its slot is held
// for it) or to the host.
func (h *hostState) releaseSlot() *task {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.waiting) == 0 {
		h.active--
		return nil
	}
	next := h.waiting[0]
	h.waiting[0] = nil
	h.waiting = h.waiting[1:]
	if len(h.waiting) == 0 {
		h.waiting = nil // let the backing array go
	}
	return next
}

func (h *hostState) busy() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.active > 0 || len(h.waiting) > 0
}

// admission is what a host says to a request that wants to go now.
type admission struct {
	at     time.Time // the request may go at this time (now or later)
	fail   string    // non-empty: fail the URL with this reason at once
	status int       // the HTTP status of fail, for the stats; 0 if none
	token  bool      // a rate token was taken for at
}

// admit decides when a request to the host may go. hasToken says the request already holds
// a rate token from an earlier admission (it waited for it), so it takes no other. A
// request that could only go at or after deadline is failed now rather than kept waiting.
func (h *hostState) admit(now, deadline time.Time, rate float64, burst int, hasToken bool) admission {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.givenUp != "" {
		return admission{fail: h.givenUp}
	}
	at := now
	if h.backoffUntil.After(at) {
		at = h.backoffUntil
		if !at.Before(deadline) {
			return admission{fail: h.backoffReason, status: h.backoffStatus}
		}
	}
	if rate <= 0 || hasToken {
		return admission{at: at, token: hasToken}
	}
	interval := time.Duration(float64(time.Second) / rate)
	tat := h.tat
	if tat.Before(at) {
		tat = at
	}
	start := tat.Add(-time.Duration(burst-1) * interval)
	if start.Before(at) {
		start = at
	}
	if !start.Before(deadline) {
		return admission{fail: ReasonTimeout}
	}
	h.tat = tat.Add(interval)
	return admission{at: start, token: true}
}

// answered records an HTTP answer other than 429/503: the host is alive and not throttling.
func (h *hostState) answered() {
	h.mu.Lock()
	h.failures, h.throttles = 0, 0
	h.mu.Unlock()
}

// throttled records a 429 or 503 and backs the whole host off: for the server's Retry-After
// when it sent one (already capped), else exponentially with jitter per throttle in a row.
// It returns when the host may be asked again.
func (h *hostState) throttled(now time.Time, reason string, status int, retryAfter time.Duration, hasRetryAfter bool, base, ceiling time.Duration) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failures = 0 // it answered
	h.throttles++
	wait := retryAfter
	if !hasRetryAfter {
		wait = backoff(h.throttles, base, ceiling)
	}
	if until := now.Add(wait); until.After(h.backoffUntil) {
		h.backoffUntil = until
		h.backoffReason, h.backoffStatus = reason, status
	}
	return h.backoffUntil
}

// failed records a connection-level failure (refused, DNS, timeout, reset, TLS); the
// limit-th in a row gives the host up. limit <= 0 never gives up.
func (h *hostState) failed(reason string, limit int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failures++
	h.lastReason = reason
	if limit > 0 && h.failures >= limit && h.givenUp == "" {
		h.givenUp = fmt.Sprintf("%s (after %d failures: %s)", ReasonHostGivenUp, h.failures, reason)
	}
}

// hostLevelFailure: the reasons that say the host itself is unreachable or unwell rather
// than one URL being bad.
func hostLevelFailure(reason string) bool {
	switch reason {
	case ReasonConnRefused, ReasonDNS, ReasonTimeout, ReasonConnClosed, ReasonConnError, ReasonTLS:
		return true
	}
	return false
}
