// robots_test.go: robots.txt parsing and matching (RFC 9309), and the fetcher fetching each
// host's file once and obeying it.
package fetch

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/clipd/clipd/internal/pipeline/item"
)

const testRobots = `# a comment
User-agent: *
Disallow: /

User-agent: otherbot
User-agent: Clipd/2.0
Disallow: /private/   # trailing comment
Allow: /private/ok*.jpg$
Disallow: /*.png$
Disallow:
Sitemap: https://example.com/sitemap.xml

User-agent: otherbot
Allow: /
`

func TestRobotsRules(t *testing.T) {
	rules := parseRobots([]byte(testRobots), "clipd")
	for path, want := range map[string]bool{
		"/a.jpg":               true,
		"/private/x.jpg":       false,
		"/private/ok1.jpg":     true,  // the longer Allow wins
		"/private/ok1.jpg?x=1": false, // $ anchors the end
		"/b.png":               false,
		"/b.png?size=2":        true,
		"/dir/c.png":           false,
		"/robots.txt":          true,
	} {
		if got := robotsAllowed(rules, path); got != want {
			t.Errorf("clipd: %s allowed = %v, want %v", path, got, want)
		}
	}
	star := parseRobots([]byte(testRobots), "somebot") // falls back to "*"
	if robotsAllowed(star, "/a.jpg") {
		t.Error("the * group disallows everything")
	}
	if !robotsAllowed(parseRobots([]byte("User-agent: *\nDisallow: /x\nAllow: /x\n"), "clipd"), "/x/y") {
		t.Error("an Allow as long as the Disallow wins the tie")
	}
	if !robotsAllowed(parseRobots([]byte("garbage\n\x00\xff"), "clipd"), "/a") {
		t.Error("a file without rules allows everything")
	}
	for _, tc := range []struct {
		pattern, path string
		want          bool
	}{
		{"/a", "/abc", true}, {"/a$", "/abc", false}, {"/a$", "/a", true},
		{"/*/c", "/a/b/c/d", true}, {"/*b*d$", "/a/b/c/d", true}, {"/*b*d$", "/a/b/c/de", false},
		{"*", "/", true}, {"/x*", "/y", false},
	} {
		if got := robotsMatch(tc.pattern, tc.path); got != tc.want {
			t.Errorf("robotsMatch(%q, %q) = %v", tc.pattern, tc.path, got)
		}
	}
}

// robotsServer serves robots.txt with the given status and body, and an image elsewhere.
func robotsServer(t *testing.T, status int, robots string, img []byte) (*countingServer, *atomic.Int64) {
	var robotsRequests atomic.Int64
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/robots.txt" {
			robotsRequests.Add(1)
			w.WriteHeader(status)
			w.Write([]byte(robots))
			return
		}
		w.Write(img)
	})
	return s, &robotsRequests
}

func TestRobotsTxtObeyed(t *testing.T) {
	img := fakeImage(800, 40)
	ruled, ruledFetches := robotsServer(t, 200, testRobots, img)
	none, noneFetches := robotsServer(t, 404, "not found", img)
	broken, brokenFetches := robotsServer(t, 503, "", img)
	opt := testOptions()
	opt.Concurrency = 8
	opt.RobotsTxt = true
	paths := map[string]bool{"/a.jpg": true, "/private/x.jpg": false, "/private/ok2.jpg": true, "/b.png": false}
	var items []item.Item
	allowed := map[int64]bool{}
	for i := range 10 {
		for p, ok := range paths {
			p = strings.Replace(p, ".", strconv.Itoa(i)+".", 1) // /a.jpg -> /a3.jpg: same verdict
			for _, s := range []*countingServer{ruled, none, broken} {
				allowed[int64(len(items))] = ok
				items = append(items, item.Item{Seq: int64(len(items)), URL: s.URL + p})
			}
		}
	}
	f := New(opt)
	for _, r := range runItems(t, f, items) {
		u, _ := checkURL(r.Item.URL)
		switch {
		case u.Host == broken.Listener.Addr().String():
			wantFailure(t, r, "robots.txt unreachable (http 503)")
		case u.Host == none.Listener.Addr().String() || allowed[r.Item.Seq]:
			wantBody(t, r, img)
		default:
			wantFailure(t, r, ReasonRobotsDisallowed)
		}
	}
	if ruledFetches.Load() != 1 || noneFetches.Load() != 1 || brokenFetches.Load() != 1 {
		t.Fatalf("robots.txt fetched %d, %d, %d times, want once per host", ruledFetches.Load(), noneFetches.Load(), brokenFetches.Load())
	}
	if st := f.Stats(); st.Reasons[ReasonRobotsDisallowed] != 20 || st.Reasons[ReasonRobotsUnreachable] != 40 {
		t.Fatalf("stats %+v", st)
	}

	// Off by default: no robots.txt request, everything fetched.
	for _, r := range runItems(t, New(testOptions()), items[:12]) {
		if u, _ := checkURL(r.Item.URL); u.Host != broken.Listener.Addr().String() && r.Failure != nil {
			t.Fatalf("%s failed %q with RobotsTxt off", r.Item.URL, r.Failure.Reason)
		}
	}
	if ruledFetches.Load() != 1 {
		t.Fatal("robots.txt fetched with RobotsTxt off")
	}
}
