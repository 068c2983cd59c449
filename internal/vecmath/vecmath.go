// Package vecmath holds the small vector helpers the tests and benchmarks compare
// embeddings with, so there is one definition of each.
package vecmath

import "math"

// Cosine is the cosine similarity of a and b, accumulated in float64. It panics when the
// lengths differ; a zero vector gives NaN (0/0), which fails any threshold comparison.
func Cosine(a, b []float32) float64 {
	if len(a) != len(b) {
		panic("vecmath.Cosine: vectors of different lengths")
	}
	var ab, aa, bb float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		ab += x * y
		aa += x * x
		bb += y * y
	}
	return ab / math.Sqrt(aa*bb)
}

// MinCosine compares a and b as consecutive rows of dim floats (a batch of embeddings):
// the smallest row cosine and its row. n = len(a)/dim rows; it panics when the lengths
// differ or are not a multiple of dim. With no rows it returns (1, -1). A NaN row cosine
// (a zero row) is the minimum.
func MinCosine(a, b []float32, dim int) (minCos float64, row int) {
	if dim <= 0 || len(a) != len(b) || len(a)%dim != 0 {
		panic("vecmath.MinCosine: lengths differ or are not a multiple of dim")
	}
	minCos, row = 1, -1
	for i := 0; i*dim < len(a); i++ {
		c := Cosine(a[i*dim:(i+1)*dim], b[i*dim:(i+1)*dim])
		if row < 0 || c < minCos || math.IsNaN(c) && !math.IsNaN(minCos) {
			minCos, row = c, i
		}
	}
	return minCos, row
}
