// expand_test.go: brace expansion as bash does it.

package source

import (
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestExpandBraces(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"s/{00000..00003}.tar", []string{"s/00000.tar", "s/00001.tar", "s/00002.tar", "s/00003.tar"}},
		{"{8..11}", []string{"8", "9", "10", "11"}},
		{"{08..11}", []string{"08", "09", "10", "11"}},
		{"{3..1}", []string{"3", "2", "1"}},
		{"{0..10..5}", []string{"0", "5", "10"}},
		{"{-1..1}", []string{"-1", "0", "1"}},
		{"{a..c}", []string{"a", "b", "c"}},
		{"{a,b}{1,2}", []string{"a1", "a2", "b1", "b2"}},
		{"x{a,b{1..2},}y", []string{"xay", "xb1y", "xb2y", "xy"}},
		{"{x}{1,2}", []string{"{x}1", "{x}2"}},
		{"{}/{1..2}", []string{"{}/1", "{}/2"}},
		{"a{1,2", []string{"a{1,2"}},
		{"{1..2}}", []string{"1}", "2}"}},
		{"plain.tar", []string{"plain.tar"}},
	} {
		got, err := expandBraces(c.in)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("expandBraces(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	if _, err := expandBraces("{0..9999}{0..9999}"); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("a huge expansion: %v", err)
	}
}

// Within the name count, long names could still add up to gigabytes: the total is bounded too.
func TestExpandBracesBytesBounded(t *testing.T) {
	long := strings.Repeat("x", 4096)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := expandBraces("{0..999999}" + long) // a million names of 4 KiB: 4 GB
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("got %v, want an error saying the expansion is too large", err)
	}
	if a := after.TotalAlloc - before.TotalAlloc; a > 1<<30 {
		t.Errorf("%d MB allocated before refusing", a>>20)
	}
}
