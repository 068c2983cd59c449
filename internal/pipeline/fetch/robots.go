// robots.go: robots.txt (RFC 9309), when Options.RobotsTxt asks for it: each host's file is
// fetched once (concurrent URLs of the host wait for that one fetch), bounded in size and
// time, and only the rules of the group for our product token (else "*") are kept.

package fetch

import (
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

const (
	robotsMaxBytes  = 512 << 10        // RFC 9309 asks parsers to read at least 500 KiB
	robotsTimeout   = 10 * time.Second // one fetch, redirects included
	robotsMaxRules  = 64 << 10         // pattern bytes kept per host; later rules are dropped
	robotsRedirects = 5
)

// robotsFile is one host's robots.txt, fetched or being fetched.
type robotsFile struct {
	done        chan struct{} // closed once the fields below are set
	rules       []robotsRule  // our group's rules; none: everything allowed
	unreachable string        // non-empty: the failure of every URL of the host
}

type robotsRule struct {
	pattern string
	allow   bool
}

// robotsVerdict returns "" when robots.txt lets us fetch u, else the failure reason. The
// first URL of a host fetches the file; others of that host wait, within their deadline.
func (r *run) robotsVerdict(t *task, host *hostState) (reason string) {
	host.mu.Lock()
	rf, first := host.robots, host.robots == nil
	if first {
		rf = &robotsFile{done: make(chan struct{})}
		host.robots = rf
	}
	host.mu.Unlock()
	if first {
		r.fetchRobots(t.target, rf)
		close(rf.done)
	}
	timer := time.NewTimer(time.Until(t.deadline))
	defer timer.Stop()
	select {
	case <-rf.done:
	case <-timer.C:
		return ReasonTimeout
	case <-r.ctx.Done():
		return ReasonCanceled
	}
	if rf.unreachable != "" {
		return rf.unreachable
	}
	if !robotsAllowed(rf.rules, robotsPath(t.target)) {
		return ReasonRobotsDisallowed
	}
	return ""
}

// fetchRobots fetches u's host's robots.txt into rf. A 4xx (429 aside) allows everything;
// a 5xx, a 429 or no answer disallows everything, as RFC 9309 (2.3.1.3, 2.3.1.4) requires:
// a server too unwell to serve its rules is not to be crawled meanwhile.
func (r *run) fetchRobots(u *url.URL, rf *robotsFile) {
	target := &url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/robots.txt"}
	deadline := time.Now().Add(robotsTimeout)
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	unreachable := func(why string) { rf.unreachable = ReasonRobotsUnreachable + " (" + why + ")" }
	for hop := 0; ; hop++ {
		req.Reset()
		req.SetRequestURI(target.String())
		req.Header.SetUserAgent(r.f.opt.UserAgent)
		resp.Reset()
		resp.StreamBody = true
		if err := r.client.DoDeadline(req, resp, deadline); err != nil {
			reason, _ := classifyError(err)
			unreachable(reason)
			return
		}
		status := resp.StatusCode()
		switch {
		case status >= 200 && status <= 299:
			var body []byte
			if s := resp.BodyStream(); s != nil {
				var err error
				body, err = io.ReadAll(io.LimitReader(s, robotsMaxBytes))
				r.f.stats.bytesReceived.Add(int64(len(body)))
				if err != nil {
					reason, _ := classifyError(err)
					unreachable(reason)
					return
				}
			} else {
				body = resp.Body()
			}
			rf.rules = parseRobots(body, r.agent)
			return
		case isRedirect(status) && hop < robotsRedirects:
			next, ok := resolveRedirect(target, resp.Header.Peek(fasthttp.HeaderLocation))
			discardBody(resp)
			if !ok {
				return // a broken redirect: as if there were no robots.txt
			}
			target = next
		case status == fasthttp.StatusTooManyRequests || status >= 500:
			unreachable(HTTPReason(status))
			return
		default: // 4xx, too many redirects: no rules
			return
		}
	}
}

// parseRobots returns the rules of the groups for agent, or of the "*" groups when none
// names agent. Lines are "key: value"; a group is one or more user-agent lines and the
// rules after them.
func parseRobots(body []byte, agent string) []robotsRule {
	var (
		ours, star       []robotsRule
		oursSeen         bool
		forOurs, forStar bool // the current group's user-agents
		inRules          bool
		oursLen, starLen int
	)
	for line := range strings.SplitSeq(string(body), "\n") {
		line, _, _ = strings.Cut(line, "#")
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		key = strings.ToLower(strings.TrimSpace(key))
		value = strings.TrimSpace(value)
		switch key {
		case "user-agent":
			if inRules { // a user-agent after rules starts a new group
				forOurs, forStar, inRules = false, false, false
			}
			switch productToken(value) {
			case agent:
				forOurs, oursSeen = true, true
			case "*":
				forStar = true
			}
		case "allow", "disallow":
			inRules = true
			if value == "" { // "Disallow:" disallows nothing
				continue
			}
			rule := robotsRule{pattern: value, allow: key == "allow"}
			if forOurs && oursLen+len(value) <= robotsMaxRules {
				ours = append(ours, rule)
				oursLen += len(value)
			}
			if forStar && starLen+len(value) <= robotsMaxRules {
				star = append(star, rule)
				starLen += len(value)
			}
		}
	}
	if oursSeen {
		return ours
	}
	return star
}

// robotsPath is what rules match: the path, escaped as sent, and the query.
func robotsPath(u *url.URL) string {
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	return p
}

// robotsAllowed applies the longest matching rule; on a tie Allow wins; no match allows.
func robotsAllowed(rules []robotsRule, path string) bool {
	if path == "/robots.txt" {
		return true
	}
	best, allow := -1, true
	for _, rule := range rules {
		if n := len(rule.pattern); n >= best && robotsMatch(rule.pattern, path) {
			if n > best || rule.allow {
				allow = rule.allow
			}
			best = n
		}
	}
	return allow
}

// robotsMatch: pattern matches a prefix of path; '*' matches any run of characters and a
// final '$' anchors the pattern at the end of path.
func robotsMatch(pattern, path string) bool {
	anchored := strings.HasSuffix(pattern, "$")
	if anchored {
		pattern = pattern[:len(pattern)-1]
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(path, parts[0]) {
		return false
	}
	pos := len(parts[0])
	if len(parts) == 1 {
		return !anchored || pos == len(path)
	}
	// Matching each middle part as early as possible leaves the most room for the rest.
	for _, part := range parts[1 : len(parts)-1] {
		i := strings.Index(path[pos:], part)
		if i < 0 {
			return false
		}
		pos += i + len(part)
	}
	last := parts[len(parts)-1]
	if anchored {
		return len(path)-pos >= len(last) && strings.HasSuffix(path, last)
	}
	return strings.Contains(path[pos:], last)
}
