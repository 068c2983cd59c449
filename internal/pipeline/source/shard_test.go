// shard_test.go: --shard parsing, the hash, and the shard properties: disjoint, covering, and
// independent of row order.

package source

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestParseShard(t *testing.T) {
	good := map[string]Shard{"0/1": {0, 1}, "0/4": {0, 4}, "3/4": {3, 4}, " 2 / 5 ": {2, 5}}
	for spec, want := range good {
		got, err := ParseShard(spec)
		if err != nil || got != want {
			t.Errorf("ParseShard(%q) = %v, %v; want %v", spec, got, err, want)
		}
	}
	bad := map[string]string{
		"":     "want i/n",
		"3":    "want i/n",
		"a/4":  "index \"a\" is not a whole number",
		"1/b":  "count \"b\" is not a whole number",
		"0/0":  "at least 1",
		"4/4":  "index 4 out of range",
		"-1/4": "index -1 out of range",
		"1/-2": "at least 1",
	}
	for spec, want := range bad {
		_, err := ParseShard(spec)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseShard(%q) error = %v; want it to say %q", spec, err, want)
		}
	}
	if s := (Shard{2, 7}).String(); s != "2/7" {
		t.Errorf("String = %q", s)
	}
}

func TestFNVMatchesStdlib(t *testing.T) {
	for _, s := range []string{"", "a", "https://example.com/x.jpg", "\xff\x00日本"} {
		h := fnv.New64a()
		h.Write([]byte(s))
		if got, want := fnv1a64(s), h.Sum64(); got != want {
			t.Errorf("fnv1a64(%q) = %x, want %x", s, got, want)
		}
	}
}

func randomURLs(rng *rand.Rand, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("https://h%d.example.com/%x/%d.jpg", rng.IntN(50), rng.Uint64(), i)
	}
	return out
}

// Over random inputs and shard counts, the shards read through Open are disjoint and their
// union is the input; a reordered input puts every URL in the same shard.
func TestShardProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for trial := 0; trial < 20; trial++ {
		in := randomURLs(rng, 1+rng.IntN(400))
		n := 1 + rng.IntN(9)
		shuffled := slices.Clone(in)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		owner := map[string]int{}
		for i := 0; i < n; i++ {
			items, fails := drain(t, fromString(t, strings.Join(in, "\n"), "l.txt", Options{Shard: Shard{i, n}}))
			if len(fails) != 0 {
				t.Fatalf("failures: %v", fails)
			}
			for k, it := range items {
				if it.Seq != int64(k) {
					t.Fatalf("shard %d/%d: item %d has Seq %d; Seq must count positions after filtering", i, n, k, it.Seq)
				}
				if prev, dup := owner[it.URL]; dup {
					t.Fatalf("trial %d: %s is in shards %d and %d of %d", trial, it.URL, prev, i, n)
				}
				owner[it.URL] = i
			}
			reordered, _ := drain(t, fromString(t, strings.Join(shuffled, "\n"), "l.txt", Options{Shard: Shard{i, n}}))
			a, b := urls(items), urls(reordered)
			slices.Sort(a)
			slices.Sort(b)
			if !slices.Equal(a, b) {
				t.Fatalf("trial %d: shard %d/%d differs after reordering: %d vs %d URLs", trial, i, n, len(a), len(b))
			}
		}
		if len(owner) != len(in) {
			t.Fatalf("trial %d: the %d shards cover %d of %d URLs", trial, n, len(owner), len(in))
		}
	}
}

// Shards split a large input roughly evenly, and every shard of a malformed row is decided
// once: a failure appears in exactly one shard.
func TestShardBalanceAndFailures(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	in := randomURLs(rng, 8000)
	in = append(in, "ftp://x/1", "", "not a url", "https://ok.example/\xff")
	text := strings.Join(in, "\n")
	const n = 4
	var failures int
	for i := 0; i < n; i++ {
		items, fails := drain(t, fromString(t, text, "l.txt", Options{Shard: Shard{i, n}}))
		if len(items) < 1700 || len(items) > 2300 {
			t.Errorf("shard %d/%d has %d of 8000 items; want about 2000", i, n, len(items))
		}
		failures += len(fails)
	}
	if failures != 3 {
		t.Errorf("the malformed rows appear %d times over all shards; want 3 (once each)", failures)
	}
}
