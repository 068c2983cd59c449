package vecmath

import (
	"math"
	"testing"
)

func TestCosine(t *testing.T) {
	cases := []struct {
		a, b []float32
		want float64
	}{
		{[]float32{1, 0}, []float32{0, 1}, 0},
		{[]float32{1, 2, 3}, []float32{2, 4, 6}, 1},
		{[]float32{1, 2, 3}, []float32{-1, -2, -3}, -1},
		{[]float32{3, 4}, []float32{4, 3}, 24.0 / 25},
	}
	for _, c := range cases {
		if got := Cosine(c.a, c.b); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("Cosine(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
	if got := Cosine([]float32{0, 0}, []float32{1, 1}); !math.IsNaN(got) {
		t.Errorf("zero vector: %v, want NaN", got)
	}
	// float64 accumulation: large values that overflow float32 products stay finite.
	if got := Cosine([]float32{1e30, 1e30}, []float32{1e30, 1e30}); math.Abs(got-1) > 1e-12 {
		t.Errorf("large values: %v", got)
	}
}

func TestMinCosine(t *testing.T) {
	a := []float32{1, 0, 0, 1, 3, 4}
	b := []float32{1, 0, 1, 1, 4, 3}
	got, row := MinCosine(a, b, 2)
	if row != 1 || math.Abs(got-1/math.Sqrt2) > 1e-12 {
		t.Errorf("MinCosine = %v at row %d, want %v at 1", got, row, 1/math.Sqrt2)
	}
	if got, row := MinCosine(nil, nil, 4); got != 1 || row != -1 {
		t.Errorf("no rows: %v %d", got, row)
	}
	if _, row := MinCosine([]float32{1, 1, 0, 0}, []float32{1, 1, 1, 1}, 2); row != 1 {
		t.Errorf("a zero row must be the minimum, got row %d", row)
	}
	defer func() {
		if recover() == nil {
			t.Error("no panic on a length that is not a multiple of dim")
		}
	}()
	MinCosine([]float32{1, 2, 3}, []float32{1, 2, 3}, 2)
}
