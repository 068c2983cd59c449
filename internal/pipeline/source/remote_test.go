// remote_test.go: http(s) inputs against servers on 127.0.0.1 — a plain and a gzipped list,
// an error status, a server that dies in the middle of the body, and one that stalls.

package source

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHTTPSource(t *testing.T) {
	var list strings.Builder
	for i := 0; i < 5000; i++ {
		fmt.Fprintf(&list, "https://img.example/%d.jpg\n", i)
	}
	gz := gzipped(t, "url,id\nhttps://x/1,a\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/list.txt":
			w.Write([]byte(list.String()))
		case "/dl":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(gz)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	s, err := Open(testContext(t), srv.URL+"/list.txt?token=1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	items, _ := drain(t, s)
	if len(items) != 5000 || items[4999].URL != "https://img.example/4999.jpg" {
		t.Fatalf("%d items", len(items))
	}

	// Gzip and the format come from the bytes when the URL says nothing.
	s, err = Open(testContext(t), srv.URL+"/dl", Options{})
	if err != nil {
		t.Fatal(err)
	}
	items, _ = drain(t, s)
	if !s.Info().Gzip || s.Info().Format != FormatCSV || len(items) != 1 || items[0].ImageID != "a" {
		t.Fatalf("info %+v items %+v", s.Info(), items)
	}

	if _, err := Open(testContext(t), srv.URL+"/missing.txt", Options{}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("404: err = %v", err)
	}
}

// readRequest consumes a GET request's head, so that closing the connection later sends a
// FIN rather than a reset that could discard the response.
func readRequest(c net.Conn) {
	var head []byte
	buf := make([]byte, 1024)
	for !strings.Contains(string(head), "\r\n\r\n") {
		n, err := c.Read(buf)
		head = append(head, buf[:n]...)
		if err != nil {
			return
		}
	}
}

// rawServer accepts connections on 127.0.0.1 and hands each to serve.
func rawServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return "http://" + ln.Addr().String()
}

// The server promises a long body, sends part of it, and closes the connection: the rows that
// arrived are delivered, then Err says the connection was lost.
func TestHTTPServerDiesMidBody(t *testing.T) {
	body := strings.Repeat("https://x/some/image.jpg\n", 1000)
	url := rawServer(t, func(c net.Conn) {
		defer c.Close()
		readRequest(c)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", 10*len(body), body)
	})
	s, err := Open(testContext(t), url+"/list.txt", Options{})
	if err != nil {
		t.Fatal(err)
	}
	items, _ := drainErr(s)
	err = s.Err()
	if err == nil || !strings.Contains(err.Error(), "lost after 25000 bytes") || !strings.Contains(err.Error(), "ended in the middle") {
		t.Fatalf("err = %v; want a lost-connection error", err)
	}
	if len(items) != 1000 {
		t.Errorf("%d items before the loss; want 1000", len(items))
	}
}

// A server that stops sending trips ReadIdleTimeout instead of hanging the run.
func TestHTTPStall(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	url := rawServer(t, func(c net.Conn) {
		defer c.Close()
		readRequest(c)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nhttps://x/1\nhttps://x/2\n")
		<-release
	})
	s, err := Open(testContext(t), url+"/l.txt", Options{ReadIdleTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	items, _ := drainErr(s)
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "sent nothing for 300ms") {
		t.Fatalf("err = %v", err)
	}
	if len(items) != 2 {
		t.Errorf("%d items; want 2", len(items))
	}
}

// A consumer that pauses longer than ReadIdleTimeout (the pipeline's queues are full) is not a
// stalled server: only time spent waiting inside a read counts.
func TestHTTPSlowConsumerIsNotAStall(t *testing.T) {
	body := strings.Repeat("https://x/some/longer/path/to/an/image.jpg\n", 100000) // 4.4 MB
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(body))
	}))
	defer srv.Close()
	s, err := Open(testContext(t), srv.URL+"/l.txt", Options{ReadIdleTimeout: time.Second, Buffer: 1})
	if err != nil {
		t.Fatal(err)
	}
	<-s.Records()
	time.Sleep(1500 * time.Millisecond)
	items, _ := drainErr(s)
	if err := s.Err(); err != nil || len(items) != 99999 {
		t.Fatalf("%d items, err %v", len(items), err)
	}
}
