// blas_test.go: each call against a plain Go loop.
package blas

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/clipd/clipd/internal/cgo/h5"
)

// TestScores: the dot products of every query with every row, and the rows' squared norms,
// for sub-blocks that do and do not divide the rows.
func TestScores(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range [][4]int{{1, 1, 1, 1}, {1, 1000, 512, 256}, {3, 7, 5, 3}, {17, 33, 64, 100}, {8, 300, 16, 7}} {
		m, n, k, sub := s[0], s[1], s[2], s[3]
		a, b, c, sq := make([]float32, m*k), make([]float32, n*k), make([]float32, m*n), make([]float32, n)
		for i := range a {
			a[i] = float32(rng.NormFloat64())
		}
		for i := range b {
			b[i] = float32(rng.NormFloat64())
		}
		if err := Scores(m, n, k, sub, a, b, c, sq); err != nil {
			t.Fatal(err)
		}
		tol := 1e-4 * math.Sqrt(float64(k))
		for j := 0; j < n; j++ {
			want := 0.0
			for x := 0; x < k; x++ {
				want += float64(b[j*k+x]) * float64(b[j*k+x])
			}
			if d := math.Abs(float64(sq[j]) - want); d > tol*math.Sqrt(want) {
				t.Fatalf("%v: sqnorm[%d] = %v, want %v", s, j, sq[j], want)
			}
			for i := 0; i < m; i++ {
				want := 0.0
				for x := 0; x < k; x++ {
					want += float64(a[i*k+x]) * float64(b[j*k+x])
				}
				if d := math.Abs(float64(c[i*n+j]) - want); d > tol {
					t.Fatalf("%v: c[%d,%d] = %v, want %v", s, i, j, c[i*n+j], want)
				}
			}
		}
	}
	if err := Scores(2, 2, 2, 1, make([]float32, 3), make([]float32, 4), make([]float32, 4), make([]float32, 2)); err == nil {
		t.Error("Scores accepted a short slice")
	}
}

// TestScoresHalf: float16 rows scored through the sub-block conversion give exactly what
// Scores gives on the same rows converted beforehand.
func TestScoresHalf(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, s := range [][4]int{{1, 1000, 512, 256}, {8, 300, 16, 7}, {3, 5, 4, 64}} {
		m, n, k, sub := s[0], s[1], s[2], s[3]
		a, half := make([]float32, m*k), make([]uint16, n*k)
		for i := range a {
			a[i] = float32(rng.NormFloat64())
		}
		for i := range half {
			half[i] = h5.Float32ToFloat16(float32(rng.NormFloat64()))
		}
		b := make([]float32, n*k)
		Float16ToFloat32(half, b)
		c1, sq1 := make([]float32, m*n), make([]float32, n)
		c2, sq2 := make([]float32, m*n), make([]float32, n)
		if err := Scores(m, n, k, sub, a, b, c1, sq1); err != nil {
			t.Fatal(err)
		}
		if err := ScoresHalf(m, n, k, sub, a, half, c2, sq2, make([]float32, sub*k)); err != nil {
			t.Fatal(err)
		}
		for i := range c1 {
			if c1[i] != c2[i] {
				t.Fatalf("%v: c[%d] = %v from halves, %v from floats", s, i, c2[i], c1[i])
			}
		}
		for j := range sq1 {
			if sq1[j] != sq2[j] {
				t.Fatalf("%v: sqnorm[%d] = %v from halves, %v from floats", s, j, sq2[j], sq1[j])
			}
		}
	}
}

// TestFloat16ToFloat32 checks all 65,536 half values against h5's scalar conversion.
func TestFloat16ToFloat32(t *testing.T) {
	in := make([]uint16, 1<<16)
	for i := range in {
		in[i] = uint16(i)
	}
	out := make([]float32, len(in))
	Float16ToFloat32(in, out)
	for i, h := range in {
		want := h5.Float16ToFloat32(h)
		got := out[i]
		if math.IsNaN(float64(want)) {
			if !math.IsNaN(float64(got)) || math.Signbit(float64(got)) != math.Signbit(float64(want)) {
				t.Fatalf("%#04x: %v, want NaN", h, got)
			}
			continue
		}
		if math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("%#04x: %v (%#08x), want %v (%#08x)", h, got, math.Float32bits(got), want, math.Float32bits(want))
		}
	}
}
