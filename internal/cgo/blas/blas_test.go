// blas_test.go: each call against a plain Go loop.
package blas

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/clipd/clipd/internal/cgo/h5"
)

func TestGemmNT(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range [][3]int{{1, 1, 1}, {1, 1000, 512}, {3, 7, 5}, {17, 33, 64}} {
		m, n, k := s[0], s[1], s[2]
		a, b, c := make([]float32, m*k), make([]float32, n*k), make([]float32, m*n)
		for i := range a {
			a[i] = float32(rng.NormFloat64())
		}
		for i := range b {
			b[i] = float32(rng.NormFloat64())
		}
		if err := GemmNT(m, n, k, a, b, c); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				want := 0.0
				for x := 0; x < k; x++ {
					want += float64(a[i*k+x]) * float64(b[j*k+x])
				}
				if d := math.Abs(float64(c[i*n+j]) - want); d > 1e-4*math.Sqrt(float64(k)) {
					t.Fatalf("%v: c[%d,%d] = %v, want %v", s, i, j, c[i*n+j], want)
				}
			}
		}
	}
	if err := GemmNT(2, 2, 2, make([]float32, 3), make([]float32, 4), make([]float32, 4)); err == nil {
		t.Error("GemmNT accepted a short slice")
	}
}

func TestRowSquaredNorms(t *testing.T) {
	const n, k = 9, 13
	a := make([]float32, n*k)
	for i := range a {
		a[i] = float32(i%7) - 3
	}
	out := make([]float32, n)
	if err := RowSquaredNorms(n, k, a, out); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		var want float32
		for _, v := range a[i*k : (i+1)*k] {
			want += v * v
		}
		if out[i] != want { // small integers: exact in any order
			t.Errorf("row %d: %v, want %v", i, out[i], want)
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
