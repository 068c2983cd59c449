// crawl_test.go: what a crawl may reach and what it must leave alone: a URL list pointing at
// this machine (127.0.0.1) is refused by default, with the reason, and fetched with
// --allow-private-networks; an opted-out image is failed unread unless --ignore-opt-out.
package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
