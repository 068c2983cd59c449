// optout.go: the opt-out a response's headers declare. X-Robots-Tag noai, noimageai, noml,
// noindex, noimageindex (or none) on an image, for every agent or scoped to ours, means its
// owner does not want it in a data set: the fetcher fails it before reading its body.

package fetch

import (
	"strings"

	"github.com/valyala/fasthttp"
)

// optOutDirectives are the X-Robots-Tag directives that keep an image out of a data set.
// "none" is noindex plus nofollow.
var optOutDirectives = []string{"noai", "noimageai", "noml", "noindex", "noimageindex", "none"}

// robotsTagValueDirectives take a value after a colon ("max-snippet: 20"), so a value that
// starts with one of them is not scoped to an agent named so.
var robotsTagValueDirectives = []string{"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"}

// productToken is the name robots rules address us by: the User-Agent up to its first '/'
// or space, lower-cased ("clipd" for "clipd/0.1.0 (+https://...)").
func productToken(userAgent string) string {
	tok, _, _ := strings.Cut(userAgent, "/")
	tok, _, _ = strings.Cut(tok, " ")
	return strings.ToLower(strings.TrimSpace(tok))
}

// optOut returns the failure reason when h's X-Robots-Tag headers opt out for agent (a
// product token), or "".
func optOut(h *fasthttp.ResponseHeader, agent string) string {
	for _, raw := range h.PeekAll("X-Robots-Tag") {
		if robotsTagOptsOut(string(raw), agent) {
			v := strings.TrimSpace(string(raw))
			if len(v) > 100 {
				v = v[:100] + "..."
			}
			return ReasonOptedOut + " (X-Robots-Tag: " + v + ")"
		}
	}
	return ""
}

// robotsTagOptsOut reads one X-Robots-Tag value: "[agent:] directive, directive, ...".
// Directives scoped to another agent do not apply to us.
func robotsTagOptsOut(value, agent string) bool {
	value = strings.TrimSpace(value)
	if scope, rest, ok := strings.Cut(value, ":"); ok {
		scope = strings.ToLower(strings.TrimSpace(scope))
		if scope != "" && !strings.ContainsAny(scope, ", ") && !isValueDirective(scope) {
			if scope != agent {
				return false
			}
			value = rest
		}
	}
	for d := range strings.SplitSeq(value, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		for _, o := range optOutDirectives {
			if d == o {
				return true
			}
		}
	}
	return false
}

func isValueDirective(s string) bool {
	for _, d := range robotsTagValueDirectives {
		if s == d {
			return true
		}
	}
	return false
}
