package echo

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestQuoteAndShort(t *testing.T) {
	for _, c := range []struct{ in, quote, short string }{
		{"visual.proj", `"visual.proj"`, "visual.proj"},
		{"a\nb\x00c", `"a\nb\x00c"`, `a\nb\x00c`},
		{"\xff", `"\xff"`, `\xff`},
	} {
		if q := Quote(c.in); q != c.quote {
			t.Errorf("Quote(%q) = %s, want %s", c.in, q, c.quote)
		}
		if s := Short(c.in); s != c.short {
			t.Errorf("Short(%q) = %s, want %s", c.in, s, c.short)
		}
	}
	long := strings.Repeat("é", 50<<20) // 100 MiB, two bytes a rune: Max falls inside none
	for name, got := range map[string]string{"Quote": Quote(long), "Short": Short(long + "\n")} {
		if len(got) > Max+40 || !strings.HasSuffix(got, "bytes)") || !utf8.ValidString(got) || strings.Contains(got, "\n") {
			t.Errorf("%s of %d bytes: %d bytes, %q...", name, len(long), len(got), got[:min(len(got), 60)])
		}
	}
	if got := Short(strings.Repeat("x", Max)); got != strings.Repeat("x", Max) {
		t.Errorf("Short of exactly Max bytes was cut: %q", got)
	}
}
