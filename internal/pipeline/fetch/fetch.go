// fetch.go: the Fetcher, its workers, and the life of one URL: attempts, retries with
// back-off, redirects, and the single Result every item ends as.

package fetch

import (
	"context"
	"sync"
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
}

// Release returns the body's buffer to the pool; Body is nil afterwards.
func (r *Result) Release() {
	if r == nil || r.resp == nil {
		return
	}
	r.Body = nil
	fasthttp.ReleaseResponse(r.resp)
	r.resp = nil
}

// Fetcher downloads items' URLs. One Fetcher may serve several runs, one after another or at
// once; its DNS cache and counters are shared by them.
type Fetcher struct {
	opt    Options
	dialer *fasthttp.TCPDialer
	stats  counters
}

// New returns a Fetcher with opt's zero fields set to their defaults.
func New(opt Options) *Fetcher {
	opt = opt.withDefaults()
	return &Fetcher{
		opt:    opt,
		dialer: &fasthttp.TCPDialer{DNSCacheDuration: opt.DNSCacheDuration, Resolver: opt.resolver},
	}
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
		f:     f,
		ctx:   ctx,
		conns: conns,
		client: &fasthttp.Client{
			DialTimeout:               conns.Dial,
			MaxConnsPerHost:           f.opt.MaxConnsPerHost,
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
}

func (r *run) worker(in <-chan item.Item, out chan<- *Result) {
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	for it := range in {
		out <- r.fetch(req, it)
	}
}

// fetch takes one item to its Result.
func (r *run) fetch(req *fasthttp.Request, it item.Item) *Result {
	f, opt := r.f, &r.f.opt
	f.stats.started.Add(1)
	f.stats.inFlight.Add(1)
	defer f.stats.inFlight.Add(-1)

	res := &Result{Item: it, FinalURL: it.URL}
	failWith := func(reason string, status int) *Result {
		f.stats.fail(reason, status)
		res.Failure = &item.Failure{Item: it, Stage: "fetch", Reason: reason}
		return res
	}
	if r.ctx.Err() != nil {
		return failWith(ReasonCanceled, 0)
	}
	target, ok := checkURL(it.URL)
	if !ok {
		return failWith(ReasonBadURL, 0)
	}

	deadline := time.Now().Add(opt.Timeout)
	visited := []string{target.String()}
	retries := 0
	resp := fasthttp.AcquireResponse()
	for {
		req.Reset()
		req.SetRequestURI(target.String())
		req.Header.SetUserAgent(opt.UserAgent)
		req.Header.Set(fasthttp.HeaderAcceptEncoding, "gzip, deflate")
		resp.Reset()
		res.Attempts++
		err := r.client.DoDeadline(req, resp, deadline)
		f.stats.bytesReceived.Add(int64(len(resp.Body())))

		var (
			reason string
			status int
			wait   = time.Duration(-1) // -1: back off; otherwise the server's Retry-After
		)
		switch {
		case err != nil && r.ctx.Err() != nil:
			fasthttp.ReleaseResponse(resp)
			return failWith(ReasonCanceled, 0)
		case err != nil:
			var retry bool
			if reason, retry = classifyError(err); !retry {
				fasthttp.ReleaseResponse(resp)
				return failWith(reason, 0)
			}
		default:
			status = resp.StatusCode()
			switch {
			case status >= 200 && status <= 299:
				if reason := f.checkBody(resp, &it); reason != "" {
					fasthttp.ReleaseResponse(resp)
					return failWith(reason, 0)
				}
				resp.Header.SetNoDefaultContentType(true)
				res.Body = resp.Body()
				res.ContentType = string(resp.Header.ContentType())
				res.FinalURL = target.String()
				res.resp = resp
				f.stats.ok.Add(1)
				f.stats.bytesOK.Add(int64(len(res.Body)))
				return res
			case isRedirect(status):
				next, ok := resolveRedirect(target, resp.Header.Peek(fasthttp.HeaderLocation))
				switch {
				case !ok:
					reason = ReasonBadRedirect
				case contains(visited, next.String()):
					reason = ReasonRedirectLoop
				case len(visited) > opt.MaxRedirects:
					reason = ReasonTooManyRedirects
				}
				if reason != "" {
					fasthttp.ReleaseResponse(resp)
					return failWith(reason, 0)
				}
				f.stats.redirects.Add(1)
				visited = append(visited, next.String())
				target = next
				continue
			case retryableStatus(status):
				reason = HTTPReason(status)
				if d, ok := retryAfter(resp.Header.Peek(fasthttp.HeaderRetryAfter), time.Now()); ok {
					wait = min(d, opt.RetryAfterMax)
				}
			default:
				fasthttp.ReleaseResponse(resp)
				return failWith(HTTPReason(status), status)
			}
		}

		// A retryable failure: try again if retries and time are left.
		if retries >= opt.Retries {
			fasthttp.ReleaseResponse(resp)
			return failWith(reason, status)
		}
		retries++
		if wait < 0 {
			wait = backoff(retries, opt.BackoffBase, opt.BackoffMax)
		}
		if !time.Now().Add(wait).Before(deadline) {
			// The wait would eat the rest of the URL's time: fail now rather than later.
			fasthttp.ReleaseResponse(resp)
			return failWith(reason, status)
		}
		if !sleep(r.ctx, wait) {
			fasthttp.ReleaseResponse(resp)
			return failWith(ReasonCanceled, 0)
		}
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

// sleep waits d, or less if ctx ends first (then it returns false).
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
