// Package echo shortens the input that an error message repeats (a tensor name, a URL, a
// line of a list), so that a broken or hostile input cannot make a message megabytes long
// or break it across lines: at most Max bytes of it are shown, then "..." and its length.
package echo

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Max is how many bytes of an input a message shows.
const Max = 200

// Quote is s as Go quotes it (control bytes, newlines and invalid UTF-8 escaped), cut to
// its first Max bytes when longer, followed by "... (N bytes)".
func Quote(s string) string {
	if len(s) <= Max {
		return strconv.Quote(s)
	}
	return strconv.Quote(cut(s)) + more(s)
}

// Short is s cut like Quote but not quoted, for text a message already sets apart (a URL,
// a path); control bytes are escaped as Quote escapes them, so it stays on one line.
func Short(s string) string {
	t := s
	if len(s) > Max {
		t = cut(s)
	}
	if strings.IndexFunc(t, func(r rune) bool { return unicode.IsControl(r) || r == utf8.RuneError }) >= 0 {
		q := strconv.Quote(t)
		t = q[1 : len(q)-1]
	}
	if len(s) > Max {
		t += more(s)
	}
	return t
}

// cut is s's first Max bytes, ending on a rune boundary.
func cut(s string) string {
	n := Max
	for n > Max-utf8.UTFMax && n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func more(s string) string { return "... (" + strconv.Itoa(len(s)) + " bytes)" }
