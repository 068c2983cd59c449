// expand.go: shard-name patterns as users type them for tar shard inputs — brace expansion
// as bash does it ({00000..00099}, {a,b}, nested) and globs (*, ?, [...]) — expanded here
// because the pattern arrives quoted (webdataset's and img2dataset's own notation).

package source

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/clipd/clipd/internal/echo"
)

// maxExpansion bounds how many names one pattern may expand to, and maxExpansionBytes their
// total length, so a typo such as {0..999999999}, or a long name times many, is an error
// rather than an exhausted memory.
const (
	maxExpansion      = 1 << 20
	maxExpansionBytes = 256 << 20
)

// hasPattern reports whether s holds a brace or glob character.
func hasPattern(s string) bool { return strings.ContainsAny(s, "{*?[") }

// hasGlob reports whether s holds a glob character.
func hasGlob(s string) bool { return strings.ContainsAny(s, "*?[") }

// expandBraces expands s as bash does: "{a,b}" is each alternative in turn, "{M..N}" and
// "{M..N..STEP}" are the integers from M to N (either direction), zero-padded to the wider
// end when either end is written with a leading zero, "{x..z}" the letters. Braces are
// expanded left to right and may nest; a brace holding neither a comma nor a range is kept
// as it is.
func expandBraces(s string) ([]string, error) {
	e := expansion{pattern: s, out: []string{}}
	err := e.expandInto(s, 0)
	return e.out, err
}

// expansion collects a pattern's names, within maxExpansion names and maxExpansionBytes.
type expansion struct {
	pattern string
	out     []string
	bytes   int
}

// expandInto appends the expansions of s to e.out, looking for braces from byte from on.
func (e *expansion) expandInto(s string, from int) error {
	for i := from; i < len(s); i++ {
		if s[i] != '{' {
			continue
		}
		j := matchingBrace(s, i)
		if j < 0 {
			break // an unclosed brace is literal, and so is everything after it
		}
		alts, err := braceAlternatives(s[i+1 : j])
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		if alts == nil {
			continue // literal: look inside it and after it
		}
		prefix, suffix := s[:i], s[j+1:]
		for _, a := range alts {
			// The prefix holds no expandable brace, so expansion resumes where a begins.
			if err := e.expandInto(prefix+a+suffix, i); err != nil {
				return err
			}
		}
		return nil
	}
	if len(e.out) >= maxExpansion {
		return fmt.Errorf("%s expands to more than %d names", echo.Short(e.pattern), maxExpansion)
	}
	if e.bytes += len(s); e.bytes > maxExpansionBytes {
		return fmt.Errorf("%s expands to more than %d MiB of names", echo.Short(e.pattern), maxExpansionBytes>>20)
	}
	e.out = append(e.out, s)
	return nil
}

// matchingBrace returns the index of the '}' closing the '{' at i, or -1.
func matchingBrace(s string, i int) int {
	depth := 0
	for j := i; j < len(s); j++ {
		switch s[j] {
		case '{':
			depth++
		case '}':
			if depth--; depth == 0 {
				return j
			}
		}
	}
	return -1
}

// braceAlternatives splits a brace's body into what it stands for; nil when it is literal.
func braceAlternatives(body string) ([]string, error) {
	var parts []string
	depth, start := 0, 0
	for k := 0; k < len(body); k++ {
		switch body[k] {
		case '{':
			depth++
		case '}':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, body[start:k])
				start = k + 1
			}
		}
	}
	if parts != nil {
		return append(parts, body[start:]), nil
	}
	return braceRange(body)
}

// braceRange expands "M..N", "M..N..STEP" and "a..z"; nil when body is none of them.
func braceRange(body string) ([]string, error) {
	ends := strings.Split(body, "..")
	if len(ends) != 2 && len(ends) != 3 {
		return nil, nil
	}
	step := int64(1)
	if len(ends) == 3 {
		v, err := strconv.ParseInt(ends[2], 10, 64)
		if err != nil {
			return nil, nil
		}
		if step = v; step < 0 {
			step = -step
		}
		if step == 0 {
			step = 1
		}
	}
	if len(ends[0]) == 1 && len(ends[1]) == 1 && isAlpha(ends[0][0]) && isAlpha(ends[1][0]) {
		a, b := int64(ends[0][0]), int64(ends[1][0])
		return countRange(a, b, step, func(v int64) string { return string(rune(v)) })
	}
	a, errA := strconv.ParseInt(ends[0], 10, 64)
	b, errB := strconv.ParseInt(ends[1], 10, 64)
	if errA != nil || errB != nil {
		return nil, nil
	}
	width := 0
	if zeroPadded(ends[0]) || zeroPadded(ends[1]) {
		width = max(len(ends[0]), len(ends[1]))
	}
	return countRange(a, b, step, func(v int64) string {
		s := strconv.FormatInt(v, 10)
		if v < 0 {
			return "-" + strings.Repeat("0", max(0, width-len(s))) + s[1:]
		}
		return strings.Repeat("0", max(0, width-len(s))) + s
	})
}

// zeroPadded reports whether a range end is written with a leading zero ("007", "-01").
func zeroPadded(s string) bool {
	s = strings.TrimPrefix(s, "-")
	return len(s) > 1 && s[0] == '0'
}

func countRange(a, b, step int64, format func(int64) string) ([]string, error) {
	span := b - a
	if span < 0 {
		span, step = -span, -step
	}
	if n := span/max(step, -step) + 1; n > maxExpansion {
		return nil, fmt.Errorf("the range %d..%d has %d names, over the %d limit", a, b, n, maxExpansion)
	}
	var out []string
	for v := a; (step > 0 && v <= b) || (step < 0 && v >= b); v += step {
		out = append(out, format(v))
	}
	return out, nil
}

// expandShardPattern turns a pattern into the tar shards it names, in order: braces expanded
// left to right, each result that holds glob characters matched against the file system
// (sorted, keeping only tar shards), each other result taken as it is (it must exist and be a
// tar shard). A shard named twice is read once, at its first place.
func expandShardPattern(spec string) ([]string, error) {
	names, err := expandBraces(spec)
	if err != nil {
		return nil, fmt.Errorf("source %w", err)
	}
	var out, missing, notTar []string
	seen := map[string]bool{}
	add := func(p string) {
		if c := filepath.Clean(p); !seen[c] {
			seen[c] = true
			out = append(out, p)
		}
	}
	for _, name := range names {
		if !hasGlob(name) {
			st, err := os.Stat(name)
			switch {
			case err != nil:
				missing = append(missing, name)
			case !st.Mode().IsRegular() || !isTarName(name):
				notTar = append(notTar, name)
			default:
				add(name)
			}
			continue
		}
		matches, err := filepath.Glob(name)
		if err != nil {
			return nil, fmt.Errorf("source %s: bad pattern %s: %w", spec, name, err)
		}
		for _, m := range matches {
			if st, err := os.Stat(m); err == nil && st.Mode().IsRegular() && isTarName(m) {
				add(m)
			}
		}
	}
	switch {
	case len(missing) > 0:
		return nil, fmt.Errorf("source %s: %d of the %d shards named do not exist (%s); check the pattern", spec, len(missing), len(names), firstFew(missing))
	case len(notTar) > 0:
		return nil, fmt.Errorf("source %s: %s is not a tar shard (.tar, .tar.gz, .tgz); a pattern may name tar shards only", spec, firstFew(notTar))
	case len(out) == 0:
		return nil, fmt.Errorf("source %s: the pattern matches no tar shard (.tar, .tar.gz, .tgz); check the path", spec)
	}
	return out, nil
}

// firstFew lists up to three names, and how many there are in all beyond them.
func firstFew(names []string) string {
	few := make([]string, 0, 3)
	for _, n := range names[:min(len(names), 3)] {
		few = append(few, echo.Short(n))
	}
	if len(names) <= 3 {
		return strings.Join(few, ", ")
	}
	return fmt.Sprintf("%s, ... %d in all", strings.Join(few, ", "), len(names))
}
