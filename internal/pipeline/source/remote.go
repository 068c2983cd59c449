// remote.go: http(s) inputs — a client with bounded connect and header timeouts, and a body
// reader that gives up when the server stops sending (a stream of gigabytes has no sane total
// timeout, but a stall must not hang the run).

package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

var defaultClient = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	TLSHandshakeTimeout:   15 * time.Second,
	ResponseHeaderTimeout: 30 * time.Second,
	IdleConnTimeout:       90 * time.Second,
	ForceAttemptHTTP2:     true,
}}

// getBody starts a GET of u and returns its body (200 only), the Content-Length (-1 when
// unknown), and a body reader that fails after idle without data.
func getBody(ctx context.Context, u string, opt Options) (io.ReadCloser, http.Header, int64, error) {
	client := opt.HTTPClient
	if client == nil {
		client = defaultClient
	}
	idle := opt.ReadIdleTimeout
	if idle == 0 {
		idle = DefaultReadIdleTimeout
	}
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		cancel()
		return nil, nil, 0, fmt.Errorf("source %s: %w", u, err)
	}
	req.Header.Set("User-Agent", "clipd (+https://github.com/clipd/clipd)")
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		return nil, nil, 0, fmt.Errorf("source: %w; check the URL and the network", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return nil, nil, 0, fmt.Errorf("source %s: the server answered %s; check the URL", u, resp.Status)
	}
	return newIdleBody(resp.Body, cancel, idle, u), resp.Header, resp.ContentLength, nil
}

// newIdleBody wraps body, whose request cancel ends, so that a Read waiting idle without a
// byte cancels it.
func newIdleBody(body io.ReadCloser, cancel context.CancelFunc, idle time.Duration, url string) *idleBody {
	r := &idleBody{body: body, cancel: cancel, idle: idle, url: url}
	r.timer = time.AfterFunc(time.Hour, func() { r.stalled.Store(true); cancel() })
	r.timer.Stop()
	return r
}

// idleBody cancels the request when a Read has waited idle without a byte, and says so in its
// error. Only time inside Read counts: a consumer that stops reading (the pipeline's queues
// are full) is not a stalled server.
type idleBody struct {
	body    io.ReadCloser
	cancel  context.CancelFunc
	timer   *time.Timer
	idle    time.Duration
	url     string
	n       int64
	stalled atomic.Bool
}

func (r *idleBody) Read(p []byte) (int, error) {
	r.timer.Reset(r.idle)
	n, err := r.body.Read(p)
	r.timer.Stop()
	r.n += int64(n)
	switch {
	case err == nil || err == io.EOF:
		return n, err
	case r.stalled.Load():
		return n, fmt.Errorf("%s sent nothing for %v after %d bytes; giving up", r.url, r.idle, r.n)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return n, fmt.Errorf("connection to %s lost after %d bytes: %w", r.url, r.n, err)
	}
	return n, fmt.Errorf("reading %s after %d bytes: %w", r.url, r.n, err)
}

func (r *idleBody) Close() error {
	r.timer.Stop()
	r.cancel()
	return r.body.Close()
}
