// shard.go: --shard i/n, a deterministic split of the input by a hash of each row's URL, so
// that the shards are disjoint, cover the input, and do not depend on row order.

package source

import (
	"fmt"
	"strconv"
	"strings"
)

// Shard selects the rows whose URL hashes to Index among Count shards. The zero value (Count
// 0) selects everything, as does 0/1.
type Shard struct {
	Index int // 0-based: 0 <= Index < Count
	Count int
}

// ParseShard reads "i/n" (0 <= i < n), as given to --shard.
func ParseShard(spec string) (Shard, error) {
	is, ns, ok := strings.Cut(strings.TrimSpace(spec), "/")
	if !ok {
		return Shard{}, fmt.Errorf("shard %q: want i/n, e.g. 0/4 for the first of four shards", spec)
	}
	i, err := strconv.Atoi(strings.TrimSpace(is))
	if err != nil {
		return Shard{}, fmt.Errorf("shard %q: index %q is not a whole number; want i/n, e.g. 0/4", spec, is)
	}
	n, err := strconv.Atoi(strings.TrimSpace(ns))
	if err != nil {
		return Shard{}, fmt.Errorf("shard %q: count %q is not a whole number; want i/n, e.g. 0/4", spec, ns)
	}
	if n < 1 {
		return Shard{}, fmt.Errorf("shard %q: the shard count must be at least 1", spec)
	}
	if i < 0 || i >= n {
		return Shard{}, fmt.Errorf("shard %q: index %d out of range; shards are numbered from 0, so want 0 <= i <= %d", spec, i, n-1)
	}
	return Shard{Index: i, Count: n}, nil
}

// String gives "i/n" ("0/1" for the zero value).
func (s Shard) String() string {
	if s.Count <= 1 {
		return "0/1"
	}
	return strconv.Itoa(s.Index) + "/" + strconv.Itoa(s.Count)
}

// Contains reports whether key (a row's URL) belongs to this shard: FNV-1a 64 of key, mod Count.
func (s Shard) Contains(key string) bool {
	if s.Count <= 1 {
		return true
	}
	return fnv1a64(key)%uint64(s.Count) == uint64(s.Index)
}

// Validate checks that the shard is the zero value or has 0 <= Index < Count.
func (s Shard) Validate() error {
	if s.Count == 0 && s.Index == 0 {
		return nil
	}
	if s.Count < 1 || s.Index < 0 || s.Index >= s.Count {
		return fmt.Errorf("shard %d/%d: want 0 <= i < n", s.Index, s.Count)
	}
	return nil
}

// fnv1a64 is hash/fnv's New64a over the bytes of s, without the allocation.
func fnv1a64(s string) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime64
	}
	return h
}
