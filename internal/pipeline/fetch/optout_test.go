// optout_test.go: X-Robots-Tag opt-outs are honoured from the headers alone: the body of an
// opted-out image is never read, however large.
package fetch

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

func TestRobotsTagOptsOut(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  bool
	}{
		{"noai", true},
		{"NoImageAI", true},
		{"noml", true},
		{"noindex, nofollow", true},
		{"nofollow,noimageindex", true},
		{"none", true},
		{"clipd: noai", true},
		{"CLIPD: noimageai, nofollow", true},
		{"googlebot: noindex", false},
		{"otherbot: noai", false},
		{"nofollow", false},
		{"noarchive, nosnippet", false},
		{"unavailable_after: 25 Jun 2010 15:00:00 PST", false},
		{"max-image-preview: none", false}, // "none" is the directive's value here
		{"", false},
	} {
		if got := robotsTagOptsOut(tc.value, "clipd"); got != tc.want {
			t.Errorf("robotsTagOptsOut(%q) = %v, want %v", tc.value, got, tc.want)
		}
	}
	if tok := productToken(DefaultUserAgent); tok != "clipd" {
		t.Fatalf("product token of %q is %q", DefaultUserAgent, tok)
	}
}

// hugeBodyServer answers with the given X-Robots-Tag header and a 64 MiB body written slowly,
// counting what it managed to write before the client went away.
type hugeBodyServer struct {
	*rawServer
	written atomic.Int64
	done    chan struct{}
}

func newHugeBodyServer(t *testing.T, robotsTag string) *hugeBodyServer {
	s := &hugeBodyServer{done: make(chan struct{}, 8)}
	s.rawServer = newRawServer(t, func(c net.Conn) {
		defer func() { s.done <- struct{}{} }()
		defer c.Close()
		if !readRequestHead(c) {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nX-Robots-Tag: %s\r\nContent-Length: %d\r\n\r\n", robotsTag, 64<<20)
		chunk := fakeImage(64<<10, 30)
		for s.written.Load() < 64<<20 {
			n, err := c.Write(chunk)
			s.written.Add(int64(n))
			if err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	return s
}

func TestOptOutSkipsTheBody(t *testing.T) {
	for _, tag := range []string{"noai", "noimageai", "NoML", "noindex", "noimageindex", "clipd: noai", "nofollow, noimageai"} {
		t.Run(tag, func(t *testing.T) {
			s := newHugeBodyServer(t, tag)
			f := New(testOptions())
			r := runItems(t, f, itemsFor(s.URL(), 1, 0))[0]
			wantFailure(t, r, "opted out (X-Robots-Tag: "+tag+")")
			select {
			case <-s.done:
			case <-time.After(10 * time.Second):
				t.Fatal("the server was still writing the body 10 s after the fetch ended")
			}
			// At 64 KiB per 5 ms the whole body takes over 5 s; a closed connection stops it
			// after what the socket buffers hold.
			if w := s.written.Load(); w >= 32<<20 {
				t.Fatalf("the server wrote %d bytes before the connection closed", w)
			}
			if st := f.Stats(); st.BytesReceived != 0 || st.Retries != 0 || st.Reasons[ReasonOptedOut] != 1 || s.conns.Load() != 1 {
				t.Fatalf("stats %+v, %d connections", st, s.conns.Load())
			}
		})
	}
}

func TestOptOutIgnoredOrOtherAgent(t *testing.T) {
	img := fakeImage(5000, 31)
	tag := "noai"
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Robots-Tag", tag)
		w.Write(img)
	})
	opt := testOptions()
	opt.IgnoreOptOut = true
	wantBody(t, fetchURL(t, opt, s.URL+"/a.jpg"), img)

	tag = "otherbot: noai, noindex"
	wantBody(t, fetchURL(t, testOptions(), s.URL+"/a.jpg"), img)
}

// TestStreamedBodyLimits: bodies are streamed now; the limits still hold on them.
func TestStreamedBodyLimits(t *testing.T) {
	big := fakeImage(3000, 32)
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chunked" {
			w.(http.Flusher).Flush() // no Content-Length: the limit stops the read
		}
		io.Copy(w, io.LimitReader(neverEnding{}, 3000))
	})
	opt := testOptions()
	opt.MaxBodyBytes = 2000
	wantFailure(t, fetchURL(t, opt, s.URL+"/declared"), ReasonTooLarge)
	wantFailure(t, fetchURL(t, opt, s.URL+"/chunked"), ReasonTooLarge)
	opt.MaxBodyBytes = 3000
	r := fetchURL(t, opt, s.URL+"/chunked")
	if r.Failure != nil || len(r.Body) != len(big) {
		t.Fatalf("a body at the limit: %+v, %d bytes", r.Failure, len(r.Body))
	}
}

type neverEnding struct{}

func (neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 0xFF
	}
	return len(p), nil
}
