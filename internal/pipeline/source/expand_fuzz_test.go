// expand_fuzz_test.go: fuzz targets for the small parsers of the command line that reach the
// source: brace expansion of shard patterns and --shard i/n.

package source

import (
	"strings"
	"testing"
)

func FuzzExpandBraces(f *testing.F) {
	for _, s := range []string{
		"shards/{00000..00099}.tar", "s/{a,b}/{1..3..2}.tar.gz", "x{a,b{1..2},}y", "{x}{1,2}", "{}/{1..2}",
		"a{1,2", "{1..2}}", "{-3..3..-2}", "{z..a}", "{0..9999}{0..9999}", "plain.tar", "{{a,b},{c,d}}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := expandBraces(s)
		if err != nil {
			return
		}
		if len(out) == 0 || len(out) > maxExpansion+1 {
			t.Fatalf("%q expands to %d names", s, len(out))
		}
		if !strings.Contains(s, "{") && (len(out) != 1 || out[0] != s) {
			t.Fatalf("%q without braces expands to %q", s, out)
		}
	})
}

func FuzzParseShard(f *testing.F) {
	for _, s := range []string{"0/4", " 3 / 4 ", "4/4", "-1/2", "1/0", "0/1", "x/y", "9223372036854775807/1", "1/2/3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sh, err := ParseShard(s)
		if err != nil {
			return
		}
		if sh.Index < 0 || sh.Index >= sh.Count || sh.Validate() != nil {
			t.Fatalf("ParseShard(%q) = %+v", s, sh)
		}
		if again, err := ParseShard(sh.String()); err != nil || (sh.Count > 1 && again != sh) {
			t.Fatalf("ParseShard(%q) = %v, but %q reads back as %v, %v", s, sh, sh.String(), again, err)
		}
	})
}
