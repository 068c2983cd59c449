// crawl_test.go: what a crawl may reach and what it must leave alone: a URL list pointing at
// this machine (127.0.0.1) is refused by default, with the reason, and fetched with
// --allow-private-networks; an opted-out image is failed unread unless --ignore-opt-out; a
// server dropping idle keep-alive connections costs no URL.
package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestPrivateNetworksRefusedByDefault(t *testing.T) {
	srv := newImageServer(t)
	list := writeList(t, manyURLs(srv.URL, goodFiles(t), 5))
	flags := []string{"--quiet", "embed", "-i", list, "--weights", tinyWeights, "--backend", "cpu", "--threads", "1", "--retries", "0"}
	code, _, se := clipdRun(t, append(flags, "-o", t.TempDir())...)
	if code != exitNothing || srv.requests.Load() != 0 {
		t.Errorf("without --allow-private-networks: exit %d, %d requests reached the server; want exit %d and none", code, srv.requests.Load(), exitNothing)
	}
	oneLine(t, "refused", se, "all 5 rows failed (private network 5) (a local mirror? pass --allow-private-networks)")
	code, _, se = clipdRun(t, append(flags, "-o", t.TempDir(), "--allow-private-networks")...)
	if code != 0 || srv.requests.Load() != 5 {
		t.Errorf("with --allow-private-networks: exit %d, %d requests: %s", code, srv.requests.Load(), strings.TrimSpace(se))
	}
}

// An image whose server opts out (X-Robots-Tag: noai) fails with the reason, unless
// --ignore-opt-out, which the output records.
func TestOptOutThroughTheCLI(t *testing.T) {
	img := readFile(t, e2eDir+"/img_00.jpg")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/noai") {
			w.Header().Set("X-Robots-Tag", "noai")
		}
		w.Header().Set("Content-Type", "image/jpeg")
		w.Write(img)
	}))
	defer srv.Close()
	list := writeList(t, []string{srv.URL + "/a.jpg", srv.URL + "/noai/b.jpg"})
	out := t.TempDir()
	code, _, se := clipdRun(t, embedFlags(list, out)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, se)
	}
	r := readH5(t, embedFinal(out))
	if len(r.URLs) != 1 || len(r.FailedURLs) != 1 || r.Reasons[0] != "opted out (X-Robots-Tag: noai)" || r.Attrs["ignore_opt_out"] != "False" {
		t.Errorf("rows %v, failures %v %v, attrs %v", r.URLs, r.FailedURLs, r.Reasons, r.Attrs)
	}
	out2 := t.TempDir()
	if code, _, se := clipdRun(t, embedFlags(list, out2, "--ignore-opt-out")...); code != 0 {
		t.Fatalf("--ignore-opt-out: exit %d: %s", code, se)
	}
	if r := readH5(t, embedFinal(out2)); len(r.URLs) != 2 || r.Attrs["ignore_opt_out"] != "True" {
		t.Errorf("--ignore-opt-out: rows %v, attrs %v", r.URLs, r.Attrs)
	}
}

// Issue 16, item 2: a server that closes idle keep-alive connections quickly (here after
// 1 s) and a lull in a list read from stdin. The URLs after the lull go out on pooled
// connections the server has closed; each is sent again at once on a new connection, so all
// are embedded with --retries 0, instead of failing "connection closed" for good.
func TestKeepAliveLullThroughTheCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	img := readFile(t, e2eDir+"/img_00.jpg")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(10 * time.Millisecond) // overlap, so several connections are pooled
		w.Header().Set("Content-Type", "image/jpeg")
		w.Write(img)
	}))
	srv.Config.IdleTimeout = time.Second
	srv.Start()
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := t.TempDir()
	cmd := exec.CommandContext(ctx, clipdBinary(t), embedFlags("-", out, "--connections", "8")...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if i == 20 {
			time.Sleep(2500 * time.Millisecond) // the pooled connections go stale
		}
		fmt.Fprintf(stdin, "%s/img/%d.jpg\n", srv.URL, i)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v: %s", err, stderr.String())
	}
	r := readH5(t, embedFinal(out))
	if len(r.URLs) != 40 || len(r.FailedURLs) != 0 {
		t.Errorf("%d rows embedded, %d failed %v; want 40 and none", len(r.URLs), len(r.FailedURLs), r.Reasons)
	}
}
