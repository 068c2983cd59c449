// bitset.go: a growable bitset over dense Seq numbers, with ranks (how many set bits lie
// below a position) for placing rows at their final index in one pass.
package sink

import (
	"math"
	"math/bits"
)

type bitset struct {
	w    []uint64
	rank []int64 // rank[i]: set bits in w[:i]; built by buildRank
}

func (b *bitset) set(i int64) {
	k := int(i >> 6)
	if k >= len(b.w) {
		n := make([]uint64, k+1, max(k+1, 2*len(b.w)))
		copy(n, b.w)
		b.w = n
	}
	b.w[k] |= 1 << uint(i&63)
}

func (b *bitset) has(i int64) bool {
	k := int(i >> 6)
	return i >= 0 && k < len(b.w) && b.w[k]&(1<<uint(i&63)) != 0
}

func (b *bitset) count() int64 {
	var n int64
	for _, x := range b.w {
		n += int64(bits.OnesCount64(x))
	}
	return n
}

// andNot clears the bits that are set in o.
func (b *bitset) andNot(o *bitset) {
	for i := range b.w {
		if i < len(o.w) {
			b.w[i] &^= o.w[i]
		}
	}
}

func (b *bitset) buildRank() {
	b.rank = make([]int64, len(b.w)+1)
	for i, x := range b.w {
		b.rank[i+1] = b.rank[i] + int64(bits.OnesCount64(x))
	}
}

// rankOf is the number of set bits below i (i's index among the set bits when i is set).
func (b *bitset) rankOf(i int64) int64 {
	k := int(i >> 6)
	return b.rank[k] + int64(bits.OnesCount64(b.w[k]&(1<<uint(i&63)-1)))
}

func float32bits(f float32) uint32 { return math.Float32bits(f) }
