// fetch.go: the Fetcher, its workers, and the life of one URL: attempts, retries with
// back-off, redirects, and the single Result every item ends as.

package fetch

import (
	"cmp"
	"context"
	"math"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clipd/clipd/internal/pipeline/item"
	"github.com/valyala/fasthttp"
)

// Result is what one item became: Body on success, Failure otherwise (never both).
//
// Body is pooled memory owned by the Result: it stays valid until Release, and must not be
// used, or kept in a slice, after it. Copy what must outlive the Result. Call Release once
// the body is consumed (after decoding); a Result that is never released is garbage
// collected, only without going back to the pool. Release is safe on failures and twice.
type Result struct {
	Item        item.Item
	Body        []byte        // the decoded body; nil on failure
	Failure     *item.Failure // nil on success; Stage "fetch", Reason one of the Reason* constants or "http <status>"
	FinalURL    string        // the URL that answered, after redirects
	ContentType string        // the answer's Content-Type, "" when absent
	Attempts    int           // requests made for the item, redirects included

	resp *fasthttp.Response
	hold bodyHold // what Body holds of Options.Budget
}

// Release returns the body's buffer to the pool, and its bytes to Options.Budget; Body is nil
// afterwards.
func (r *Result) Release() {
	if r == nil || r.resp == nil {
		return
	}
	r.hold.release()
	r.Body = nil
	if cap(r.resp.Body()) > pooledCap {
		r.resp.SwapBody(nil) // a large body becomes garbage, not a pooled buffer outside the budget
	}
	fasthttp.ReleaseResponse(r.resp)
	r.resp = nil
}

// Fetcher downloads items' URLs. One Fetcher may serve several runs, one after another or at
// once; its DNS cache and counters are shared by them.
type Fetcher struct {
	opt   Options
	dns   *dnsCache
	stats counters
}

// New returns a Fetcher with opt's zero fields set to their defaults.
func New(opt Options) *Fetcher {
	f := &Fetcher{opt: opt.withDefaults()}
	f.dns = newDNSCache(&f.opt)
	return f
}

// Options returns the options in force, defaults filled in.
func (f *Fetcher) Options() Options { return f.opt }

// Stats returns a snapshot of the counters; safe to call at any time from any goroutine.
func (f *Fetcher) Stats() Stats { return f.stats.snapshot() }

// Run starts Options.Concurrency workers that fetch the items read from in and returns the
// channel of their results, in completion order (Item.Seq restores the input order). Every
// item read from in comes out exactly once. The output is closed once in is closed and
// drained and every fetch has ended; callers read it to the end.
//
// Canceling ctx aborts in-flight requests (their connections are closed) and waits: those
// items, and every item read from in afterwards, come out at once as "canceled" failures.
// So after canceling, the producer still closes in (as pipeline stages do when their context
// ends) and the consumer still drains the output; "canceled" items were never judged and
// belong to a later run, not to the failed list.
func (f *Fetcher) Run(ctx context.Context, in <-chan item.Item) <-chan *Result {
	out := make(chan *Result, f.opt.OutputBuffer)
	conns := newConnTracker(ctx, f)
	r := &run{
		f:         f,
		ctx:       ctx,
		conns:     conns,
		hosts:     newHostTable(hostTableSize),
		ready:     make(chan *task),
		parkLimit: int64(8 * f.opt.Concurrency),
		burst:     max(1, int(math.Ceil(f.opt.HostRate))),
		agent:     productToken(f.opt.UserAgent),
		drained:   make(chan struct{}),
		client: &fasthttp.Client{
			DialTimeout:               conns.Dial,
			MaxConnsPerHost:           f.opt.MaxConnsPerHost,
			MaxIdleConnDuration:       f.opt.MaxIdleConnDuration,
			MaxConnWaitTimeout:        f.opt.Timeout, // a full pool waits; the URL's deadline still bounds the wait
			MaxIdemponentCallAttempts: 1,             // retries are ours, with back-off
			ReadTimeout:               f.opt.ReadTimeout,
			WriteTimeout:              f.opt.WriteTimeout,
			MaxResponseBodySize:       int(f.opt.MaxBodyBytes),
			ReadBufferSize:            16 << 10, // response headers larger than 4 KiB are common
			NoDefaultUserAgentHeader:  true,
			DisablePathNormalizing:    true, // send URLs as given: signed and %-encoded paths must not change
		},
	}
	stop := context.AfterFunc(ctx, conns.closeAll)
	var wg sync.WaitGroup
	for range f.opt.Concurrency {
		wg.Go(func() { r.worker(in, out) })
	}
	go func() {
		wg.Wait()
		stop()
		r.client.CloseIdleConnections()
		close(out)
	}()
	return out
}

type run struct {
	f      *Fetcher
	ctx    context.Context
	client *fasthttp.Client
	conns  *connTracker
	hosts  *hostTable
	burst  int    // rate tokens a host may spend at once: one second's worth
	agent  string // our product token, as robots.txt and X-Robots-Tag name us

	// Items whose host is backed off or rate-limited, or has all its connection slots in
	// use, wait "parked", off the workers, so the workers go on with other hosts' items.
	// ready hands a parked item back once its wait is over or a slot is handed to it. With
	// parkLimit items parked, workers take no new items from the input until some return
	// (at most parkLimit + Concurrency are parked: each worker may park the item it holds).
	ready     chan *task
	parked    atomic.Int64
	parkLimit int64

	mu      sync.Mutex
	live    int           // items taken from in without a Result yet, parked ones included
	idle    int           // workers that found in closed: they take no more items from it
	drained chan struct{} // closed once every worker found in closed and live == 0
}

// task is one item on its way to a Result, carried across attempts and parking.
type task struct {
	it           item.Item
	res          *Result
	target       *url.URL
	visited      []string
	retries      int
	staleResends int // requests sent again because a reused connection was found closed
	deadline     time.Time
	notBefore    time.Time  // the item's own back-off before its next attempt
	hasToken     bool       // it holds a host rate token taken before it was parked
	slot         *hostState // a connection slot of its host, handed to it while it was parked
	reason       string     // why the last attempt failed, if it did
	status       int
}

func (r *run) worker(in <-chan item.Item, out chan<- *Result) {
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	for {
		var t *task
		intake := in
		if r.parked.Load() >= r.parkLimit {
			intake = nil // enough items wait already: take parked ones first
		}
		select {
		case t = <-r.ready:
			r.parked.Add(-1)
		case it, ok := <-intake:
			if !ok {
				in = nil // a nil channel is never ready: wait for parked items or the end
				r.inputClosed()
				continue
			}
			t = r.begin(it)
		case <-r.drained:
			return
		}
		if res := r.fetch(req, t); res != nil {
			out <- res
			r.end()
		}
	}
}

// begin starts an item's task; its deadline counts from now.
func (r *run) begin(it item.Item) *task {
	r.mu.Lock()
	r.live++
	r.mu.Unlock()
	r.f.stats.started.Add(1)
	r.f.stats.inFlight.Add(1)
	return &task{it: it, res: &Result{Item: it, FinalURL: it.URL}, deadline: time.Now().Add(r.f.opt.Timeout)}
}

// end records that an item's Result is out.
func (r *run) end() {
	r.f.stats.inFlight.Add(-1)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.live--
	r.checkDrained()
}

// inputClosed records that a worker found in closed. Only when all have can no item be
// between its receive and begin, so only then may live == 0 end the run.
func (r *run) inputClosed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.idle++
	r.checkDrained()
}

func (r *run) checkDrained() {
	if r.idle == r.f.opt.Concurrency && r.live == 0 {
		close(r.drained)
	}
}

// park has t wait off the workers until at (or until the run is canceled).
func (r *run) park(t *task, at time.Time) {
	r.parked.Add(1)
	go func() {
		timer := time.NewTimer(time.Until(at))
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-r.ctx.Done():
		}
		r.ready <- t
	}()
}

func (r *run) fail(t *task, reason string, status int) *Result {
	r.f.stats.fail(reason, status)
	t.res.Failure = &item.Failure{Item: t.it, Stage: "fetch", Reason: reason}
	return t.res
}

// releaseSlot gives back a connection slot of h: to the next request waiting for one (it
// goes to the next free worker, holding the slot), or to the host.
func (r *run) releaseSlot(h *hostState) {
	if next := h.releaseSlot(); next != nil {
		next.slot = h
		go func() { r.ready <- next }()
	}
}

// takeSlot gets t one of host's connection slots and returns true, or parks t until a slot
// is handed to it and returns false (fetch returns nil then). It never waits on the worker:
// a worker waiting for a slot could hold up the very worker that a slot's next holder needs.
func (r *run) takeSlot(t *task, host *hostState) bool {
	r.parked.Add(1)
	if host.acquireSlot(t, r.f.opt.MaxConnsPerHost) {
		r.parked.Add(-1)
		return true
	}
	return false
}

// fetch takes a task on until its Result, which it returns, or until it is parked (nil).
//
// Each attempt holds one of its host's connection slots (MaxConnsPerHost) from before the
// request until its answer is dealt with; a task that waited for a slot comes back holding
// it (t.slot).
func (r *run) fetch(req *fasthttp.Request, t *task) *Result {
	f, opt, res := r.f, &r.f.opt, t.res
	held := t.slot
	t.slot = nil
	release := func() {
		if held != nil {
			r.releaseSlot(held)
			held = nil
		}
	}
	defer release()
	if t.target == nil {
		if r.ctx.Err() != nil {
			return r.fail(t, ReasonCanceled, 0)
		}
		target, ok := checkURL(t.it.URL)
		if !ok {
			return r.fail(t, ReasonBadURL, 0)
		}
		t.target = target
		t.visited = []string{target.String()}
	}
	for {
		if r.ctx.Err() != nil {
			return r.fail(t, ReasonCanceled, 0)
		}
		// The host's word first: given up, backed off, or out of rate tokens.
		now := time.Now()
		host := r.hosts.get(hostKey(t.target))
		if opt.RobotsTxt {
			if reason := r.robotsVerdict(t, host); reason != "" {
				return r.fail(t, reason, 0)
			}
		}
		adm := host.admit(now, t.deadline, opt.HostRate, r.burst, t.hasToken)
		if adm.fail != "" {
			return r.fail(t, adm.fail, adm.status)
		}
		t.hasToken = adm.token
		at := adm.at
		if t.notBefore.After(at) {
			at = t.notBefore
		}
		if at.After(now) {
			if !at.Before(t.deadline) {
				// The wait would eat the rest of the URL's time: fail now rather than later.
				return r.fail(t, cmp.Or(t.reason, ReasonTimeout), t.status)
			}
			r.park(t, at)
			return nil
		}
		t.hasToken = false
		if held != nil && held != host { // a slot of a host state since evicted and renewed
			release()
		}
		if held == nil {
			if !r.takeSlot(t, host) {
				return nil // parked until a slot is handed to it
			}
			held = host
		}

		req.Reset()
		req.SetRequestURI(t.target.String())
		req.Header.SetUserAgent(opt.UserAgent)
		req.Header.Set(fasthttp.HeaderAcceptEncoding, "gzip, deflate")
		resp := fasthttp.AcquireResponse()
		// Do returns after the headers; the body is read (or not) below. The deadline still
		// bounds the body: fasthttp keeps it on the connection while the stream is read.
		resp.StreamBody = true
		res.Attempts++
		err := r.client.DoDeadline(req, resp, t.deadline)

		var (
			reason    string
			status    int
			hostReady time.Time // after a 429/503: when the host may be asked again
		)
		switch {
		case err != nil && r.ctx.Err() != nil:
			fasthttp.ReleaseResponse(resp)
			return r.fail(t, ReasonCanceled, 0)
		case err != nil:
			var retry bool
			reason, retry = classifyError(err)
			if reason == ReasonConnClosed && t.staleResends < opt.MaxConnsPerHost && r.conns.takeStale(resp.LocalAddr()) {
				// A pooled connection the server had closed while idle: send again at once
				// (fasthttp dropped that connection), at most once per connection the pool
				// can hold, without counting a retry or a host failure.
				fasthttp.ReleaseResponse(resp)
				t.staleResends++
				f.stats.staleConns.Add(1)
				release()
				continue
			}
			if hostLevelFailure(reason) {
				host.failed(reason, opt.HostMaxFailures)
			}
			if !retry {
				fasthttp.ReleaseResponse(resp)
				return r.fail(t, reason, 0)
			}
		default:
			status = resp.StatusCode()
			if status == fasthttp.StatusTooManyRequests || status == fasthttp.StatusServiceUnavailable {
				wait, ok := retryAfter(resp.Header.Peek(fasthttp.HeaderRetryAfter), now)
				hostReady = host.throttled(time.Now(), HTTPReason(status), status,
					min(wait, opt.RetryAfterMax), ok, opt.BackoffBase, opt.BackoffMax)
			} else {
				host.answered()
			}
			if status < 200 || status > 299 {
				f.stats.bytesReceived.Add(discardBody(resp))
			}
			switch {
			case status >= 200 && status <= 299:
				if !opt.IgnoreOptOut {
					if reason := optOut(&resp.Header, r.agent); reason != "" {
						fasthttp.ReleaseResponse(resp) // closes the connection, the body unread
						return r.fail(t, reason, 0)
					}
				}
				var hold bodyHold
				n, bodyReason, retry := f.readBody(r.ctx, t.deadline, resp, &hold)
				f.stats.bytesReceived.Add(n)
				reason = bodyReason
				if reason != "" && r.ctx.Err() != nil {
					fasthttp.ReleaseResponse(resp)
					return r.fail(t, ReasonCanceled, 0)
				}
				if reason != "" && !retry {
					fasthttp.ReleaseResponse(resp)
					return r.fail(t, reason, 0)
				}
				if reason != "" {
					// The host answered (its headers came): a body that breaks off is this
					// URL's failure, retried, not a sign of a dead host.
					status = 0
					break // retried below
				}
				if reason := f.checkBody(r.ctx, t.deadline, resp, &t.it, &hold); reason != "" {
					fasthttp.ReleaseResponse(resp)
					return r.fail(t, reason, 0)
				}
				resp.Header.SetNoDefaultContentType(true)
				res.Body = resp.Body()
				res.ContentType = string(resp.Header.ContentType())
				res.FinalURL = t.target.String()
				res.resp, res.hold = resp, hold
				f.stats.ok.Add(1)
				f.stats.bytesOK.Add(int64(len(res.Body)))
				return res
			case isRedirect(status):
				next, ok := resolveRedirect(t.target, resp.Header.Peek(fasthttp.HeaderLocation))
				fasthttp.ReleaseResponse(resp)
				switch {
				case !ok:
					reason = ReasonBadRedirect
				case contains(t.visited, next.String()):
					reason = ReasonRedirectLoop
				case len(t.visited) > opt.MaxRedirects:
					reason = ReasonTooManyRedirects
				}
				if reason != "" {
					return r.fail(t, reason, 0)
				}
				f.stats.redirects.Add(1)
				t.visited = append(t.visited, next.String())
				t.target = next
				release()
				continue
			case retryableStatus(status):
				reason = HTTPReason(status)
			default:
				fasthttp.ReleaseResponse(resp)
				return r.fail(t, HTTPReason(status), status)
			}
		}
		fasthttp.ReleaseResponse(resp)
		release()

		// A retryable failure: try again if retries and time are left.
		if t.retries >= opt.Retries {
			return r.fail(t, reason, status)
		}
		t.retries++
		next := hostReady
		if next.IsZero() {
			next = time.Now().Add(backoff(t.retries, opt.BackoffBase, opt.BackoffMax))
		}
		if !next.Before(t.deadline) {
			return r.fail(t, reason, status)
		}
		t.notBefore, t.reason, t.status = next, reason, status
		f.stats.retry(reason, status)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
