// faults_test.go: servers that misbehave at the TCP level (never answer, close early, are not
// there) and cancellation in the middle of a run.
package fetch

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/pipeline/item"
)

func TestHangingServerTimesOut(t *testing.T) {
	hang := newRawServer(t, func(c net.Conn) {
		io.Copy(io.Discard, c) // read the request, never answer
	})
	// The URL's deadline ends the only attempt.
	opt := testOptions()
	opt.Timeout = 300 * time.Millisecond
	wantFailure(t, fetchURL(t, opt, hang.URL()+"/slow.jpg"), ReasonTimeout)
	if n := hang.conns.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}

	// A read timeout ends each attempt; the retries follow within the URL's deadline.
	opt.Timeout = 10 * time.Second
	opt.ReadTimeout = 50 * time.Millisecond
	opt.Retries = 2
	wantFailure(t, fetchURL(t, opt, hang.URL()+"/slow.jpg"), ReasonTimeout)
	if n := hang.conns.Load() - 1; n != 3 {
		t.Fatalf("%d connections for 3 attempts", n)
	}
}

func TestTruncatedBody(t *testing.T) {
	s := newRawServer(t, func(c net.Conn) {
		defer c.Close()
		if readRequestHead(c) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\n")
			c.Write(fakeImage(500, 10))
		}
	})
	opt := testOptions()
	opt.Retries = 2
	wantFailure(t, fetchURL(t, opt, s.URL()), ReasonTruncated)
	if n := s.conns.Load(); n != 3 {
		t.Fatalf("%d requests, want 3 (retried)", n)
	}
}

func TestClosedBeforeAnswer(t *testing.T) {
	s := newRawServer(t, func(c net.Conn) {
		readRequestHead(c)
		c.Close()
	})
	opt := testOptions()
	opt.Retries = 1
	wantFailure(t, fetchURL(t, opt, s.URL()), ReasonConnClosed)
	if n := s.conns.Load(); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	f := New(testOptions())
	r := runItems(t, f, []item.Item{{URL: "http://" + addr + "/a.jpg"}})[0]
	wantFailure(t, r, ReasonConnRefused)
	if st := f.Stats(); st.Retries != 3 || st.Reasons[ReasonConnRefused] != 1 || st.RetryReasons[ReasonConnRefused] != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// TestCancelMidRun: the server never answers and the URL deadline is a minute, so only
// cancellation can end the run. Every item handed to the fetcher still comes out once.
func TestCancelMidRun(t *testing.T) {
	var arrived atomic.Int64
	release := make(chan struct{})
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	opt := testOptions()
	opt.Concurrency = 8
	opt.Timeout = time.Minute
	opt.ReadTimeout = time.Minute
	f := New(opt)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := make(chan item.Item)
	var sent atomic.Int64
	go func() { // a producer that stops and closes when the context ends, like a source stage
		defer close(in)
		for i := 0; ; i++ {
			select {
			case in <- item.Item{Seq: int64(i), URL: s.URL + "/" + strconv.Itoa(i)}:
				sent.Add(1)
			case <-ctx.Done():
				return
			}
		}
	}()
	out := f.Run(ctx, in)
	for stuck := time.Now().Add(10 * time.Second); arrived.Load() < 8; { // all workers are in a request
		if time.Now().After(stuck) {
			t.Fatalf("only %d requests reached the server", arrived.Load())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	seen := map[int64]bool{}
	guard := time.After(10 * time.Second)
	for done := false; !done; {
		select {
		case r, ok := <-out:
			if !ok {
				done = true
				break
			}
			if seen[r.Item.Seq] {
				t.Fatalf("item %d came out twice", r.Item.Seq)
			}
			seen[r.Item.Seq] = true
			wantFailure(t, r, ReasonCanceled)
		case <-guard:
			t.Fatal("the run did not end within 10 s of cancellation (the URL deadline is a minute)")
		}
	}
	if int64(len(seen)) != sent.Load() || len(seen) < 8 {
		t.Fatalf("%d results for %d items sent", len(seen), sent.Load())
	}
	if st := f.Stats(); st.InFlight != 0 || st.Failed != sent.Load() || st.Reasons[ReasonCanceled] != sent.Load() {
		t.Fatalf("stats %+v", st)
	}
}

// TestTricklingBodyEndsAtTheDeadline: headers at once, then a byte every 50 ms forever.
// Every read makes progress, so only the URL's total deadline can end it; the run's output
// closes within Timeout of the last URL being handed out.
func TestTricklingBodyEndsAtTheDeadline(t *testing.T) {
	s := newRawServer(t, func(c net.Conn) {
		defer c.Close()
		if !readRequestHead(c) {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 1000000\r\n\r\n")
		for {
			if _, err := c.Write([]byte{0xFF}); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	opt := testOptions()
	opt.Timeout = 700 * time.Millisecond
	opt.ReadTimeout = time.Minute // no single read is slow
	f := New(opt)
	in := make(chan item.Item)
	out := f.Run(context.Background(), in)
	var lastHandedOut time.Time
	go func() {
		defer close(in)
		for i := range 3 {
			in <- item.Item{Seq: int64(i), URL: s.URL() + "/" + strconv.Itoa(i)}
			lastHandedOut = time.Now()
		}
	}()
	n := 0
	guard := time.After(10 * time.Second)
	for done := false; !done; {
		select {
		case r, ok := <-out:
			if !ok {
				done = true
				break
			}
			n++
			wantFailure(t, r, ReasonTimeout)
		case <-guard:
			t.Fatal("the run did not end within 10 s; the URL deadline is 0.7 s")
		}
	}
	// Not a timing assertion: an output still open long after every deadline is a hang.
	if n != 3 || time.Since(lastHandedOut) > opt.Timeout+2*time.Second {
		t.Fatalf("%d results; output closed %v after the last URL was handed out", n, time.Since(lastHandedOut))
	}
}
